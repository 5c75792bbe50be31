package tasmota

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/promtext"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
	"kluis/hardware/hardwaretest"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func newDriver(t *testing.T, o Options) *Driver {
	t.Helper()
	o.Broker = testenv.BrokerURL()
	o.ClientID = "drv-" + o.Modules[0].Topic
	o.Registry = promtext.NewRegistry()
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	d, err := New(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	require.NoError(t, d.Ready(testCtx(t)))
	return d
}

// settle makes sure every message published by dev before it has been
// applied by d: a Status 10 round trip travels behind them.
func settle(t *testing.T, d *Driver) {
	t.Helper()
	_, err := d.States(testCtx(t))
	require.NoError(t, err)
}

func TestOpenEveryChannelAndReadStates(t *testing.T) {
	topic := uniqueTopic(t, "bank")
	dev := newDevice(t, topic, 4, false)
	dev.mu.Lock()
	dev.autoOpen = true
	dev.mu.Unlock()
	dev.setSwitchQuiet(4+2, true) // item in channel 1
	d := newDriver(t, Options{Modules: []Module{{Topic: topic, Relays: 4, Board: 2}}})
	ctx := testCtx(t)

	info, err := d.Describe(ctx)
	require.NoError(t, err)
	assert.Equal(t, Kind, info.Kind)
	assert.Equal(t, []hardware.BoardInfo{{Address: 2, Channels: 4}}, info.Boards)
	assert.True(t, info.Caps.TimedPulse)
	assert.False(t, info.Caps.CommandIDs)

	st, err := d.States(ctx)
	require.NoError(t, err)
	require.Len(t, st, 4)
	for i, s := range st {
		assert.Equal(t, hardware.Address{Board: 2, Channel: i}, s.Addr)
		assert.True(t, s.Locked)
		assert.False(t, s.DoorOpen)
		assert.Equal(t, i == 1, s.ItemPresent, "channel %d", i)
	}

	w := hardwaretest.StartWatch(t, d)
	for i := 0; i < 4; i++ {
		require.NoError(t, d.Pulse(ctx, hardware.Address{Board: 2, Channel: i}, 100*time.Millisecond, 0))
	}
	for i := 0; i < 4; i++ {
		a := hardware.Address{Board: 2, Channel: i}
		assert.Equal(t, 1, dev.onCount(i+1), "relay %d", i+1)
		assert.Equal(t, 1, dev.pulseTimeOf(i+1), "100 ms is PulseTime 1")
		w.WaitEvent(t, hardware.Unlocked, a)
		w.WaitEvent(t, hardware.DoorOpened, a)
	}
	// The hardware-timed pulse ends by itself: every lock reads locked.
	require.Eventually(t, func() bool {
		st, err := d.States(ctx)
		if err != nil {
			return false
		}
		for _, s := range st {
			if !s.Locked || !s.DoorOpen {
				return false
			}
		}
		return true
	}, 15*time.Second, 50*time.Millisecond)

	require.ErrorIs(t, d.Pulse(ctx, hardware.Address{Board: 2, Channel: 4}, time.Second, 0), hardware.ErrOutOfRange)
	require.ErrorIs(t, d.Pulse(ctx, hardware.Address{Board: 0, Channel: 0}, time.Second, 0), hardware.ErrOutOfRange)
	require.ErrorIs(t, d.Pulse(ctx, hardware.Address{Board: 2, Channel: 0}, 0, 0), hardware.ErrOutOfRange)
	settle(t, d)
	assert.Equal(t, 1, dev.onCount(1), "refused pulses sent nothing")
}

func TestDoorEventsAreDeduplicated(t *testing.T) {
	topic := uniqueTopic(t, "doors")
	dev := newDevice(t, topic, 2, false)
	d := newDriver(t, Options{Modules: []Module{{Topic: topic, Relays: 2, Board: 0}}})
	settle(t, d) // baseline
	w := hardwaretest.StartWatch(t, d)
	a := hardware.Address{Board: 0, Channel: 1}

	dev.setSwitch(2, true)
	dev.setSwitch(2, true) // a QoS 1 duplicate or a repeated report
	w.WaitEvent(t, hardware.DoorOpened, a)
	dev.setSwitch(4, true) // item sensor of channel 1
	w.WaitEvent(t, hardware.ItemPlaced, a)
	dev.setSwitch(2, false)
	w.WaitEvent(t, hardware.DoorClosed, a)
	settle(t, d)
	assert.Equal(t, 1, w.Count(hardware.DoorOpened, a))
	assert.Equal(t, 1, w.Count(hardware.DoorClosed, a))
	assert.Len(t, w.Events(), 3)
}

func TestLWTOfflineAndOnline(t *testing.T) {
	topic := uniqueTopic(t, "lwt")
	dev := newDevice(t, topic, 2, false)
	d := newDriver(t, Options{Modules: []Module{{Topic: topic, Relays: 2, Board: 5}}, Timeout: 2 * time.Second})
	settle(t, d)
	w := hardwaretest.StartWatch(t, d)
	b := hardware.Address{Board: 5, Channel: -1}

	dev.lwt("Offline")
	w.WaitEvent(t, hardware.BoardOffline, b)
	err := d.Pulse(testCtx(t), hardware.Address{Board: 5, Channel: 0}, time.Second, 0)
	require.ErrorIs(t, err, hardware.ErrTimeout)
	_, err = d.States(testCtx(t))
	require.ErrorIs(t, err, hardware.ErrTimeout)

	// A door opened while the module was away is found by the re-read.
	dev.setSwitchQuiet(1, true)
	dev.lwt("Online")
	w.WaitEvent(t, hardware.BoardOnline, b)
	w.WaitEvent(t, hardware.DoorOpened, hardware.Address{Board: 5, Channel: 0})
	assert.Equal(t, 0, dev.onCount(1), "nothing was sent to the offline module")
	assert.Equal(t, 1, w.Count(hardware.BoardOffline, b))
}

func TestMalformedPayloadsAreCountedAndIgnored(t *testing.T) {
	topic := uniqueTopic(t, "junk")
	dev := newDevice(t, topic, 2, false)
	var logs testenv.SyncBuffer
	d := newDriver(t, Options{Modules: []Module{{Topic: topic, Relays: 2, Board: 0}},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	settle(t, d)
	w := hardwaretest.StartWatch(t, d)

	dev.raw("stat/"+topic+"/RESULT", `{"Switch1":`)
	dev.raw("stat/"+topic+"/RESULT", `{"Switch1":{"Action":"SIDEWAYS"}}`)
	dev.raw("stat/"+topic+"/POWER1", `MAYBE`)
	dev.raw("stat/"+topic+"/STATUS10", `[1,2]`)
	dev.raw("tele/"+topic+"/LWT", `Zombie`)
	dev.setSwitch(2, true)
	w.WaitEvent(t, hardware.DoorOpened, hardware.Address{Board: 0, Channel: 1})
	assert.Equal(t, 5.0, d.m.messages.WithLabelValues("malformed").Value())
	assert.Equal(t, 1, strings.Count(logs.String(), `msg="ignored malformed message"`),
		"every one counted, the first logged (then a summary and one a minute at most): %s", logs.String())
	evs := w.Events()
	require.Len(t, evs, 1, "the junk caused no event: %+v", evs)
	st, err := d.States(testCtx(t))
	require.NoError(t, err)
	assert.False(t, st[0].DoorOpen)
	assert.True(t, st[0].Locked)
}

func TestUnconfirmedPulseTimeNeverSwitchesTheRelay(t *testing.T) {
	topic := uniqueTopic(t, "nopt")
	dev := newDevice(t, topic, 1, false)
	dev.mu.Lock()
	dev.ignorePulseTime = true
	dev.mu.Unlock()
	d := newDriver(t, Options{Modules: []Module{{Topic: topic, Relays: 1, Board: 0}}, Timeout: time.Second})
	err := d.Pulse(testCtx(t), hardware.Address{}, time.Second, 0)
	require.ErrorIs(t, err, hardware.ErrTimeout)
	settle(t, d)
	assert.Equal(t, 0, dev.onCount(1))
	assert.Equal(t, 1.0, d.m.pulses.WithLabelValues("unconfirmed").Value())
}

func TestHaltSwitchesEveryRelayOff(t *testing.T) {
	topic := uniqueTopic(t, "halt")
	dev := newDevice(t, topic, 3, false)
	d := newDriver(t, Options{Modules: []Module{{Topic: topic, Relays: 3, Board: 0}}})
	require.NoError(t, d.Halt())
	require.Eventually(t, func() bool {
		return dev.offCount(1) == 1 && dev.offCount(2) == 1 && dev.offCount(3) == 1
	}, 15*time.Second, 10*time.Millisecond)
	require.ErrorIs(t, d.Pulse(testCtx(t), hardware.Address{}, time.Second, 0), hardware.ErrHalted)
	require.NoError(t, d.Close())
	require.NoError(t, d.Close())
	require.ErrorIs(t, d.Watch(testCtx(t), func(hardware.Event) error { return nil }), hardware.ErrHalted)
	assert.Equal(t, 0, dev.onCount(1))
}

func TestWatchRedeliversRefusedEvent(t *testing.T) {
	topic := uniqueTopic(t, "ack")
	dev := newDevice(t, topic, 1, false)
	d := newDriver(t, Options{Modules: []Module{{Topic: topic, Relays: 1, Board: 0}}})
	settle(t, d)
	dev.setSwitch(1, true)
	refuse := errors.New("journal full")
	ctx := testCtx(t)
	err := d.Watch(ctx, func(ev hardware.Event) error {
		assert.Equal(t, hardware.DoorOpened, ev.Kind)
		return refuse
	})
	require.ErrorIs(t, err, refuse)
	w := hardwaretest.StartWatch(t, d)
	w.WaitEvent(t, hardware.DoorOpened, hardware.Address{})
}

func TestAutomaton(t *testing.T) {
	topic := uniqueTopic(t, "auto")
	dev := newDevice(t, topic, 5, true) // hatch + 4 slots
	d := newDriver(t, Options{Modules: []Module{{Topic: topic, Relays: 5, Board: 1}}, Automaton: true})
	ctx := testCtx(t)
	info, err := d.Describe(ctx)
	require.NoError(t, err)
	assert.True(t, info.Caps.Mechanism)
	assert.Equal(t, []hardware.BoardInfo{{Address: 1, Channels: 1, Slots: 4}}, info.Boards)
	settle(t, d)
	w := hardwaretest.StartWatch(t, d)
	board := hardware.Address{Board: 1, Channel: -1}
	hatch := hardware.Address{Board: 1, Channel: 0}

	require.ErrorIs(t, d.Present(ctx, 1, 4, 0), hardware.ErrOutOfRange)
	require.ErrorIs(t, d.Present(ctx, 0, 0, 0), hardware.ErrOutOfRange)
	require.NoError(t, d.Present(ctx, 1, 2, 0))
	assert.Equal(t, 1, dev.onCount(4), "slot 2 is POWER4")
	ev := w.WaitEvent(t, hardware.SlotPresented, board)
	assert.Equal(t, 2, ev.Slot)
	w.WaitEvent(t, hardware.ItemPlaced, hatch)
	h, err := d.Hatch(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, 2, h.Slot)
	assert.False(t, h.Busy)
	assert.True(t, h.ItemAtHatch)

	dev.mu.Lock()
	dev.autoOpen = true
	dev.mu.Unlock()
	require.NoError(t, d.Pulse(ctx, hatch, 200*time.Millisecond, 0))
	assert.Equal(t, 1, dev.onCount(1))
	w.WaitEvent(t, hardware.HatchOpened, hatch)
	require.ErrorIs(t, d.Pulse(ctx, hardware.Address{Board: 1, Channel: 1}, time.Second, 0), hardware.ErrOutOfRange)

	dev.mu.Lock()
	dev.faultOnPresent = true
	dev.mu.Unlock()
	require.NoError(t, d.Present(ctx, 1, 0, 0))
	w.WaitEvent(t, hardware.MechanismFault, board)
	settle(t, d)
	assert.Equal(t, 1, w.Count(hardware.SlotPresented, board), "a faulted present is not presented")
	require.ErrorIs(t, d.Present(ctx, 1, 1, 0), hardware.ErrFault)
}

func TestNewRejectsBadOptions(t *testing.T) {
	_, err := New(Options{})
	require.Error(t, err)
	_, err = New(Options{Modules: []Module{{Topic: "a/#", Relays: 1}}})
	require.Error(t, err)
	_, err = New(Options{Modules: []Module{{Topic: "a", Relays: 0}}})
	require.ErrorIs(t, err, hardware.ErrOutOfRange)
	_, err = New(Options{Modules: []Module{{Topic: "a", Relays: 1}, {Topic: "b", Relays: 1}}})
	require.Error(t, err, "two modules on board 0")
	_, err = New(Options{Automaton: true, Modules: []Module{{Topic: "a", Relays: 1}}})
	require.ErrorIs(t, err, hardware.ErrOutOfRange, "an automaton needs a slot relay")
}
