package hardwaretest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/hardware"
)

// fatalT records Fatalf instead of ending the test.
type fatalT struct {
	testing.TB
	failed string
}

func (f *fatalT) Helper() {}
func (f *fatalT) Fatalf(format string, a ...any) {
	f.failed = fmt.Sprintf(format, a...)
}

func TestWatcher(t *testing.T) {
	f := New(Options{})
	w := StartWatch(t, f)
	a1, a2 := hardware.Address{Channel: 1}, hardware.Address{Channel: 2}
	f.Inject(hardware.Event{Kind: hardware.DoorOpened, Addr: a1})
	f.Inject(hardware.Event{Kind: hardware.DoorOpened, Addr: a2})
	f.Inject(hardware.Event{Kind: hardware.DoorClosed, Addr: a1})
	require.Equal(t, hardware.DoorClosed, w.WaitEvent(t, hardware.DoorClosed, a1).Kind)
	require.Equal(t, 1, w.Count(hardware.DoorOpened, a1))
	require.Equal(t, 0, w.Count(hardware.DoorClosed, a2))
	require.Len(t, w.Events(), 3)
	is := func(k hardware.EventKind, a hardware.Address) func(hardware.Event) bool {
		return func(ev hardware.Event) bool { return ev.Kind == k && ev.Addr == a }
	}
	got := w.WaitFor(t, time.Second, is(hardware.DoorOpened, a2), is(hardware.DoorClosed, a1))
	require.Equal(t, []hardware.Address{a2, a1}, []hardware.Address{got[0].Addr, got[1].Addr})

	// Out of order, or never: the test fails with what was seen.
	ft := &fatalT{TB: t}
	require.Nil(t, w.WaitFor(ft, 50*time.Millisecond, is(hardware.DoorClosed, a1), is(hardware.DoorOpened, a2)))
	require.Contains(t, ft.failed, "matched 1 of 2")

	require.ErrorIs(t, w.Stop(), context.Canceled)
	require.ErrorIs(t, w.Stop(), context.Canceled, "twice")
	f.Inject(hardware.Event{Kind: hardware.DoorOpened, Addr: a1})
	require.Len(t, w.Events(), 3, "nothing after Stop")
}
