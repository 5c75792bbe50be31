package engine

import (
	"context"
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
	// every change (a failure, a lockout, a lift), with the PIN clock's
	// reading (pinRecord); the latest one is the state, replayed at
	// start and kept by compaction.
	recPINLimits = "pin_limits"
	// recLockout {until} is what kluisd journaled before pin_limits;
	// replayed as a lock, dropped once a pin_limits record follows.
	recLockout = "lockout"
	// recPINClock {at} is a reading of the PIN clock (pinNow), journaled
	// every pinClockEvery while the limits hold failures or a lock, at a
	// clean stop, and when the backend's time moves the clock forward:
	// a start resumes from the latest reading (startPINClock). The
	// latest one is kept by compaction.
	recPINClock = "pin_clock"
)

// pinClockEvery is how often the PIN clock's reading is journaled while
// the limits hold failures or a lock: a power cut loses at most that much
// of the time that passed (the limits then hold a little longer).
const pinClockEvery = time.Minute

// pinRecord is the data of a pin_limits record: the limiter's state and
// the PIN clock's reading when it was written (absent before 2026-12-08).
type pinRecord struct {
	pickupcode.LimiterState
	Clock time.Time `json:"clock,omitzero"`
}

// pinClock is the limiter's clock: base at the monotonic reading mono.
type pinClock struct{ base, mono time.Time }

// pinLimits are the device's PIN attempt limits (config lockout.*): every
// wrong PIN typed at the kiosk counts, verified online or offline; QR codes
// never count and are never locked (they cannot be guessed).
type pinLimits struct {
	// mu orders changes and their journal records.
	mu sync.Mutex
	// lim is replaced whole by a lift, once it is journaled.
	lim atomic.Pointer[pickupcode.Limiter]
	// seq is the sequence number of the latest pin_limits record:
	// compaction keeps it and any later one; clockSeq that of the latest
	// pin_clock record.
	seq, clockSeq atomic.Uint64
	// clock is the limiter's clock (pinNow), set at start and moved
	// forward by the backend's time (backendTime).
	clock atomic.Pointer[pinClock]
	// resume is the latest PIN clock reading the replay found.
	resume time.Time
}

// startPINClock starts the limiter's clock after the replay. While the
// limits hold something (a failure within the daily window, a lock) it
// resumes at the latest reading journaled (a failure, a lift, a pin_clock
// record): the time kluisd was stopped does not count, as nothing on the
// device vouches for it. A start used to take the wall clock, so a clock
// moved forward while kluisd was stopped (NTP after a boot without a
// real-time clock, someone who can power-cycle the device and set its
// date) ended the lock and the daily window: 50 fresh guesses per power
// cycle. Only the backend's time moves the clock on (backendTime). When
// the limits hold nothing it starts from the engine's clock, or from the
// latest reading when that is later (a clock set back).
func (e *Engine) startPINClock() {
	st := e.pin.lim.Load().State()
	resume := e.pin.resume
	for _, t := range append(st.Failures, st.BurstClearedAt) {
		if t.After(resume) {
			resume = t
		}
	}
	base := e.now()
	if resume.After(base) || e.pinHolds(st, resume) {
		base = resume
	}
	e.pin.clock.Store(&pinClock{base: base, mono: time.Now()})
}

// pinHolds reports whether st holds anything at now: a failure within the
// daily window or a lock.
func (e *Engine) pinHolds(st pickupcode.LimiterState, now time.Time) bool {
	if now.Before(st.LockedUntil) {
		return true
	}
	window := e.pin.lim.Load().Config().DailyWindow
	for _, f := range st.Failures {
		if f.After(now.Add(-window)) {
			return true
		}
	}
	return false
}

// pinNow is the time the PIN attempt limits are counted in: the start's
// time plus the time elapsed since on the monotonic clock, so that a jump
// of the wall clock (NTP after a boot without a real-time clock, a
// technician setting the date, either way) neither lifts a lock nor
// forgets failures: a forward jump of a day used to empty the daily
// budget, one of 15 minutes to end a burst lock (docs/security.md's
// brute-force bound counts failures in real time).
func (e *Engine) pinNow() time.Time {
	c := e.pin.clock.Load()
	return c.base.Add(time.Since(c.mono))
}

// pinWall turns a time of the PIN clock into one of the engine's clock,
// for people and the backend to read (the two differ after a start that
// did not count the time kluisd was stopped).
func (e *Engine) pinWall(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Add(e.now().Sub(e.pinNow()))
}

// backendTime moves the PIN clock forward to t, a time the backend
// vouches for (the issue time of a command it signed for this device),
// durably, when t is later: the time a device was stopped then counts as
// far as the backend's clock says it passed, never beyond (a replayed
// command carries its old time).
func (e *Engine) backendTime(t time.Time) {
	e.pin.mu.Lock()
	defer e.pin.mu.Unlock()
	if !t.After(e.pinNow()) {
		return
	}
	if err := e.savePINClockAt(t); err != nil {
		return
	}
	e.pin.clock.Store(&pinClock{base: t, mono: time.Now()})
}

