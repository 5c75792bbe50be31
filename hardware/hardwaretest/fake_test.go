package hardwaretest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/hardware"
)

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func fixedClock() func() time.Time {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time { return at }
}

func TestPulseRecordsAndValidates(t *testing.T) {
	f := New(Options{Clock: fixedClock()})
	c := ctx(t)
	a := hardware.Address{Board: 0, Channel: 3}
	require.NoError(t, f.Pulse(c, a, 500*time.Millisecond, 7))
	require.ErrorIs(t, f.Pulse(c, hardware.Address{Board: 0, Channel: 16}, time.Second, 8), hardware.ErrOutOfRange)
	require.ErrorIs(t, f.Pulse(c, hardware.Address{Board: 1, Channel: 0}, time.Second, 9), hardware.ErrOutOfRange)
	require.ErrorIs(t, f.Pulse(c, a, 0, 10), hardware.ErrOutOfRange)

	p := f.Pulses()
	require.Len(t, p, 1)
	assert.Equal(t, a, p[0].Addr)
	assert.Equal(t, hardware.CommandID(7), p[0].ID)
	assert.Equal(t, 500*time.Millisecond, p[0].Duration)
	assert.Equal(t, fixedClock()(), p[0].At)
	assert.Len(t, f.Calls(), 4)
	assert.Equal(t, 1, f.PulseCount(a))
}

func TestCommandIDDedup(t *testing.T) {
	c := ctx(t)
	a := hardware.Address{Channel: 1}
	withIDs := New(Options{Caps: hardware.Capabilities{CommandIDs: true}})
	require.NoError(t, withIDs.Pulse(c, a, time.Second, 5))
	require.NoError(t, withIDs.Pulse(c, a, time.Second, 5))
	assert.Equal(t, 1, withIDs.PulseCount(a), "same id is one pulse on hardware with command ids")
	calls := withIDs.Calls()
	require.Len(t, calls, 2)
	assert.True(t, calls[1].Duplicate)

	without := New(Options{})
	require.NoError(t, without.Pulse(c, a, time.Second, 5))
	require.NoError(t, without.Pulse(c, a, time.Second, 5))
	assert.Equal(t, 2, without.PulseCount(a), "without command ids a retry pulses again")
}

func TestFailNext(t *testing.T) {
	f := New(Options{})
	c := ctx(t)
	boom := errors.New("boom")
	f.FailNext(OpPulse, boom)
	f.FailNext(OpStates, nil)
	a := hardware.Address{Channel: 2}
	require.ErrorIs(t, f.Pulse(c, a, time.Second, 1), boom)
	require.NoError(t, f.Pulse(c, a, time.Second, 2))
	_, err := f.States(c)
	require.ErrorIs(t, err, ErrInjected)
	_, err = f.States(c)
	require.NoError(t, err)
	p := f.Pulses()
	require.Len(t, p, 1, "a failed pulse was not carried out")
	assert.Equal(t, hardware.CommandID(2), p[0].ID)
}

func TestStates(t *testing.T) {
	f := New(Options{Boards: []hardware.BoardInfo{{Address: 1, Channels: 2}, {Address: 0, Channels: 3}}})
	c := ctx(t)
	f.SetState(hardware.ChannelState{Addr: hardware.Address{Board: 1, Channel: 1}, Locked: true, DoorOpen: true, ItemPresent: true})
	st, err := f.States(c)
	require.NoError(t, err)
	require.Len(t, st, 5)
	assert.Equal(t, hardware.Address{Board: 0, Channel: 0}, st[0].Addr)
	assert.True(t, st[0].Locked)
	assert.False(t, st[0].DoorOpen)
	last := st[4]
	assert.Equal(t, hardware.Address{Board: 1, Channel: 1}, last.Addr)
	assert.True(t, last.DoorOpen)
	assert.True(t, last.ItemPresent)
}

