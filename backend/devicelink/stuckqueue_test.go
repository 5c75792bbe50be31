package devicelink

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// mqttString is an MQTT UTF-8 string field.
func mqttString(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

// mqttPacket frames body behind hdr (remaining length under 16 KB).
func mqttPacket(hdr byte, body ...[]byte) []byte {
	var b []byte
	for _, p := range body {
		b = append(b, p...)
	}
	n := len(b)
	out := []byte{hdr}
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		out = append(out, c)
		if n == 0 {
			break
		}
	}
	return append(out, b...)
}

// While the event queue stays full (the database hangs: every event takes
// Options.Timeout), a device's message waited in the broker's goroutine
// for room for as long as it took. kluisd, its pings unanswered behind
// it, reconnected every ping timeout with the same client id, and each
// connection it left kept its goroutine (and what it had read) waiting
// too: a goroutine per device per reconnection for the whole outage. Now
// a message that finds no room within Timeout is dropped (not
// acknowledged: the device sends it again), counted as "busy".
func TestFullQueueHoldsNoConnectionPastTimeout(t *testing.T) {
	pool := newPool(t)
	release := make(chan struct{})
	hung := EventHandlerFunc(func(context.Context, pgx.Tx, string, wire.Event) error {
		<-release // the database does not answer; the queue stays full
		return nil
	})
	_, url, reg := startEmbedded(t, Options{Pool: pool, Events: hung, Workers: 1, QueueSize: 1, Timeout: time.Second})
	addr := strings.TrimPrefix(url, "tcp://")
	t.Cleanup(func() { close(release) }) // before the link stops

	before := runtime.NumGoroutine()
	const reconnections = 12
	for range reconnections {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		connect := mqttPacket(0x10, mqttString("MQTT"), []byte{4, 0xC2, 0, 30}, mqttString("dev-a"), mqttString("dev-a"), mqttString("pw-dev-a"))
		ev, err := wire.Encode(&wire.Event{ID: wire.NewID(time.Now()), Kind: wire.EvDoorOpened, At: time.Now().UTC(), Addr: &wire.Address{Board: 0, Channel: 1}})
		require.NoError(t, err)
		publish := mqttPacket(0x32, mqttString(wire.Root+"/dev-a/event"), []byte{0, 1}, ev)
		_, err = c.Write(append(connect, publish...))
		require.NoError(t, err)
		time.Sleep(50 * time.Millisecond) // the next connection takes this one's session over
	}
	testenv.Eventually(t, "the connections left behind let go", func() bool {
		return runtime.NumGoroutine() < before+reconnections/2
	})
	require.Positive(t, metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "event", "outcome": "busy"}))
}
