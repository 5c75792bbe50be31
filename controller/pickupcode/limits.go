package pickupcode

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"time"
)

// The limits below are the values docs/security.md computes its bound with;
// a test keeps them and the document in step.
const (
	// PINDigits is the length of a PIN.
	PINDigits = 9
	// MaxActiveCodesPerDevice is the most codes one device can have active at
	// once (its largest compartment count).
	MaxActiveCodesPerDevice = 48
	// CodeMaxFailures wrong dates of birth lock a code until it is re-issued.
	CodeMaxFailures = 5
	// DeviceMaxFailures failed PIN attempts within DeviceWindow lock PIN
	// entry on the device for DeviceLockout.
	DeviceMaxFailures = 5
	// DeviceWindow is the burst window.
	DeviceWindow = 15 * time.Minute
	// DeviceLockout is how long PIN entry stays locked after a burst.
	DeviceLockout = 15 * time.Minute
	// DailyMaxFailures failed PIN attempts within any DailyWindow lock PIN
	// entry until the oldest of them leaves the window.
	DailyMaxFailures = 50
	// DailyWindow is the rolling window of the daily cap.
	DailyWindow = 24 * time.Hour
)

// Config holds the verification policy. [DefaultConfig] gives the values the
// security analysis assumes.
type Config struct {
	// PINDigits is the PIN length (6..12).
	PINDigits int
	// CodeMaxFailures wrong dates of birth lock a code.
	CodeMaxFailures int
	// DeviceMaxFailures failures within DeviceWindow lock PIN entry for
	// DeviceLockout.
	DeviceMaxFailures int
	// DeviceWindow is the burst window.
	DeviceWindow time.Duration
	// DeviceLockout is the burst lockout.
	DeviceLockout time.Duration
	// DailyMaxFailures failures within any DailyWindow lock PIN entry.
	DailyMaxFailures int
	// DailyWindow is the rolling window of the daily cap.
	DailyWindow time.Duration
	// DOBKinds are the document kinds whose PIN needs the date of birth.
	DOBKinds map[string]bool
}

// DefaultDOBKinds are the document kinds that need the date of birth with a
// PIN: the identity documents.
func DefaultDOBKinds() map[string]bool {
	return map[string]bool{"eid": true, "kids_id": true, "residence_card": true, "passport": true}
}

// DefaultConfig returns the policy with the package constants.
func DefaultConfig() Config {
	return Config{
		PINDigits:         PINDigits,
		CodeMaxFailures:   CodeMaxFailures,
		DeviceMaxFailures: DeviceMaxFailures,
		DeviceWindow:      DeviceWindow,
		DeviceLockout:     DeviceLockout,
		DailyMaxFailures:  DailyMaxFailures,
		DailyWindow:       DailyWindow,
		DOBKinds:          DefaultDOBKinds(),
	}
}

// WithDefaults fills zero fields from DefaultConfig.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.PINDigits == 0 {
		c.PINDigits = d.PINDigits
	}
	if c.CodeMaxFailures == 0 {
		c.CodeMaxFailures = d.CodeMaxFailures
	}
	if c.DeviceMaxFailures == 0 {
		c.DeviceMaxFailures = d.DeviceMaxFailures
	}
	if c.DeviceWindow == 0 {
		c.DeviceWindow = d.DeviceWindow
	}
	if c.DeviceLockout == 0 {
		c.DeviceLockout = d.DeviceLockout
	}
	if c.DailyMaxFailures == 0 {
		c.DailyMaxFailures = d.DailyMaxFailures
	}
	if c.DailyWindow == 0 {
		c.DailyWindow = d.DailyWindow
	}
	if c.DOBKinds == nil {
		c.DOBKinds = d.DOBKinds
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.PINDigits < 6 || c.PINDigits > 12:
		return fmt.Errorf("pickupcode: PIN digits %d outside 6..12: %w", c.PINDigits, ErrInvalid)
	case c.CodeMaxFailures < 1, c.DeviceMaxFailures < 1, c.DailyMaxFailures < 1:
		return fmt.Errorf("pickupcode: failure limits must be positive: %w", ErrInvalid)
	case c.DeviceWindow <= 0, c.DeviceLockout <= 0, c.DailyWindow <= 0:
		return fmt.Errorf("pickupcode: windows must be positive: %w", ErrInvalid)
	}
	return nil
}

// NeedsDOB reports whether a PIN for a document of this kind needs the date
// of birth.
func (c Config) NeedsDOB(kind string) bool { return c.DOBKinds[kind] }

// MaxFailedGuesses is the most failed PIN attempts a device accepts within
// period: the daily cap per started DailyWindow.
func (c Config) MaxFailedGuesses(period time.Duration) int {
	windows := int(math.Ceil(float64(period) / float64(c.DailyWindow)))
	return windows * c.DailyMaxFailures
}

// BruteForceBound is the union bound on the probability that someone
// guessing PINs at one device opens any compartment within period: every
// guess hits one of at most activeCodes PINs out of 10^digits, and at most
// MaxFailedGuesses(period)+1 guesses are possible (the last one succeeds).
// The date of birth is not counted.
func (c Config) BruteForceBound(period time.Duration, activeCodes int) float64 {
	guesses := float64(c.MaxFailedGuesses(period) + 1)
	return guesses * float64(activeCodes) / math.Pow(10, float64(c.PINDigits))
}

