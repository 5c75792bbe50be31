package hardwaretest

import (
	"context"
	"sync"
	"testing"
	"time"

	"kluis/hardware"
)

// Watchable is what a Watcher needs of a driver.
type Watchable interface {
	Watch(ctx context.Context, fn func(hardware.Event) error) error
}

// Watcher runs a driver's Watch in the background and keeps every event it
// delivers (the callback accepts each one), for the tests of the real
// drivers: wait for an event, count events, look at all of them.
type Watcher struct {
	t      testing.TB
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Watch's result, once done is closed

	mu     sync.Mutex
	events []hardware.Event
	stop   sync.Once
}

// StopWithin bounds how long Stop waits for Watch to return.
const StopWithin = 10 * time.Second

// StartWatch runs d.Watch until Stop, or until t ends.
func StartWatch(t testing.TB, d Watchable) *Watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{t: t, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.err = d.Watch(ctx, func(ev hardware.Event) error {
			w.mu.Lock()
			w.events = append(w.events, ev)
			w.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(func() { w.Stop() })
	return w
}

// Stop ends the Watch and returns its error (context.Canceled for a Watch
// that ran until now); it fails the test when Watch does not return within
// StopWithin. Stop may be called more than once.
func (w *Watcher) Stop() error {
	w.stop.Do(func() {
		w.cancel()
		select {
		case <-w.done:
		case <-time.After(StopWithin):
			w.t.Errorf("hardwaretest: Watch did not return within %s of its cancellation", StopWithin)
		}
	})
	select {
	case <-w.done:
		return w.err
	default:
		return context.DeadlineExceeded
	}
}

// Events returns the events seen so far, in order.
func (w *Watcher) Events() []hardware.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]hardware.Event(nil), w.events...)
}

// Count returns how many events of kind at addr were seen so far.
func (w *Watcher) Count(kind hardware.EventKind, addr hardware.Address) int {
	n := 0
	for _, ev := range w.Events() {
		if ev.Kind == kind && ev.Addr == addr {
			n++
		}
	}
	return n
}

// WaitEventWithin bounds WaitEvent.
const WaitEventWithin = 15 * time.Second

// WaitEvent waits (at most WaitEventWithin) for an event of kind at addr
// and returns the first one seen; it fails t with every event seen when
// none comes.
func (w *Watcher) WaitEvent(t testing.TB, kind hardware.EventKind, addr hardware.Address) hardware.Event {
	t.Helper()
	got := w.WaitFor(t, WaitEventWithin, func(ev hardware.Event) bool { return ev.Kind == kind && ev.Addr == addr })
	return got[0]
}

// WaitFor waits until the events seen contain one matching each of want,
// in this order (other events may come between), and returns those
// matches; it fails t with every event seen when they do not come within
// within.
func (w *Watcher) WaitFor(t testing.TB, within time.Duration, want ...func(hardware.Event) bool) []hardware.Event {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		evs := w.Events()
		var got []hardware.Event
		for _, ev := range evs {
			if len(got) < len(want) && want[len(got)](ev) {
				got = append(got, ev)
			}
		}
		if len(got) == len(want) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("hardwaretest: matched %d of %d wanted events within %s; saw %+v", len(got), len(want), within, evs)
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}