// savePINClockAt journals at as the PIN clock's reading. e.pin.mu held.
func (e *Engine) savePINClockAt(at time.Time) error {
	b, err := json.Marshal(struct {
		At time.Time `json:"at"`
	}{at.UTC()})
	if err != nil {
		return err
	}
	r, err := e.j.Append(journal.Record{Type: recPINClock, Data: b})
	if err != nil {
		e.log.Warn("journal of the PIN clock failed", "err", err)
		return err
	}
	e.pin.clockSeq.Store(r.Seq)
	return nil
}

// savePINClock journals the PIN clock's reading when the limits hold
// something.
func (e *Engine) savePINClock() {
	e.pin.mu.Lock()
	defer e.pin.mu.Unlock()
	now := e.pinNow()
	if e.pinHolds(e.pin.lim.Load().State(), now) {
		_ = e.savePINClockAt(now)
	}
}

// pinClockLoop journals the PIN clock's reading every pinClockEvery and
// at the stop.
func (e *Engine) pinClockLoop(ctx context.Context) {
	t := time.NewTicker(pinClockEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.savePINClock()
			return
		case <-t.C:
			e.savePINClock()
		}
	}
}

// replayPINLimits rebuilds the limiter from the journal.
func (e *Engine) replayPINLimits(r journal.Record) {
	switch r.Type {
	case recPINLimits:
		var st pinRecord
		if json.Unmarshal(r.Data, &st) == nil {
			e.pin.lim.Store(pickupcode.NewLimiter(e.cfg.Lockout.Limits(), st.LimiterState))
			e.pin.seq.Store(r.Seq)
			e.pinResumeAt(st.Clock)
		}
	case recPINClock:
		var c struct {
			At time.Time `json:"at"`
		}
		if json.Unmarshal(r.Data, &c) == nil {
			e.pin.clockSeq.Store(r.Seq)
			e.pinResumeAt(c.At)
		}
	case recLockout:
		var l struct {
			Until time.Time `json:"until"`
		}
		if json.Unmarshal(r.Data, &l) == nil {
			e.pin.lim.Load().Lock(e.now(), l.Until)
		}
	}
}

// pinResumeAt takes a journaled reading of the PIN clock (the latest
// counts) during the replay.
func (e *Engine) pinResumeAt(t time.Time) {
	if t.After(e.pin.resume) {
		e.pin.resume = t
	}
}

// keepPINLimits is the compaction rule of the limiter's records.
func (e *Engine) keepPINLimits(r journal.Record) bool {
	latest := e.pin.seq.Load()
	switch r.Type {
	case recPINLimits:
		return r.Seq >= latest
	case recPINClock:
		return r.Seq >= e.pin.clockSeq.Load()
	case recLockout:
		var l struct {
			Until time.Time `json:"until"`
		}
		return r.Seq > latest && json.Unmarshal(r.Data, &l) == nil && e.now().Before(l.Until)
	}
	return false
}

// savePINLimits journals the limiter's state. e.pin.mu held.
func (e *Engine) savePINLimits() error { return e.savePINState(e.pin.lim.Load().State()) }

// savePINState journals st as the limiter's state. e.pin.mu held.
func (e *Engine) savePINState(st pickupcode.LimiterState) error {
	b, err := json.Marshal(pinRecord{LimiterState: st, Clock: e.pinNow().UTC()})
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
func (e *Engine) pinLockedUntil() time.Time { return e.pin.lim.Load().LockedUntil(e.pinNow()) }

// pinFailed counts a wrong PIN, durably, and returns until when PIN entry
// is locked from then on (zero: open).
func (e *Engine) pinFailed() time.Time {
	e.pin.mu.Lock()
	now := e.pinNow()
	lim := e.pin.lim.Load()
	was := lim.LockedUntil(now)
	until := lim.Fail(now)
	_ = e.savePINLimits()
	e.pin.mu.Unlock()
	if was.IsZero() && !until.IsZero() {
		e.lockStarted(until, "too many wrong PINs")
	}
	return until
}

// pinLastTry reports for how long one more wrong PIN would lock PIN entry
// now (0: it would not), from the device's own count (pickupcode's
// Limiter.NextLock).
func (e *Engine) pinLastTry() time.Duration {
	now := e.pinNow()
	if until := e.pin.lim.Load().NextLock(now); until.After(now) {
		return until.Sub(now)
	}
	return 0
}

// followBackendLock locks PIN entry for as long as the backend said
// (device_locked_out): the backend counts the PINs verified online too.
func (e *Engine) followBackendLock(retryAfterS int) {
	e.pin.mu.Lock()
	now := e.pinNow()
	until := now.Add(time.Duration(max(retryAfterS, 1)) * time.Second).UTC()
	started := e.pin.lim.Load().Lock(now, until)
	// (a lift replaces the limiter only under e.pin.mu, held here)
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
		fmt.Sprintf("PIN entry locked until %s: %s (QR codes still work)", e.pinWall(until).UTC().Format(time.RFC3339), why))
}

