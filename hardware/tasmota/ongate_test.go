package tasmota

import (
	"bytes"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/stretchr/testify/require"

	"kluis/hardware"
)

// An ON that paho's writer takes when no pulse waits for it any more (its
// deadline passed while the pulse's goroutine or paho's writer was held
// up: the pulse has told its caller it failed) is not written: the module
// sees only the ON of the pulse that follows on the same connection.
// Before, every ON paho was handed went out whenever its writer got to
// it: here the module switched twice.
func TestAnOnNoPulseWaitsForIsNotWritten(t *testing.T) {
	d, _, dev, topic := behindStallProxy(t, "ongate", 2*time.Second)
	tok := d.client.Publish("cmnd/"+topic+"/POWER1", 0, false, "ON")
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	require.NoError(t, d.Pulse(testCtx(t), hardware.Address{Channel: 0}, time.Second, 1))
	// The pulse's ON was confirmed, and went behind the stray one.
	require.Equal(t, 1, dev.onCount(1), "POWER1 ON commands the module received")
	require.Equal(t, 1.0, d.m.pulses.WithLabelValues("ok").Value())
}

// The gate recognises what paho's writer writes for a relay ON, and
// nothing else.
func TestOnPublishTopic(t *testing.T) {
	pub := func(topic, payload string, qos byte, retain bool) []byte {
		p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		p.TopicName, p.Payload, p.Qos, p.Retain = topic, []byte(payload), qos, retain
		if qos > 0 {
			p.MessageID = 7
		}
		var b bytes.Buffer
		require.NoError(t, p.Write(&b))
		return b.Bytes()
	}
	long := "cmnd/" + string(bytes.Repeat([]byte("x"), 300)) + "/POWER12"
	for _, c := range []struct {
		p     []byte
		topic string
	}{
		{pub("cmnd/bank/POWER1", "ON", 0, false), "cmnd/bank/POWER1"},
		{pub("cmnd/a/b/POWER", "ON", 0, false), "cmnd/a/b/POWER"},
		{pub(long, "ON", 0, false), long},
		{pub("cmnd/bank/POWER1", "OFF", 0, false), ""},
		{pub("cmnd/bank/POWER1", "", 0, false), ""},
		{pub("cmnd/bank/PulseTime1", "ON", 0, false), ""},
		{pub("stat/bank/POWER1", "ON", 0, false), ""},
		{pub("cmnd/bank/POWER1", "ON", 1, false), ""},
		{pub("cmnd/bank/POWER1", "ON", 0, false)[:10], ""},
		{[]byte{0xc0, 0x00}, ""}, // PINGREQ
	} {
		got, ok := onPublishTopic(c.p)
		require.Equal(t, c.topic != "", ok, "%q", c.p)
		require.Equal(t, c.topic, got)
	}
}

// The gate writes an ON only before its deadline and only once; a pulse
// that gave up withholds its ON for good.
func TestOnGate(t *testing.T) {
	var g onGate
	now := time.Now()
	late := g.add("cmnd/m/POWER1", now.Add(-time.Millisecond))
	due := g.add("cmnd/m/POWER1", now.Add(time.Second))
	require.Same(t, due, g.take("cmnd/m/POWER1", now), "the late ON is skipped")
	require.Nil(t, g.take("cmnd/m/POWER1", now), "each ON is written once")
	require.False(t, g.done(late))
	require.True(t, g.done(due))
	gaveUp := g.add("cmnd/m/POWER2", now.Add(time.Second))
	require.False(t, g.done(gaveUp))
	require.Nil(t, g.take("cmnd/m/POWER2", now))
	require.Empty(t, g.pending)
}
