// Package periodic is the one loop behind every periodic job of
// kluis-backend (housekeeping, reminders, the notification outbox, the
// prunes, the audit chainer and watcher, the follow-up sweep, the code
// sync's checks, the live pages' poll, the online-device count): a pass at
// once or after one interval, then one every interval and whenever woken,
// until the context ends.
//
// A pass handles its own failures (it logs them and counts them in its
// metrics, each job as it always has) and takes the time from the job's
// injected clock; the loop only decides when a pass runs. The interval is
// a time.Ticker's: a pass that takes longer than the interval delays the
// next one, it does not pile passes up.
package periodic

import (
	"context"
	"errors"
	"time"
)

// Loop says when the passes of a job run.
type Loop struct {
	// Every is the interval between passes; it must be positive.
	Every time.Duration
	// Delayed makes the first pass come after one interval; by default it
	// runs at once.
	Delayed bool
	// Wake, when not nil, makes a pass as soon as it receives (the
	// interval's rhythm is unchanged).
	Wake <-chan struct{}
}

// Run calls pass as l says until ctx ends and returns ctx's error; a pass
// under way is not interrupted but gets ctx. It returns an error at once
// when l.Every is not positive.
func (l Loop) Run(ctx context.Context, pass func(ctx context.Context)) error {
	if l.Every <= 0 {
		return errors.New("periodic: the interval must be positive")
	}
	t := time.NewTicker(l.Every)
	defer t.Stop()
	if !l.Delayed {
		pass(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-l.Wake:
		}
		pass(ctx)
	}
}
