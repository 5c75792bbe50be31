package tasmota

import (
	"log/slog"
	"net"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"kluis/hardware"
)

// startBroker serves an embedded broker on addr and returns its stop
// function.
func startBroker(t *testing.T, addr string) func() {
	t.Helper()
	s := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, s.AddHook(new(auth.AllowHook), nil))
	require.NoError(t, s.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})))
	errc := make(chan error, 1)
	go func() { errc <- s.Serve() }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = s.Close()
		}
	}
	t.Cleanup(stop)
	return stop
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// After the broker restarts, the driver reconnects, subscribes again (a
// clean session forgets subscriptions) and re-reads the module.
func TestResubscribesAfterBrokerRestart(t *testing.T) {
	addr := freeAddr(t)
	url := "tcp://" + addr
	stop := startBroker(t, addr)
	t.Setenv("MQTT_URL", url)
	topic := uniqueTopic(t, "restart")
	dev := newDevice(t, topic, 2, false)
	d, err := New(Options{Modules: []Module{{Topic: topic, Relays: 2}}, Registry: prometheus.NewRegistry(), Timeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	require.NoError(t, d.Ready(testCtx(t)))
	settle(t, d)
	w := startWatch(t, d)

	stop()
	dev.client.Disconnect(0)
	// The module's door opens while the broker is away.
	startBroker(t, addr)
	dev2 := newDevice(t, topic, 2, false)
	dev2.setSwitchQuiet(2, true)
	// The driver's Status 10 on reconnect finds the open door...
	w.waitEvent(t, hardware.DoorOpened, hardware.Address{Channel: 1})
	// ...and live reports arrive again through the new subscription.
	dev2.setSwitch(1, true)
	w.waitEvent(t, hardware.DoorOpened, hardware.Address{Channel: 0})
}
