// Package idlemem gives the Go heap's free pages back to the operating
// system once kluisd has been quiet for a while.
//
// Go's heap grows to its goal (at least 4 MB) between collections and the
// runtime's background scavenger keeps about that much resident, so after
// a burst of taps kluisd holds about 4 MB more than at start-up although
// its live heap stays under 1 MB (docs/performance.md, "kluisd's start and
// memory"). A kiosk is quiet most of the day and all night: after Quiet
// without activity (the engine's screen not changing), Run collects and
// returns every free page (debug.FreeOSMemory), once per quiet period.
// The cost is one collection of a small heap (a millisecond or two) and
// the page faults of the next burst; nothing is returned while the kiosk
// is in use.
package idlemem

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"
)

// DefaultQuiet is how long kluisd must be quiet before memory is returned.
const DefaultQuiet = 30 * time.Second

// Options are Run's.
type Options struct {
	// Changed returns a channel that is closed at the next activity (the
	// engine's Changed: the next screen change). Required.
	Changed func() <-chan struct{}
	// Quiet is how long no activity must be seen; default DefaultQuiet.
	Quiet time.Duration
	// Free returns the memory; default debug.FreeOSMemory.
	Free   func()
	Logger *slog.Logger
}

// Run returns memory after the first quiet period (the start-up's
// garbage) and then after each quiet period that follows activity, until
// ctx ends. It returns nothing again while nothing happens.
func Run(ctx context.Context, o Options) {
	if o.Quiet <= 0 {
		o.Quiet = DefaultQuiet
	}
	if o.Free == nil {
		o.Free = debug.FreeOSMemory
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	log := o.Logger.With("part", "idlemem")
	t := time.NewTimer(o.Quiet)
	defer t.Stop()
	armed := true // memory to return after the next quiet period
	for {
		changed := o.Changed()
		var quiet <-chan time.Time
		if armed {
			quiet = t.C
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
			armed = true
			t.Reset(o.Quiet)
		case <-quiet:
			armed = false
			start := time.Now()
			o.Free()
			log.Debug("free memory returned to the OS", "quiet", o.Quiet, "took", time.Since(start))
		}
	}
}
