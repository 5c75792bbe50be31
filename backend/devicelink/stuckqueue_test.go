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

	"kluis/backend/broker/mqtttest"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

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
		connect := mqtttest.Packet(0x10, mqtttest.String("MQTT"), []byte{4, 0xC2, 0, 30}, mqtttest.String("dev-a"), mqtttest.String("dev-a"), mqtttest.String("pw-dev-a"))
		ev, err := wire.Encode(&wire.Event{ID: wire.NewID(time.Now()), Kind: wire.EvDoorOpened, At: time.Now().UTC(), Addr: &wire.Address{Board: 0, Channel: 1}})
		require.NoError(t, err)
		publish := mqtttest.Packet(0x32, mqtttest.String(wire.Root+"/dev-a/event"), []byte{0, 1}, ev)
		_, err = c.Write(append(connect, publish...))
		require.NoError(t, err)
		time.Sleep(50 * time.Millisecond) // the next connection takes this one's session over
	}
	testenv.Eventually(t, "the connections left behind let go", func() bool {
		return runtime.NumGoroutine() < before+reconnections/2
	})
	require.Positive(t, metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "event", "outcome": "busy"}))
}
