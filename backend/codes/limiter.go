package codes

import (
	"sort"
	"sync"
	"time"
)

// lockUntil returns until when PIN entry is locked at now (zero time: not
// locked), given the stored burst lock and the failure times of the device
// within the daily window.
func (c Config) lockUntil(burstUntil time.Time, failures []time.Time, now time.Time) time.Time {
	until := time.Time{}
	if now.Before(burstUntil) {
		until = burstUntil
	}
	var in []time.Time
	for _, f := range failures {
		if f.After(now.Add(-c.DailyWindow)) && !f.After(now) {
			in = append(in, f)
		}
	}
	if n := len(in); n >= c.DailyMaxFailures {
		sort.Slice(in, func(i, j int) bool { return in[i].Before(in[j]) })
		// The count falls below the cap when the oldest n-max+1 have left.
		d := in[n-c.DailyMaxFailures].Add(c.DailyWindow)
		if d.After(until) {
			until = d
		}
	}
	return until
}

// burstAfterFailure returns the new burst lock after a failure at now (the
// failure already included in failures), or zero when the burst limit is not
// reached.
func (c Config) burstAfterFailure(failures []time.Time, now time.Time) time.Time {
	n := 0
	for _, f := range failures {
		if f.After(now.Add(-c.DeviceWindow)) && !f.After(now) {
			n++
		}
	}
	if n >= c.DeviceMaxFailures {
		return now.Add(c.DeviceLockout)
	}
	return time.Time{}
}

// LimiterState is what a device persists of its [Limiter] so that a restart
// does not reset the limits.
type LimiterState struct {
	// Failures are the failure times within the daily window.
	Failures []time.Time `json:"failures"`
	// LockedUntil is the burst lock.
	LockedUntil time.Time `json:"locked_until"`
}

// Limiter applies the per-device attempt limits on a device verifying
// offline. It is safe for concurrent use.
type Limiter struct {
	mu  sync.Mutex
	cfg Config
	st  LimiterState
}

// NewLimiter returns a Limiter with cfg (zero fields: defaults) starting
// from st.
func NewLimiter(cfg Config, st LimiterState) *Limiter {
	return &Limiter{cfg: cfg.withDefaults(), st: st}
}

// LockedUntil reports until when PIN entry is locked at now (zero: open).
func (l *Limiter) LockedUntil(now time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg.lockUntil(l.st.LockedUntil, l.st.Failures, now)
}

// Fail records a failed PIN attempt at now and reports whether it started a
// lockout.
func (l *Limiter) Fail(now time.Time) (lockedUntil time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	keep := l.st.Failures[:0]
	for _, f := range l.st.Failures {
		if f.After(now.Add(-l.cfg.DailyWindow)) {
			keep = append(keep, f)
		}
	}
	l.st.Failures = append(keep, now)
	if b := l.cfg.burstAfterFailure(l.st.Failures, now); !b.IsZero() {
		l.st.LockedUntil = b
	}
	return l.cfg.lockUntil(l.st.LockedUntil, l.st.Failures, now)
}

// State returns a copy of the state to persist.
func (l *Limiter) State() LimiterState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return LimiterState{Failures: append([]time.Time(nil), l.st.Failures...), LockedUntil: l.st.LockedUntil}
}
