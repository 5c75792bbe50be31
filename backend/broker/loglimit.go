package broker

import (
	"log/slog"
	"sync"
	"time"
)

// Warnings a client can cause at will (a refused CONNECT, a protocol
// violation, an ACL denial) are logged at most logBurst times per
// logWindow for each message; the rest are counted and summed up in one
// line when the next window begins. The metrics count every one.
const (
	logBurst  = 20
	logWindow = 10 * time.Second
)

// logLimiter bounds the lines of each warning message.
type logLimiter struct {
	log *slog.Logger
	now func() time.Time

	mu  sync.Mutex
	win map[string]*logWin // by message
}

type logWin struct {
	start      time.Time
	n          int
	suppressed int
}

func newLogLimiter(log *slog.Logger, now func() time.Time) *logLimiter {
	return &logLimiter{log: log, now: now, win: map[string]*logWin{}}
}

// warn logs msg with args unless msg was logged logBurst times in the
// current window.
func (l *logLimiter) warn(msg string, args ...any) {
	now := l.now()
	l.mu.Lock()
	w, ok := l.win[msg]
	if !ok {
		w = &logWin{start: now}
		l.win[msg] = w
	}
	var summary int
	if now.Sub(w.start) >= logWindow {
		summary = w.suppressed
		w.start, w.n, w.suppressed = now, 0, 0
	}
	w.n++
	ok = w.n <= logBurst
	if !ok {
		w.suppressed++
	}
	l.mu.Unlock()
	if summary > 0 {
		l.log.Warn("more of the same not logged", "what", msg, "count", summary, "window", logWindow)
	}
	if ok {
		l.log.Warn(msg, args...)
	}
}
