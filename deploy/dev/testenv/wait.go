package testenv

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Within bounds Eventually. It is only reached when a test fails: a
// condition that holds returns as soon as it is seen.
const Within = 20 * time.Second

// Every is how often Eventually checks its condition.
const Every = 20 * time.Millisecond

// PollEvery is how often Poll and MustPoll check theirs (their conditions
// usually make an HTTP call).
const PollEvery = 100 * time.Millisecond

// Eventually checks cond every Every until it is true, and fails t when it
// is still false after Within.
func Eventually(t T, what string, cond func() bool) {
	t.Helper()
	EventuallyWithin(t, Within, what, cond)
}

// EventuallyWithin is Eventually with its own bound.
func EventuallyWithin(t T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
			return
		}
		time.Sleep(Every)
	}
}

// EventuallyProgressing is Eventually for a condition that holds once some
// amount of work is done, work that takes longer the more loaded the
// machine is (events through a real database, one at a time). It checks
// cond every Every until it holds, and fails t only when cond is still
// false and progress (what has been done so far, e.g. a count) has not
// changed for stall: the work stopped, however long the whole of it takes.
func EventuallyProgressing(t T, stall time.Duration, what string, progress func() string, cond func() bool) {
	t.Helper()
	last := progress()
	moved := time.Now()
	for !cond() {
		if p := progress(); p != last {
			last, moved = p, time.Now()
		} else if time.Since(moved) > stall {
			t.Fatalf("no progress for %s waiting for %s (stuck at %s)", stall, what, last)
			return
		}
		time.Sleep(Every)
	}
}

// Cond is a condition for Poll: whether it holds, what was observed (for
// the error when it never holds) and an error of the observation itself
// (remembered, and retried).
type Cond func(ctx context.Context) (ok bool, seen string, err error)

// Poll checks cond every PollEvery until it holds, ctx ends or timeout
// passes. It returns the last observation; the error names what was
// awaited, the last observation and the last error of cond. cond gets a
// context that ends with the wait.
func Poll(ctx context.Context, timeout time.Duration, what string, cond Cond) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	var lastErr error
	tick := time.NewTicker(PollEvery)
	defer tick.Stop()
	for {
		ok, seen, err := cond(ctx)
		if err == nil && ok {
			return seen, nil
		}
		if seen != "" {
			last = seen
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("%s: not within %s", what, timeout)
			if last != "" {
				msg += " (last seen: " + last + ")"
			}
			if lastErr != nil {
				msg += " (last error: " + lastErr.Error() + ")"
			}
			return last, errors.New(msg)
		case <-tick.C:
		}
	}
}

// MustPoll is Poll that fails t when cond does not hold in time.
func MustPoll(t T, timeout time.Duration, what string, cond Cond) string {
	t.Helper()
	seen, err := Poll(context.Background(), timeout, what, cond)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return seen
}