func TestWatchAcknowledgedSemantics(t *testing.T) {
	f := New(Options{})
	c := ctx(t)
	a := hardware.Address{Channel: 0}
	f.Inject(hardware.Event{Kind: hardware.DoorOpened, Addr: a})
	f.Inject(hardware.Event{Kind: hardware.DoorClosed, Addr: a})

	refuse := errors.New("journal full")
	var seen []hardware.EventKind
	err := f.Watch(c, func(ev hardware.Event) error {
		seen = append(seen, ev.Kind)
		return refuse
	})
	require.ErrorIs(t, err, refuse)
	assert.Equal(t, []hardware.EventKind{hardware.DoorOpened}, seen)
	require.Len(t, f.Pending(), 2, "a refused event stays queued")
	assert.Empty(t, f.Acked())

	wctx, cancel := context.WithCancel(c)
	done := make(chan error, 1)
	got := make(chan hardware.Event, 10)
	go func() {
		done <- f.Watch(wctx, func(ev hardware.Event) error { got <- ev; return nil })
	}()
	acked, err := f.WaitAcked(c, 2)
	require.NoError(t, err)
	assert.Equal(t, hardware.DoorOpened, acked[0].Kind, "redelivered first")
	assert.Equal(t, hardware.DoorClosed, acked[1].Kind)
	assert.False(t, acked[0].At.IsZero())

	// Events injected while Watch waits are delivered too.
	f.Inject(hardware.Event{Kind: hardware.ItemPlaced, Addr: a})
	_, err = f.WaitAcked(c, 3)
	require.NoError(t, err)
	assert.Empty(t, f.Pending())

	// A second concurrent watch is refused.
	require.ErrorIs(t, f.Watch(c, func(hardware.Event) error { return nil }), hardware.ErrBusy)

	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not stop")
	}
	assert.Len(t, got, 3)
}

func TestHaltAndClose(t *testing.T) {
	f := New(Options{})
	c := ctx(t)
	a := hardware.Address{Channel: 0}
	require.NoError(t, f.Halt())
	require.NoError(t, f.Halt(), "halt twice is fine")
	require.ErrorIs(t, f.Pulse(c, a, time.Second, 1), hardware.ErrHalted)
	f.Resume()
	require.NoError(t, f.Pulse(c, a, time.Second, 2))
	require.NoError(t, f.Close())
	require.NoError(t, f.Close())
	assert.True(t, f.Closed())
	require.ErrorIs(t, f.Pulse(c, a, time.Second, 3), hardware.ErrHalted)
	require.ErrorIs(t, f.Watch(c, func(hardware.Event) error { return nil }), hardware.ErrHalted)
	assert.Len(t, f.Pulses(), 1)
}

func TestMechanism(t *testing.T) {
	f := New(Options{Boards: []hardware.BoardInfo{{Address: 0, Channels: 1, Slots: 10}}})
	c := ctx(t)
	info, err := f.Describe(c)
	require.NoError(t, err)
	assert.True(t, info.Caps.Mechanism)
	assert.Equal(t, "fake", info.Kind)

	require.ErrorIs(t, f.Present(c, 0, 10, 1), hardware.ErrOutOfRange)
	require.ErrorIs(t, f.Present(c, 1, 0, 1), hardware.ErrUnsupported)
	require.NoError(t, f.Present(c, 0, 4, 2))
	h, err := f.Hatch(c, 0)
	require.NoError(t, err)
	assert.True(t, h.Busy)
	require.ErrorIs(t, f.Present(c, 0, 5, 3), hardware.ErrBusy)
	f.CompletePresent(0, 4)
	h, err = f.Hatch(c, 0)
	require.NoError(t, err)
	assert.False(t, h.Busy)
	assert.Equal(t, 4, h.Slot)
	p := f.Pending()
	require.Len(t, p, 1)
	assert.Equal(t, hardware.SlotPresented, p[0].Kind)
	assert.Equal(t, 4, p[0].Slot)

	require.NoError(t, f.Present(c, 0, 6, 4))
	f.FaultPresent(0, "jammed")
	require.ErrorIs(t, f.Present(c, 0, 7, 5), hardware.ErrFault)
	assert.Len(t, f.Presents(), 2)
}

