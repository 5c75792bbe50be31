// Package loglimit bounds the warning lines something outside the program
// can cause at will (a client of the broker, a lock board with buggy
// firmware): each message is logged at most burst times per window, the
// rest are counted and summed up in one line when the next window begins.
// Metrics, not this, count every one. Stdlib only: kluisd and kluis-backend
// both use it.
package loglimit

import (
	"log/slog"
	"sync"
	"time"
)

// Limiter bounds the lines of each warning message.
type Limiter struct {
	log    *slog.Logger
	burst  int
	window time.Duration
	now    func() time.Time

	mu  sync.Mutex
	win map[string]*win // by message
}

type win struct {
	start      time.Time
	n          int
	suppressed int
}

// New returns a Limiter logging each message at most burst times per
// window on log; now is the clock (time.Now outside tests).
func New(log *slog.Logger, burst int, window time.Duration, now func() time.Time) *Limiter {
	return &Limiter{log: log, burst: burst, window: window, now: now, win: map[string]*win{}}
}

// Warn logs msg with args unless msg was logged burst times in the current
// window. The first Warn of a message after a window with lines left out
// first logs one line "more of the same not logged" with their count.
func (l *Limiter) Warn(msg string, args ...any) {
	now := l.now()
	l.mu.Lock()
	w, ok := l.win[msg]
	if !ok {
		w = &win{start: now}
		l.win[msg] = w
	}
	var summary int
	if now.Sub(w.start) >= l.window {
		summary = w.suppressed
		w.start, w.n, w.suppressed = now, 0, 0
	}
	w.n++
	ok = w.n <= l.burst
	if !ok {
		w.suppressed++
	}
	l.mu.Unlock()
	if summary > 0 {
		l.log.Warn("more of the same not logged", "what", msg, "count", summary, "window", l.window)
	}
	if ok {
		l.log.Warn(msg, args...)
	}
}
