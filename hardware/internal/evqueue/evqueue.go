// Package evqueue is the event queue the drivers without a hardware event
// queue (kerong, tasmota) keep for Watch: bounded (the oldest event is
// dropped when full), delivered in order, and removed only after Watch's
// callback took an event, so an event the callback refused is delivered
// again by the next Watch (hardware.Driver's contract).
package evqueue

import (
	"context"
	"fmt"
	"sync"
	"time"

	"kluis/hardware"
)

// Queue holds a driver's events until Watch delivers them. It is safe for
// concurrent use; the zero value is not ready, use New.
type Queue struct {
	name   string
	limit  int
	onDrop func()

	mu       sync.Mutex
	events   []hardware.Event
	notify   chan struct{} // closed and replaced on every Push and on Close
	closed   bool
	watching bool
}

// New returns a queue holding at most limit events. name prefixes Watch's
// errors ("kerong: closed: ..."); onDrop, when not nil, is called (with no
// lock of the queue held) for every event dropped because the queue was
// full.
func New(name string, limit int, onDrop func()) *Queue {
	return &Queue{name: name, limit: max(limit, 1), onDrop: onDrop, notify: make(chan struct{})}
}

// Push appends ev and wakes Watch. When the queue is full the oldest event
// is dropped first.
func (q *Queue) Push(ev hardware.Event) {
	q.mu.Lock()
	dropped := false
	if len(q.events) >= q.limit {
		q.events = q.events[1:]
		dropped = true
	}
	q.events = append(q.events, ev)
	q.wakeLocked()
	q.mu.Unlock()
	if dropped && q.onDrop != nil {
		q.onDrop()
	}
}

// Len is the number of events waiting.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.events)
}

func (q *Queue) wakeLocked() {
	close(q.notify)
	q.notify = make(chan struct{})
}

// Close makes a running Watch and every later one return an error
// wrapping hardware.ErrHalted. Safe to call more than once.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		q.wakeLocked()
	}
}

// Poll is what Watch does besides delivering: poll is called once when
// Watch starts and then on every tick of Every (nothing when poll is nil).
type Poll struct {
	Every time.Duration
	Poll  func(ctx context.Context)
}

// Watch hands every event to fn in order until ctx ends. An event leaves
// the queue only when fn returned nil; fn's error ends Watch and the event
// is delivered again by the next Watch. Only one Watch runs at a time
// (another gets an error wrapping hardware.ErrBusy). Watch returns
// ctx.Err() when ctx ends and an error wrapping hardware.ErrHalted after
// Close.
func (q *Queue) Watch(ctx context.Context, fn func(hardware.Event) error, p Poll) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return fmt.Errorf("%s: closed: %w", q.name, hardware.ErrHalted)
	}
	if q.watching {
		q.mu.Unlock()
		return fmt.Errorf("%s: watch already running: %w", q.name, hardware.ErrBusy)
	}
	q.watching = true
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.watching = false
		q.mu.Unlock()
	}()
	var tick <-chan time.Time
	if p.Poll != nil {
		if p.Every > 0 {
			t := time.NewTicker(p.Every)
			defer t.Stop()
			tick = t.C
		}
		p.Poll(ctx)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		q.mu.Lock()
		closed := q.closed
		var ev hardware.Event
		have := len(q.events) > 0
		if have {
			ev = q.events[0]
		}
		notify := q.notify
		q.mu.Unlock()
		if closed {
			return fmt.Errorf("%s: closed: %w", q.name, hardware.ErrHalted)
		}
		if have {
			if err := fn(ev); err != nil {
				return err
			}
			q.mu.Lock()
			// Only Watch removes events and only one runs, but a full
			// queue may have dropped the head meanwhile.
			if len(q.events) > 0 && q.events[0] == ev {
				q.events = q.events[1:]
			}
			q.mu.Unlock()
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-notify:
		case <-tick:
			p.Poll(ctx)
		}
	}
}