func TestScriptReplay(t *testing.T) {
	a := hardware.Address{Channel: 2}
	s := Script{
		{State: &hardware.ChannelState{Addr: a, Locked: true, ItemPresent: true}},
		{Expect: &Call{Op: OpPulse, Addr: a}},
		{Event: &hardware.Event{Kind: hardware.DoorOpened, Addr: a}},
		{Event: &hardware.Event{Kind: hardware.ItemRemoved, Addr: a}},
		{Expect: &Call{Op: OpPulse, Addr: hardware.Address{Channel: 3}}},
		{Event: &hardware.Event{Kind: hardware.DoorOpened, Addr: hardware.Address{Channel: 3}}},
	}
	f := New(Options{})
	c := ctx(t)
	f.Play(s)
	st, _ := f.State(a)
	assert.True(t, st.ItemPresent, "leading state step applied")
	assert.Empty(t, f.Pending(), "events wait for the expected pulse")
	require.NoError(t, f.Pulse(c, a, time.Second, 1))
	p := f.Pending()
	require.Len(t, p, 2)
	assert.Equal(t, hardware.DoorOpened, p[0].Kind)
	assert.Equal(t, hardware.ItemRemoved, p[1].Kind)
	done, err := f.ScriptDone()
	assert.False(t, done)
	assert.NoError(t, err)

	// A wrong pulse is a script error and produces nothing.
	require.NoError(t, f.Pulse(c, hardware.Address{Channel: 9}, time.Second, 2))
	_, err = f.ScriptDone()
	require.Error(t, err)
	assert.Len(t, f.Pending(), 2)
}

func TestRecordingRoundTrip(t *testing.T) {
	c := ctx(t)
	a := hardware.Address{Channel: 1}
	rec := New(Options{})
	require.NoError(t, rec.Pulse(c, a, time.Second, 1))
	rec.Inject(hardware.Event{Kind: hardware.DoorOpened, Addr: a})
	rec.FailNext(OpPulse, nil)
	require.Error(t, rec.Pulse(c, a, time.Second, 2))
	rec.Inject(hardware.Event{Kind: hardware.DoorClosed, Addr: a})

	script := rec.Recording()
	raw, err := json.Marshal(script)
	require.NoError(t, err)
	var back Script
	require.NoError(t, json.Unmarshal(raw, &back))
	require.Len(t, back, 3, "failed pulse left out")

	f := New(Options{})
	f.Play(back)
	assert.Empty(t, f.Pending())
	require.NoError(t, f.Pulse(c, a, time.Second, 1))
	p := f.Pending()
	require.Len(t, p, 2)
	assert.Equal(t, hardware.DoorOpened, p[0].Kind)
	assert.Equal(t, hardware.DoorClosed, p[1].Kind)
	done, err := f.ScriptDone()
	assert.True(t, done)
	assert.NoError(t, err)
}

func TestWaitPulsesTimesOut(t *testing.T) {
	f := New(Options{})
	c, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := f.WaitPulses(c, 1)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestOnPulseHookOpensTheDoor(t *testing.T) {
	var f *Fake
	f = New(Options{
		Caps: hardware.Capabilities{CommandIDs: true},
		OnPulse: func(c Call) {
			f.SetState(hardware.ChannelState{Addr: c.Addr, Locked: true, DoorOpen: true})
			f.Inject(hardware.Event{Kind: hardware.DoorOpened, Addr: c.Addr})
		},
	})
	c := ctx(t)
	a := hardware.Address{Channel: 4}
	require.NoError(t, f.Pulse(c, a, time.Second, 1))
	require.NoError(t, f.Pulse(c, a, time.Second, 1)) // duplicate: no hook
	f.FailNext(OpPulse, nil)
	require.Error(t, f.Pulse(c, hardware.Address{Channel: 5}, time.Second, 2)) // failed: no hook
	st, _ := f.State(a)
	assert.True(t, st.DoorOpen)
	p := f.Pending()
	require.Len(t, p, 1)
	assert.Equal(t, a, p[0].Addr)
}
