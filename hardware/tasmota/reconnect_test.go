package tasmota

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/broker"
	"kluis/controller/promtext"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
	"kluis/hardware/hardwaretest"
)

// startBroker serves an embedded broker on addr and returns its stop
// function.
func startBroker(t *testing.T, addr string) func() {
	t.Helper()
	// Kluis's embedded broker with every client allowed every topic (the
	// modules' local network).
	s, err := broker.New(broker.Options{Addr: addr, Logger: slog.New(slog.DiscardHandler),
		Credentials: func(context.Context, string, string) (string, broker.Role, bool) { return "", broker.RoleBackend, true }})
	require.NoError(t, err)
	require.NoError(t, s.Start())
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

// outage is a driver of one two-relay module on a private broker, and the
// module, after the broker went away and the driver reported the module
// offline.
type outage struct {
	d       *Driver
	w       *hardwaretest.Watcher
	dev     *device
	topic   string
	off     hardware.Event // the BoardOffline
	restart func()         // starts the broker again on the same address
}

func brokerOutage(t *testing.T, name string) outage {
	t.Helper()
	addr := testenv.FreeAddr(t)
	url := "tcp://" + addr
	stop := startBroker(t, addr)
	t.Setenv("MQTT_URL", url) // for the test's devices (newDevice)
	o := outage{topic: uniqueTopic(t, name), restart: func() { startBroker(t, addr) }}
	// No last will: the offline report can only come from the driver's
	// own lost connection.
	o.dev = newDeviceWill(t, o.topic, 2, false, false)
	d, err := New(Options{Broker: url, Modules: []Module{{Topic: o.topic, Relays: 2}}, Registry: promtext.NewRegistry(), Timeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	require.NoError(t, d.Ready(testCtx(t)))
	settle(t, d)
	o.d, o.w = d, hardwaretest.StartWatch(t, d)
	stop()
	o.dev.client.Disconnect(0)
	o.off = o.w.WaitEvent(t, hardware.BoardOffline, hardware.Address{Channel: -1})
	return o
}

// When the broker goes away every module is reported offline and no pulse
// is sent, not even later; after the broker restarts, the driver
// reconnects, subscribes again (a clean session forgets subscriptions),
// reports the module online and re-reads its switches and relays.
func TestResubscribesAfterBrokerRestart(t *testing.T) {
	o := brokerOutage(t, "restart")
	d, w, dev, topic := o.d, o.w, o.dev, o.topic
	require.Equal(t, "broker connection lost", o.off.Detail)
	// A pulse while the broker is away is refused and never sent later.
	perr := d.Pulse(testCtx(t), hardware.Address{Channel: 0}, time.Second, 1)
	require.ErrorIs(t, perr, hardware.ErrTimeout)
	// The module's door opens and its relay 2 is switched on while the
	// broker is away; nobody is told.
	o.restart()
	dev2 := newDevice(t, topic, 2, false)
	dev2.setSwitchQuiet(2, true)
	dev2.setPowerQuiet(2, true)
	w.WaitEvent(t, hardware.BoardOnline, hardware.Address{Channel: -1})
	// The driver's Status 10 on reconnect finds the open door...
	w.WaitEvent(t, hardware.DoorOpened, hardware.Address{Channel: 1})
	// ...its POWER2 query the energised relay...
	testenv.MustPoll(t, 15*time.Second, "relay 2 read as on after the reconnect", func(ctx context.Context) (bool, string, error) {
		st, err := d.States(ctx)
		return err == nil && len(st) == 2 && !st[1].Locked, fmt.Sprintf("%+v", st), err
	})
	// ...and live reports arrive again through the new subscription.
	dev2.setSwitch(1, true)
	w.WaitEvent(t, hardware.DoorOpened, hardware.Address{Channel: 0})
	require.Zero(t, dev2.onCount(1), "the pulse refused during the outage reached the module")
	// Nothing went out at QoS 1: paho stored nothing to resend at the
	// reconnection (the resend raced paho's writer, #703).
	for _, dv := range []*device{dev, dev2} {
		n, q1 := dv.qos()
		require.NotZero(t, n)
		require.Zero(t, q1, "commands published at QoS 1")
	}
}

// A driver halted while the broker is away cannot switch the relays off
// (Halt says so) and sends nothing later from paho's store; it switches
// every relay off itself once it is connected again, before anything
// else: an OFF that could not be sent is not lost. A closed driver does
// not come back.
func TestHaltedDriverSwitchesRelaysOffAfterReconnect(t *testing.T) {
	o := brokerOutage(t, "haltaway")
	d := o.d
	require.ErrorIs(t, d.Halt(), hardware.ErrTimeout, "halt with the broker away")
	o.restart()
	dev2 := newDevice(t, o.topic, 2, false)
	dev2.setPowerQuiet(1, true) // energised meanwhile
	testenv.EventuallyWithin(t, 30*time.Second, "every relay switched off after the reconnection", func() bool {
		return dev2.offCount(1) >= 1 && dev2.offCount(2) >= 1
	})
	require.ErrorIs(t, d.Pulse(testCtx(t), hardware.Address{Channel: 0}, time.Second, 1), hardware.ErrHalted)
	require.Zero(t, dev2.onCount(1))
	_, q1 := dev2.qos()
	require.Zero(t, q1, "commands published at QoS 1")
}

// A fresh driver halted before it connected (kluisd halts one at start-up)
// waits for the broker and switches the relays off; with no broker at all
// Halt says so instead of pretending.
func TestHaltOfAFreshDriver(t *testing.T) {
	topic := uniqueTopic(t, "fresh")
	dev := newDevice(t, topic, 2, false)
	d, err := New(Options{Broker: testenv.BrokerURL(), ClientID: "drv-" + topic, Modules: []Module{{Topic: topic, Relays: 2}},
		Registry: promtext.NewRegistry(), Timeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	require.NoError(t, d.Halt())
	// Off at its connection (halted already) and by Halt itself.
	require.Eventually(t, func() bool { return dev.offCount(1) >= 1 && dev.offCount(2) >= 1 }, 15*time.Second, 10*time.Millisecond)

	nobody := "tcp://" + testenv.FreeAddr(t)
	d2, err := New(Options{Broker: nobody, Modules: []Module{{Topic: topic, Relays: 2}},
		Registry: promtext.NewRegistry(), Timeout: 300 * time.Millisecond})
	require.NoError(t, err)
	require.ErrorIs(t, d2.Halt(), hardware.ErrTimeout)
	require.ErrorIs(t, d2.Close(), hardware.ErrTimeout, "Close halts too, and says the relays were not switched off")
	require.NoError(t, d2.Halt(), "after Close there is nothing to halt")
}
