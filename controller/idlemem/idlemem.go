// Package idlemem gives the Go heap's free pages back to the operating
// system once kluisd has been quiet for a while.
//
// Go's heap grows to its goal (at least 4 MB by default, 2 MB with the
// percentage kluisd sets once ready) between collections and the runtime's
// background scavenger keeps about that much resident, so after a burst
// of taps kluisd holds 3-4 MB more than at start-up although its live heap
// stays under 1 MB (docs/performance.md, "kluisd's start and memory"). A kiosk is quiet most of the day and all night: after Quiet
// without activity (the engine's screen not changing), Run collects and
// returns every free page (debug.FreeOSMemory). While it stays quiet the
// background work (board polls, heartbeats) still makes garbage: every
// Quiet, memory is returned again once the heap has grown by Slack since
// the last return. The cost is one collection of a small heap (a
// millisecond or two) and the page faults of the next burst; nothing is
// returned while the kiosk is in use.
package idlemem

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// DefaultQuiet is how long kluisd must be quiet before memory is returned.
const DefaultQuiet = 30 * time.Second

// DefaultSlack is how much the heap may grow during a quiet period before
// memory is returned again.
const DefaultSlack = 1 << 20

// Options are Run's.
type Options struct {
	// Changed returns a channel that is closed at the next activity (the
	// engine's Changed: the next screen change). Required.
	Changed func() <-chan struct{}
	// Quiet is how long no activity must be seen; default DefaultQuiet.
	Quiet time.Duration
	// Slack is how much the heap may grow while quiet before memory is
	// returned again; default DefaultSlack.
	Slack uint64
	// Free returns the memory; default debug.FreeOSMemory.
	Free func()
	// Heap is the heap's resident part in bytes; default HeapBytes.
	Heap   func() uint64
	Logger *slog.Logger
}

// HeapBytes is the heap's resident part: the pages holding objects (live
// or not yet collected) and the free pages not yet returned to the OS.
func HeapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	var n uint64
	for _, x := range s {
		if x.Value.Kind() == metrics.KindUint64 {
			n += x.Value.Uint64()
		}
	}
	return n
}

// Run returns memory after the first quiet period (the start-up's
// garbage), after each quiet period that follows activity, and during a
// long quiet period whenever the heap has grown by Slack since the last
// return (checked every Quiet), until ctx ends.
func Run(ctx context.Context, o Options) {
	if o.Quiet <= 0 {
		o.Quiet = DefaultQuiet
	}
	if o.Slack == 0 {
		o.Slack = DefaultSlack
	}
	if o.Free == nil {
		o.Free = debug.FreeOSMemory
	}
	if o.Heap == nil {
		o.Heap = HeapBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	log := o.Logger.With("part", "idlemem")
	t := time.NewTimer(o.Quiet)
	defer t.Stop()
	active := true   // activity since the last return
	var after uint64 // the heap right after the last return
	for {
		changed := o.Changed()
		select {
		case <-ctx.Done():
			return
		case <-changed:
			active = true
			t.Reset(o.Quiet)
		case <-t.C:
			t.Reset(o.Quiet)
			heap := o.Heap()
			if !active && heap < after+o.Slack {
				continue
			}
			active = false
			start := time.Now()
			o.Free()
			after = o.Heap()
			log.Debug("free memory returned to the OS", "heap_before", heap, "heap_after", after, "took", time.Since(start))
		}
	}
}