// LockUntil returns until when PIN entry is locked at now (zero time: not
// locked), given the stored burst lock and the failure times of the device
// within the daily window. A failure stamped after now still counts: a
// device whose clock was set back (a Raspberry Pi without a real-time clock
// boots with the time it last saved) must not forget the failures it
// journaled.
func (c Config) LockUntil(burstUntil time.Time, failures []time.Time, now time.Time) time.Time {
	until := time.Time{}
	if now.Before(burstUntil) {
		until = burstUntil
	}
	var in []time.Time
	for _, f := range failures {
		if f.After(now.Add(-c.DailyWindow)) {
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

// BurstAfterFailure returns the new burst lock after a failure at now (the
// failure already included in failures), or zero when the burst limit is not
// reached. Failures stamped after now count (see [Config.LockUntil]).
func (c Config) BurstAfterFailure(failures []time.Time, now time.Time) time.Time {
	n := 0
	for _, f := range failures {
		if f.After(now.Add(-c.DeviceWindow)) {
			n++
		}
	}
	if n >= c.DeviceMaxFailures {
		return now.Add(c.DeviceLockout)
	}
	return time.Time{}
}

// BoundPeriod is how long the attacker of docs/security.md's brute-force
// bound stands at one device (longer than any pickup period).
const BoundPeriod = 30 * 24 * time.Hour

// BoundTarget is the most the brute-force bound may be.
const BoundTarget = 1e-4

// CheckBound refuses limits under which the brute-force bound over
// BoundPeriod with MaxActiveCodesPerDevice open codes reaches BoundTarget
// (ErrInvalid, saying which value it comes to).
func (c Config) CheckBound() error {
	if err := c.Validate(); err != nil {
		return err
	}
	if p := c.BruteForceBound(BoundPeriod, MaxActiveCodesPerDevice); p >= BoundTarget {
		return fmt.Errorf("pickupcode: %d failed PINs in %v allow %d guesses in %v: guessing bound %.2e, must stay below %.0e: %w",
			c.DailyMaxFailures, c.DailyWindow, c.MaxFailedGuesses(BoundPeriod)+1, BoundPeriod, p, BoundTarget, ErrInvalid)
	}
	return nil
}

// LimiterState is what a device persists of its [Limiter] so that a restart
// does not reset the limits.
type LimiterState struct {
	// Failures are the failure times within the daily window.
	Failures []time.Time `json:"failures"`
	// LockedUntil is the burst lock.
	LockedUntil time.Time `json:"locked_until"`
	// BurstClearedAt is when staff last lifted the burst lock: the
	// failures up to then no longer count towards the next burst lockout
	// (they still count towards the daily cap, which nobody lifts).
	BurstClearedAt time.Time `json:"burst_cleared_at,omitzero"`
}

// Limiter applies the per-device attempt limits on a device (kluisd counts
// every failed PIN typed at it, verified online or offline). It is safe for
// concurrent use.
type Limiter struct {
	mu  sync.Mutex
	cfg Config
	st  LimiterState
}

// NewLimiter returns a Limiter with cfg (zero fields: defaults) starting
// from st.
func NewLimiter(cfg Config, st LimiterState) *Limiter {
	st.Failures = append([]time.Time(nil), st.Failures...)
	return &Limiter{cfg: cfg.WithDefaults(), st: st}
}

// Config returns the limits the Limiter applies.
func (l *Limiter) Config() Config { return l.cfg }

// LockedUntil reports until when PIN entry is locked at now (zero: open).
func (l *Limiter) LockedUntil(now time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg.LockUntil(l.st.LockedUntil, l.st.Failures, now)
}

// Fail records a failed PIN attempt at now and returns until when PIN entry
// is locked from then on (zero: still open).
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
	burst := l.st.Failures
	if !l.st.BurstClearedAt.IsZero() {
		burst = nil
		for _, f := range l.st.Failures {
			if f.After(l.st.BurstClearedAt) {
				burst = append(burst, f)
			}
		}
	}
	if b := l.cfg.BurstAfterFailure(burst, now); !b.IsZero() {
		l.st.LockedUntil = b
	}
	return l.cfg.LockUntil(l.st.LockedUntil, l.st.Failures, now)
}

// NextLock reports until when PIN entry would be locked if one more PIN
// failed at now (zero: it would stay open), recording nothing: the kiosk
// warns before the last try.
func (l *Limiter) NextLock(now time.Time) time.Time {
	return NewLimiter(l.Config(), l.State()).Fail(now)
}

// Lock extends the burst lock to until (when it is later), e.g. to follow
// the backend's answer device_locked_out, and reports whether PIN entry was
// open at now before.
func (l *Limiter) Lock(now, until time.Time) (started bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	was := l.cfg.LockUntil(l.st.LockedUntil, l.st.Failures, now)
	if until.After(l.st.LockedUntil) {
		l.st.LockedUntil = until
	}
	return was.IsZero() && now.Before(until)
}

// ClearBurst lifts the burst lock at now (staff) and reports whether one was
// in force. The failures so far stop counting towards the next burst
// lockout; the daily cap is not lifted (the brute-force bound relies on
// it): LockedUntil tells whether it still holds.
func (l *Limiter) ClearBurst(now time.Time) (wasLocked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	wasLocked = now.Before(l.st.LockedUntil)
	l.st.LockedUntil = time.Time{}
	l.st.BurstClearedAt = now
	return wasLocked
}

// State returns a copy of the state to persist.
func (l *Limiter) State() LimiterState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return LimiterState{Failures: append([]time.Time(nil), l.st.Failures...), LockedUntil: l.st.LockedUntil,
		BurstClearedAt: l.st.BurstClearedAt}
}