// pinLift is what a staff lift of the PIN lockout did.
type pinLift struct {
	// WasLocked: a burst lock was in force.
	WasLocked bool
	// StillUntil is set when PIN entry stays locked by the daily cap.
	StillUntil time.Time
}

// detail describes the lift for the backend (event and command result).
func (l pinLift) detail() string {
	switch {
	case !l.StillUntil.IsZero():
		return fmt.Sprintf("burst lock lifted (was locked: %t); the daily cap still locks PIN entry until %s",
			l.WasLocked, l.StillUntil.UTC().Format(time.RFC3339))
	case l.WasLocked:
		return "PIN entry was locked and is open now"
	}
	return "PIN entry was not locked"
}

// liftPINLock lifts the burst lock for staff: journaled first (a restart
// keeps the lift), then in force, then reported as lockout_cleared (with the
// staff id or command id of ev, and why) and alarm_cleared when PIN entry
// opened. The failures so far stop counting towards the next burst lockout;
// the daily cap is not lifted (docs/security.md).
func (e *Engine) liftPINLock(ev wire.Event, why string) (pinLift, error) {
	e.pin.mu.Lock()
	now := e.pinNow()
	next := pickupcode.NewLimiter(e.cfg.Lockout.Limits(), e.pin.lim.Load().State())
	var l pinLift
	l.WasLocked = next.ClearBurst(now)
	l.StillUntil = e.pinWall(next.LockedUntil(now))
	if err := e.savePINState(next.State()); err != nil {
		e.pin.mu.Unlock()
		return pinLift{}, err
	}
	e.pin.lim.Store(next)
	e.pin.mu.Unlock()
	ev.Kind, ev.Detail = wire.EvLockoutCleared, why+": "+l.detail()
	e.emitKept(ev)
	if l.WasLocked && l.StillUntil.IsZero() {
		e.emitKept(wire.Event{Kind: wire.EvAlarmCleared, Alarm: wire.AlarmBruteForceLockout, StaffID: ev.StaffID, CommandID: ev.CommandID})
	}
	e.log.Info("PIN lockout lifted by staff", "staff_id", ev.StaffID, "command_id", ev.CommandID,
		"was_locked", l.WasLocked, "still_until", l.StillUntil)
	return l, nil
}

// clearLockoutCommand carries out the backend's clear_lockout command (its
// id, expiry and single use are checked by HandleCommand).
func (e *Engine) clearLockoutCommand(c wire.Command) (wire.CommandStatus, string) {
	l, err := e.liftPINLock(wire.Event{CommandID: optID(c.ID)}, "lifted by staff through the backend")
	if err != nil {
		return wire.StatusFailed, "journal unavailable: PIN lockout not lifted"
	}
	return wire.StatusDone, l.detail()
}

// StaffClearLockout lifts the PIN lockout at the kiosk for the logged-in
// staff member, technician or admin: the backend lifts its own burst lock
// (staff/req clear_lockout, audited there) and the device its journaled one,
// reported as lockout_cleared with the staff id. When the backend does not
// answer, the device lifts its own lock all the same (the staff member is
// logged in and at the device) and says so. The daily cap stays.
func (e *Engine) StaffClearLockout(ctx context.Context, lang string) (Screen, error) {
	s, err := e.currentStaff()
	if err != nil {
		return Screen{}, err
	}
	why := "lifted at the kiosk in staff mode"
	res, err := e.staffCall(ctx, wire.StaffRequest{Op: wire.StaffClearLockout, Session: s.token})
	switch {
	case err != nil || res.Result == wire.StaffUnavailable:
		why += " (backend unreachable: its lock is not lifted)"
	case res.Result == wire.StaffOK:
		why += " (and at the backend)"
	case res.Result == wire.StaffSessionExpired:
		e.mu.Lock()
		e.staff = nil
		e.mu.Unlock()
		return e.setScreen(StateStaffDenied, 0, lang), nil
	default:
		return e.setScreen(StateStaffDenied, 0, lang), nil
	}
	l, err := e.liftPINLock(wire.Event{StaffID: optID(s.id)}, why)
	if err != nil {
		return e.setScreen(StateError, 0, lang), nil
	}
	if !l.StillUntil.IsZero() {
		return e.setScreen(StateLockoutCapped, 0, lang), nil
	}
	return e.setScreen(StateLockoutCleared, 0, lang), nil
}
