package tasmota

import (
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"kluis/controller/promtext"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
	"kluis/hardware/hardwaretest"
)

// kluisd is killed right after it handed a relay's POWER1 ON to its
// broker connection, the ON still on its way (a stalled link: held before
// the broker read it), and the new kluisd's driver has seen the relay OFF
// before the ON could arrive: an ON reported now would read as a relay
// switched on without a command (LockUncommanded, forced_door), though
// kluisd commanded it.
//
// kluisd's relay connection has one client id in every run
// (hardware.tasmota.client_id, by default mqtt.client_id + "-tasmota";
// the start-up halt's driver and the driver for use both connect with
// it). The new connection takes the dead one's session over: the broker
// (the shipped Mosquitto) closes it, and what it had not read is lost, so
// the ON never reaches the module and nothing is raised. Under another
// client id the dead connection still delivers it: the module switches
// the relay on after the new driver's baseline, and the driver reports
// LockUncommanded (what it must do for an ON it did not send, from
// another client of the broker).
func TestKilledPredecessorsOnInFlight(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sameID bool
	}{{"same client id", true}, {"another client id", false}} {
		t.Run(tc.name, func(t *testing.T) {
			topic := uniqueTopic(t, "killedon")
			dev := newDevice(t, topic, 2, false)
			px := newStallProxy(t, strings.TrimPrefix(testenv.BrokerURL(), "tcp://"))
			id := "kluisd-" + topic + "-tasmota"

			// The killed kluisd: PulseTime1 confirmed, then its ON
			// written to a link that stalled; the process dies without
			// sending anything more (no reconnection).
			old := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(px.url()).SetClientID(id).
				SetCleanSession(true).SetAutoReconnect(false).SetKeepAlive(time.Minute))
			tok := old.Connect()
			require.True(t, tok.WaitTimeout(10*time.Second))
			require.NoError(t, tok.Error())
			t.Cleanup(func() { old.Disconnect(0) })
			old.Publish("cmnd/"+topic+"/PulseTime1", 0, false, "5").Wait()
			testenv.Eventually(t, "PulseTime1 set", func() bool { return dev.pulseTimeOf(1) == 5 })
			// The proxy's reader may be waiting in a read already: a
			// message of no consequence goes first, and once it is
			// forwarded the reader waits for the link to come back.
			px.stall()
			_, sent0 := px.counts()
			old.Publish("kluistest/junk/"+topic, 0, false, "x").Wait()
			testenv.Eventually(t, "the reader at the stalled gate", func() bool {
				_, sent := px.counts()
				return sent > sent0
			})
			_, sentBefore := px.counts()
			require.True(t, old.Publish("cmnd/"+topic+"/POWER1", 0, false, "ON").WaitTimeout(10*time.Second))

			// The new kluisd's driver, straight to the broker, sees the
			// relay OFF.
			newID := id
			if !tc.sameID {
				newID = id + "-2"
			}
			d, err := New(Options{Broker: testenv.BrokerURL(), ClientID: newID, Modules: []Module{{Topic: topic, Relays: 2}},
				Registry: promtext.NewRegistry(), Timeout: 5 * time.Second})
			require.NoError(t, err)
			t.Cleanup(func() { _ = d.Close() })
			require.NoError(t, d.Ready(testCtx(t)))
			var on bool
			testenv.Eventually(t, "the new driver's baseline of POWER1", func() bool {
				d.mu.Lock()
				defer d.mu.Unlock()
				var known bool
				on, known = d.mods[topic].power[1]
				return known
			})
			require.False(t, on, "the new driver's baseline of POWER1")
			w := hardwaretest.StartWatch(t, d)
			lock := hardware.Address{Board: 0, Channel: 0}

			if !tc.sameID {
				// The link comes back: the dead connection's ON arrives.
				px.carryOn()
				w.WaitEvent(t, hardware.LockUncommanded, lock)
				require.Equal(t, 1, dev.onCount(1))
				return
			}
			// The broker closed the dead connection when the new one
			// took its session over; then the link comes back and what
			// the dead connection held is written to the closed one.
			testenv.Eventually(t, "the broker closes the dead connection", func() bool {
				closed, _ := px.counts()
				return closed >= 1
			})
			px.carryOn()
			testenv.Eventually(t, "the held ON forwarded", func() bool {
				_, sent := px.counts()
				return sent > sentBefore
			})
			settle(t, d) // a Status 10 round trip: the module had it first
			require.Zero(t, dev.onCount(1), "POWER1 ON reached the module after the new driver took over")
			require.Zero(t, w.Count(hardware.LockUncommanded, lock))
		})
	}
}
