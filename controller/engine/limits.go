package engine

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"kluis/controller/journal"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
)

// Journal records of the PIN limits.
const (
	// recPINLimits is the whole pickupcode.LimiterState, appended after
	// every change (a failure, a lockout, a lift); the latest one is the
	// state, replayed at start and kept by compaction.
	recPINLimits = "pin_limits"
	// recLockout {until} is what kluisd journaled before pin_limits;
	// replayed as a lock, dropped once a pin_limits record follows.
	recLockout = "lockout"
)

// pinLimits are the device's PIN attempt limits (config lockout.*): every
// wrong PIN typed at the kiosk counts, verified online or offline; QR codes
// never count and are never locked (they cannot be guessed).
type pinLimits struct {
	// mu orders changes and their journal records.
	mu  sync.Mutex
	lim *pickupcode.Limiter
	// seq is the sequence number of the latest pin_limits record:
	// compaction keeps it and any later one.
	seq atomic.Uint64
}

// replayPINLimits rebuilds the limiter from the journal.
func (e *Engine) replayPINLimits(r journal.Record) {
	switch r.Type {
	case recPINLimits:
		var st pickupcode.LimiterState
		if json.Unmarshal(r.Data, &st) == nil {
			e.pin.lim = pickupcode.NewLimiter(e.cfg.Lockout.Limits(), st)
			e.pin.seq.Store(r.Seq)
		}
	case recLockout:
		var l struct {
			Until time.Time `json:"until"`
		}
		if json.Unmarshal(r.Data, &l) == nil {
			e.pin.lim.Lock(e.now(), l.Until)
		}
	}
}

// keepPINLimits is the compaction rule of the limiter's records.
func (e *Engine) keepPINLimits(r journal.Record) bool {
	latest := e.pin.seq.Load()
	switch r.Type {
	case recPINLimits:
		return r.Seq >= latest
	case recLockout:
		var l struct {
			Until time.Time `json:"until"`
		}
		return r.Seq > latest && json.Unmarshal(r.Data, &l) == nil && e.now().Before(l.Until)
	}
	return false
}

// savePINLimits journals the limiter's state. e.pin.mu held.
func (e *Engine) savePINLimits() error {
	b, err := json.Marshal(e.pin.lim.State())
	if err != nil {
		return err
	}
	r, err := e.j.Append(journal.Record{Type: recPINLimits, Data: b})
	if err != nil {
		e.log.Error("journal of the PIN limits failed", "err", err)
		e.m.journalErrors.Inc()
		return err
	}
	e.pin.seq.Store(r.Seq)
	return nil
}

// pinLockedUntil reports until when PIN entry is locked (zero: open).
func (e *Engine) pinLockedUntil() time.Time { return e.pin.lim.LockedUntil(e.now()) }

// pinFailed counts a wrong PIN, durably, and returns until when PIN entry
// is locked from then on (zero: open).
func (e *Engine) pinFailed() time.Time {
	e.pin.mu.Lock()
	now := e.now()
	was := e.pin.lim.LockedUntil(now)
	until := e.pin.lim.Fail(now)
	_ = e.savePINLimits()
	e.pin.mu.Unlock()
	if was.IsZero() && !until.IsZero() {
		e.lockStarted(until, "too many wrong PINs")
	}
	return until
}

// followBackendLock locks PIN entry for as long as the backend said
// (device_locked_out): the backend counts the PINs verified online too.
func (e *Engine) followBackendLock(retryAfterS int) {
	e.pin.mu.Lock()
	now := e.now()
	until := now.Add(time.Duration(max(retryAfterS, 1)) * time.Second).UTC()
	started := e.pin.lim.Lock(now, until)
	_ = e.savePINLimits()
	e.pin.mu.Unlock()
	if started {
		e.lockStarted(until, "the backend locked PIN entry")
	}
}

// lockStarted raises the brute-force alarm of a lockout that just began.
func (e *Engine) lockStarted(until time.Time, why string) {
	e.m.lockouts.Inc()
	e.alarm(wire.AlarmBruteForceLockout, nil, nil,
		fmt.Sprintf("PIN entry locked until %s: %s (QR codes still work)", until.UTC().Format(time.RFC3339), why))
}
