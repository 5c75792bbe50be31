package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/journal"
	"kluis/controller/offline/offlinetest"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
	"kluis/hardware"
)

// restart stops the engine cleanly and starts a new one on the same journal,
// cache and hardware.
func (r *rig) restart(o rigOpts) *rig {
	r.t.Helper()
	f := r.f
	r.stop()
	f.Resume()
	o.dir, o.fake, o.priv = r.dir, f, r.priv
	if o.caps == (hardware.Capabilities{}) {
		o.caps = sensors
	}
	return newRig(r.t, o)
}

func (r *rig) pickup(req PickupRequest) Screen {
	r.t.Helper()
	s, err := r.e.Pickup(context.Background(), req)
	require.NoError(r.t, err)
	return s
}

func (r *rig) countEvents(kind string) int {
	n := 0
	for _, k := range r.kinds() {
		if k == kind {
			n++
		}
	}
	return n
}

// Expired and collected codes are told as such and not counted; garbage QR
// codes are not counted; wrong PINs lock PIN entry (the rig allows 3), and
// a valid QR code still opens its door during the lockout.
func TestWrongExpiredLockout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		a := hardware.Address{Board: 0, Channel: 1}
		r.setItem(a, true, false)
		r.be.set(func() {
			r.be.verify["K1.old"] = wire.VerifyResponse{Result: wire.VerifyExpired}
			r.be.verify["K1.used"] = wire.VerifyResponse{Result: wire.VerifyAlreadyCollected}
			r.be.verify["K1.good"] = okAt("doc-3", 1)
			r.be.verify["123456789/1990-01-01"] = okAt("doc-4", 2)
		})
		for tok, want := range map[string]string{"K1.old": StateExpired, "K1.used": StateAlreadyCollected} {
			require.Equal(t, want, r.pickup(PickupRequest{QR: tok}).State)
		}
		// A sticker held to the scanner ten times: wrong, never locked.
		for i := 0; i < 10; i++ {
			s := r.pickup(PickupRequest{QR: fmt.Sprintf("K1.bad%d", i)})
			require.Equal(t, StateWrongCode, s.State)
			require.Equal(t, wire.MethodQR, s.Method, "the screen knows a QR code was refused")
			require.Zero(t, s.LastTryLockS, "QR codes are not counted")
		}
		require.False(t, r.hasEvent("alarm:brute_force_lockout"))
		for i := 0; i < 2; i++ {
			s := r.pickup(PickupRequest{PIN: fmt.Sprintf("11111111%d", i), BirthDate: "1990-01-01"})
			require.Equal(t, StateWrongCode, s.State)
			require.Equal(t, wire.MethodPIN, s.Method, "the screen knows a PIN was refused")
			require.Equal(t, wire.MethodPIN, r.e.Screen().Method)
			// After the second-to-last wrong PIN the screen may warn that
			// one more locks PIN entry, for lockout.duration; not before.
			if i == 0 {
				require.Zero(t, s.LastTryLockS, "two wrong PINs left before the lock")
			} else {
				require.Equal(t, 15*60, s.LastTryLockS, "one more wrong PIN locks for lockout.duration")
			}
		}
		s := r.pickup(PickupRequest{PIN: "111111119", BirthDate: "1990-01-01"})
		require.Equal(t, StateLockedOut, s.State)
		require.Equal(t, 15*60+1, s.RetryAfterS)
		require.Empty(t, s.Method, "method is wrong_code's only")
		require.Contains(t, s.Messages["en"], "Scan your QR code", "the lockout screen invites a QR scan")
		require.True(t, r.hasEvent("alarm:brute_force_lockout"))
		require.NotNil(t, r.e.Diagnostics(context.Background()).LockedUntil)
		calls := r.be.calls
		// Even the right PIN is refused while locked, without asking.
		s = r.pickup(PickupRequest{PIN: "123456789", BirthDate: "1990-01-01"})
		require.Equal(t, StateLockedOut, s.State)
		require.Equal(t, calls, r.be.calls)
		// A valid QR code opens its own door during the lockout.
		require.Equal(t, StateOpen, r.pickup(PickupRequest{QR: "K1.good"}).State)
		r.waitFor("pulse", func() bool { return r.f.PulseCount(a) == 1 })
		r.citizen(a, true)
		r.waitState(StateDone)
		// Staff can still log in to help during a citizens' lockout.
		exp := time.Now().Add(time.Hour)
		r.be.set(func() {
			r.be.staff["login:BADGE-1"] = wire.StaffResponse{Op: wire.StaffLogin, Result: wire.StaffOK, Session: "s", StaffID: "u1", Expires: &exp}
		})
		s, err := r.e.StaffLogin(context.Background(), "BADGE-1", "", "nl")
		require.NoError(t, err)
		require.Equal(t, StateStaff, s.State)
		r.e.StaffLogout(context.Background())

		// The lockout survives a restart (also a compaction).
		require.NoError(t, r.j.Compact())
		r = r.restart(rigOpts{})
		defer r.stop()
		b := hardware.Address{Board: 0, Channel: 2}
		r.setItem(b, true, false)
		r.be.set(func() { r.be.verify["123456789/1990-01-01"] = okAt("doc-4", 2) })
		require.Equal(t, StateLockedOut, r.pickup(PickupRequest{PIN: "123456789", BirthDate: "1990-01-01"}).State)
		time.Sleep(16 * time.Minute)
		require.Equal(t, StateOpen, r.pickup(PickupRequest{PIN: "123456789", BirthDate: "1990-01-01"}).State)
	})
}

// The failure count is journaled: a restart between wrong PINs does not
// reset it (4 wrong, restart, 4 wrong... used to never lock).
func TestPINFailuresSurviveRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		for i := 0; i < 2; i++ {
			require.Equal(t, StateWrongCode, r.pickup(PickupRequest{PIN: "222222222", BirthDate: "1990-01-01"}).State)
		}
		r = r.restart(rigOpts{})
		defer r.stop()
		require.Equal(t, StateLockedOut, r.pickup(PickupRequest{PIN: "222222222", BirthDate: "1990-01-01"}).State,
			"the third wrong PIN locks, restart or not")
		// Compaction keeps the live state: only the latest pin_limits record.
		require.NoError(t, r.j.Compact())
		recs := journalRecords(t, r.dir)
		n := 0
		for _, rec := range recs {
			if rec.Type == recPINLimits {
				n++
			}
		}
		require.Equal(t, 1, n)
		r = r.restart(rigOpts{})
		defer r.stop()
		require.Equal(t, StateLockedOut, r.pickup(PickupRequest{PIN: "222222222", BirthDate: "1990-01-01"}).State)
	})
}

// journalRecords reads a copy of the journal file as a restart would.
func journalRecords(t *testing.T, dir string) []journal.Record {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, journal.FileName))
	require.NoError(t, err)
	cp := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(cp, journal.FileName), b, 0o600))
	j, recs, _, err := journal.Open(journal.Options{Dir: cp})
	require.NoError(t, err)
	require.NoError(t, j.Close())
	return recs
}

// Offline the device applies the daily cap too: failures spread wider than
// the burst window stop after the daily cap (50 in 24 h), persisted.
func TestOfflineDailyCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		now := time.Now()
		res := r.e.HandleCommand(context.Background(), r.signed(wire.Command{ID: "sync-1", Kind: wire.CmdCodeSync, Issued: now,
			Expires: now.Add(time.Minute), Codes: &wire.CodeSync{Version: 1, Full: true, Entries: []wire.CodeEntry{
				offlinetest.PINEntry("doc-p", device, "987654321", "", wire.Address{Board: 0, Channel: 2}, now.Add(72*time.Hour)),
			}}}))
		require.Equal(t, wire.StatusDone, res.Status, res.Detail)
		r.be.set(func() { r.be.unreachable = true })
		first := time.Now()
		limits := r.cfg.Lockout.Limits()
		for i := 1; i < limits.DailyMaxFailures; i++ {
			require.Equal(t, StateWrongCode, r.pickup(PickupRequest{PIN: fmt.Sprintf("1%08d", i), BirthDate: "1990-01-01"}).State, "failure %d", i)
			time.Sleep(limits.DeviceWindow + time.Second)
			if i == limits.DailyMaxFailures/2 {
				r = r.restart(rigOpts{})
				defer r.stop()
				r.be.set(func() { r.be.unreachable = true })
			}
		}
		s := r.pickup(PickupRequest{PIN: "199999999", BirthDate: "1990-01-01"})
		require.Equal(t, StateLockedOut, s.State, "the 50th failure in 24 h locks")
		require.InDelta(t, time.Until(first.Add(limits.DailyWindow)).Seconds(), float64(s.RetryAfterS), 2)
		require.Equal(t, StateLockedOut, r.pickup(PickupRequest{PIN: "987654321", BirthDate: "1990-01-01"}).State)
		time.Sleep(time.Until(first.Add(limits.DailyWindow)) + time.Second)
		require.Equal(t, StateOpen, r.pickup(PickupRequest{PIN: "987654321", BirthDate: "1990-01-01"}).State)
	})
}

// The backend's device_locked_out is followed locally for PINs only.
func TestBackendLockoutFollowedForPINsOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		r.be.set(func() {
			r.be.verify["333333333/1990-01-01"] = wire.VerifyResponse{Result: wire.VerifyDeviceLockedOut, RetryAfterS: 600}
			r.be.verify["K1.good"] = okAt("doc-3", 1)
		})
		s := r.pickup(PickupRequest{PIN: "333333333", BirthDate: "1990-01-01"})
		require.Equal(t, StateLockedOut, s.State)
		require.Equal(t, 601, s.RetryAfterS)
		require.Equal(t, 1, r.countEvents("alarm:brute_force_lockout"))
		calls := r.be.calls
		require.Equal(t, StateLockedOut, r.pickup(PickupRequest{PIN: "444444444", BirthDate: "1990-01-01"}).State)
		require.Equal(t, calls, r.be.calls, "refused locally")
		require.Equal(t, StateOpen, r.pickup(PickupRequest{QR: "K1.good"}).State)
	})
}

func (r *rig) lockPINs() {
	r.t.Helper()
	for i := 0; i < 3; i++ {
		r.pickup(PickupRequest{PIN: fmt.Sprintf("66666666%d", i), BirthDate: "1990-01-01"})
	}
	require.Equal(r.t, StateLockedOut, r.pickup(PickupRequest{PIN: "666666669", BirthDate: "1990-01-01"}).State)
}

func (r *rig) lastEvent(kind wire.EventKind) wire.Event {
	r.t.Helper()
	evs := r.events()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Kind == kind {
			return evs[i]
		}
	}
	r.t.Fatalf("no %s event", kind)
	return wire.Event{}
}

// The backend's clear_lockout command lifts the journaled lockout (a
// restart does not bring it back), is reported, and is carried out once and
// only before it expires.
func TestClearLockoutCommand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		r.be.set(func() { r.be.verify["123456789/1990-01-01"] = okAt("doc-4", 2) })
		r.lockPINs()
		now := time.Now()
		cmd := func(id string, expires time.Time) wire.CommandResult {
			issued := now
			if expires.Add(-15 * time.Second).Before(now) {
				issued = expires.Add(-15 * time.Second)
			}
			return r.e.HandleCommand(context.Background(), r.signed(wire.Command{ID: id, Kind: wire.CmdClearLockout, Issued: issued,
				Expires: expires, Reason: "citizen at the counter", By: "user:7"}))
		}
		// Late (past its expiry and the clock skew kluisd tolerates):
		// expired, nothing lifted.
		res := cmd("clear-late", now.Add(-wire.CommandSkew-time.Second))
		require.Equal(t, wire.StatusExpired, res.Status)
		require.Equal(t, StateLockedOut, r.pickup(PickupRequest{PIN: "123456789", BirthDate: "1990-01-01"}).State)
		res = cmd("clear-1", now.Add(15*time.Second))
		require.Equal(t, wire.StatusDone, res.Status, res.Detail)
		require.Equal(t, "PIN entry was locked and is open now", res.Detail)
		ev := r.lastEvent(wire.EvLockoutCleared)
		require.Equal(t, "clear-1", ev.CommandID)
		require.Contains(t, ev.Detail, "lifted by staff through the backend")
		require.True(t, r.hasEvent("alarm_cleared:brute_force_lockout"))
		require.Equal(t, "duplicate", string(cmd("clear-1", now.Add(15*time.Second)).Status))
		// The lift is journaled: a restart does not bring the lockout back,
		// and the failures before it no longer count towards the next burst.
		r = r.restart(rigOpts{})
		defer r.stop()
		r.be.set(func() { r.be.verify["123456789/1990-01-01"] = okAt("doc-4", 2) })
		require.Equal(t, StateWrongCode, r.pickup(PickupRequest{PIN: "777777777", BirthDate: "1990-01-01"}).State)
		r.setItem(hardware.Address{Board: 0, Channel: 2}, true, false)
		require.Equal(t, StateOpen, r.pickup(PickupRequest{PIN: "123456789", BirthDate: "1990-01-01"}).State)
		// Not locked: done all the same, and said.
		res = r.e.HandleCommand(context.Background(), r.signed(wire.Command{ID: "clear-2", Kind: wire.CmdClearLockout, Issued: time.Now(),
			Expires: time.Now().Add(15 * time.Second), Reason: "r", By: "user:7"}))
		require.Equal(t, wire.StatusDone, res.Status)
		require.Equal(t, "PIN entry was not locked", res.Detail)
	})
}

// Staff lift the lockout at the kiosk: the backend is asked (staff/req
// clear_lockout), the device's own lock lifted and reported with the staff
// id; without the backend the device still lifts its own; a refusal lifts
// nothing; the daily cap stays.
func TestStaffClearLockoutAtKiosk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		_, err := r.e.StaffClearLockout(context.Background(), "en")
		require.ErrorIs(t, err, ErrNoStaff)
		r.lockPINs()
		exp := time.Now().Add(time.Hour)
		r.be.set(func() {
			r.be.staff["login:BADGE-1"] = wire.StaffResponse{Op: wire.StaffLogin, Result: wire.StaffOK, Session: "s", StaffID: "u1",
				StaffName: "An", Expires: &exp, Role: wire.RoleTechnician}
		})
		s, err := r.e.StaffLogin(context.Background(), "BADGE-1", "", "en")
		require.NoError(t, err)
		require.Equal(t, StateStaff, s.State)
		require.Equal(t, wire.RoleTechnician, s.StaffRole)
		// The backend refuses: nothing lifted.
		s, err = r.e.StaffClearLockout(context.Background(), "en")
		require.NoError(t, err)
		require.Equal(t, StateStaffDenied, s.State)
		require.False(t, r.hasEvent(string(wire.EvLockoutCleared)))
		require.False(t, r.pinLockedUntilZero())
		// The backend agrees.
		r.be.set(func() {
			r.be.staff["clear_lockout:"] = wire.StaffResponse{Op: wire.StaffClearLockout, Result: wire.StaffOK}
		})
		s, err = r.e.StaffClearLockout(context.Background(), "en")
		require.NoError(t, err)
		require.Equal(t, StateLockoutCleared, s.State)
		require.Equal(t, "PIN entry is unlocked.", s.Message)
		require.True(t, r.pinLockedUntilZero())
		ev := r.lastEvent(wire.EvLockoutCleared)
		require.Equal(t, "u1", ev.StaffID)
		require.Contains(t, ev.Detail, "at the kiosk in staff mode (and at the backend)")
		require.Contains(t, ev.Detail, "was locked")
		// The backend unreachable: the device lifts its own lock and says so.
		r.e.StaffLogout(context.Background())
		time.Sleep(time.Second)
		r.lockPINs()
		s, err = r.e.StaffLogin(context.Background(), "BADGE-1", "", "en")
		require.NoError(t, err)
		r.be.set(func() { r.be.unreachable = true })
		s, err = r.e.StaffClearLockout(context.Background(), "en")
		require.NoError(t, err)
		require.Equal(t, StateLockoutCleared, s.State)
		require.Contains(t, r.lastEvent(wire.EvLockoutCleared).Detail, "backend unreachable")
		r.be.set(func() { r.be.unreachable = false })

		// The daily cap is not lifted by anybody (the staff session
		// outlives the hours of failures: log in again at the end).
		limits := r.cfg.Lockout.Limits()
		r.e.StaffLogout(context.Background()) // no citizen's code during a staff session
		for i := 0; i < limits.DailyMaxFailures; i++ {
			if !r.pinLockedUntilZero() {
				break
			}
			r.pickup(PickupRequest{PIN: fmt.Sprintf("8%08d", i), BirthDate: "1990-01-01"})
			time.Sleep(limits.DeviceWindow + time.Second)
		}
		require.False(t, r.pinLockedUntilZero(), "the daily cap locks")
		exp = time.Now().Add(time.Hour)
		r.be.set(func() {
			r.be.staff["login:BADGE-1"] = wire.StaffResponse{Op: wire.StaffLogin, Result: wire.StaffOK, Session: "s", StaffID: "u1",
				StaffName: "An", Expires: &exp, Role: wire.RoleTechnician}
		})
		_, err = r.e.StaffLogin(context.Background(), "BADGE-1", "", "en")
		require.NoError(t, err)
		s, err = r.e.StaffClearLockout(context.Background(), "en")
		require.NoError(t, err)
		require.Equal(t, StateLockoutCapped, s.State)
		require.Positive(t, s.RetryAfterS)
		require.Contains(t, r.lastEvent(wire.EvLockoutCleared).Detail, "the daily cap still locks PIN entry until")
		r.e.StaffLogout(context.Background())
		require.Equal(t, StateLockedOut, r.pickup(PickupRequest{PIN: "123456789", BirthDate: "1990-01-01"}).State)
	})
}

func (r *rig) pinLockedUntilZero() bool { return r.e.pinLockedUntil().IsZero() }

// Offline, 5 wrong dates of birth typed with the right PIN lock the code
// (QR included), persisted across restarts, and the backend is told; 4 do
// not. (Used to open after 12 wrong dates.)
func TestOfflineWrongDatesOfBirthLockTheCode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		now := time.Now()
		tok, cid := signToken(t, r.priv, now.Add(72*time.Hour))
		locked := offlinetest.PINEntry("doc-l", device, "246813579", "1980-05-06", wire.Address{Board: 0, Channel: 1}, now.Add(72*time.Hour))
		locked.QRHash = pickupcode.QRHash(cid)
		kept := offlinetest.PINEntry("doc-k", device, "135792468", "1970-01-02", wire.Address{Board: 0, Channel: 2}, now.Add(72*time.Hour))
		res := r.e.HandleCommand(context.Background(), r.signed(wire.Command{ID: "sync-1", Kind: wire.CmdCodeSync, Issued: now,
			Expires: now.Add(time.Minute), Codes: &wire.CodeSync{Version: 1, Full: true, Entries: []wire.CodeEntry{locked, kept}}}))
		require.Equal(t, wire.StatusDone, res.Status, res.Detail)
		r.be.set(func() { r.be.unreachable = true })
		pause := r.cfg.Lockout.Window + time.Second // no burst lockout in between
		wrongDOB := func(pin string, i int) {
			require.Equal(t, StateWrongCode, r.pickup(PickupRequest{PIN: pin, BirthDate: fmt.Sprintf("1981-01-%02d", i+1)}).State)
			time.Sleep(pause)
		}
		// Four wrong dates, then the right one: opens.
		for i := 0; i < 4; i++ {
			wrongDOB("135792468", i)
		}
		b := hardware.Address{Board: 0, Channel: 2}
		r.setItem(b, true, false)
		require.Equal(t, StateOpen, r.pickup(PickupRequest{PIN: "135792468", BirthDate: "1970-01-02"}).State)
		r.waitFor("pulse", func() bool { return r.f.PulseCount(b) == 1 })
		r.citizen(b, true)
		r.waitState(StateDone)

		// Five wrong dates (a restart in between), then the right one:
		// refused, and the code is locked.
		for i := 0; i < 5; i++ {
			wrongDOB("246813579", i)
			if i == 2 {
				r = r.restart(rigOpts{})
				defer r.stop()
				r.be.set(func() { r.be.unreachable = true })
			}
		}
		require.Equal(t, StateWrongCode, r.pickup(PickupRequest{PIN: "246813579", BirthDate: "1980-05-06"}).State)
		ev := r.lastEvent(wire.EvCodeLocked)
		require.Equal(t, "doc-l", ev.DocumentID)
		require.Equal(t, pickupcode.QRHash(cid), ev.CodeRef)
		require.True(t, ev.Offline)
		require.Equal(t, StateWrongCode, r.pickup(PickupRequest{QR: tok}).State, "the QR code of a locked code opens nothing")
		r = r.restart(rigOpts{})
		defer r.stop()
		r.be.set(func() { r.be.unreachable = true })
		time.Sleep(pause)
		require.Equal(t, StateWrongCode, r.pickup(PickupRequest{PIN: "246813579", BirthDate: "1980-05-06"}).State, "locked after a restart")
		require.Equal(t, StateWrongCode, r.pickup(PickupRequest{QR: tok}).State)
		require.Zero(t, r.f.PulseCount(hardware.Address{Board: 0, Channel: 1}))
		// The journal holds tags of the PIN, not the PIN.
		for _, rec := range journalRecords(t, r.dir) {
			require.NotContains(t, string(rec.Data), "246813579")
			require.NotContains(t, string(rec.Data), "1980-05-06")
		}
	})
}

// Offline, a code whose cache entry the backend removed after its expiry
// answers expired (not wrong_code) and is not counted, as online.
func TestOfflineExpiredAfterItsEntryWasRemoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		now := time.Now()
		sync := func(v int64, entries ...wire.CodeEntry) {
			res := r.e.HandleCommand(context.Background(), r.signed(wire.Command{ID: fmt.Sprintf("sync-%d", v), Kind: wire.CmdCodeSync,
				Issued: time.Now(), Expires: time.Now().Add(time.Minute), Codes: &wire.CodeSync{Version: v, Full: true, Entries: entries}}))
			require.Equal(t, wire.StatusDone, res.Status, res.Detail)
		}
		sync(1, offlinetest.PINEntry("doc-e", device, "975318642", "1975-07-08", wire.Address{Board: 0, Channel: 1}, now.Add(time.Hour)))
		time.Sleep(2 * time.Hour)
		sync(2) // the backend's bundle no longer has the expired code
		r.be.set(func() { r.be.unreachable = true })
		for i := 0; i < 6; i++ {
			require.Equal(t, StateExpired, r.pickup(PickupRequest{PIN: "975318642", BirthDate: "1975-07-08"}).State, "attempt %d", i)
		}
		require.True(t, r.pinLockedUntilZero(), "expired answers are not counted")
		require.Equal(t, StateWrongCode, r.pickup(PickupRequest{PIN: "975318642", BirthDate: "1975-07-09"}).State)
	})
}

// The wall clock jumps (NTP correcting a device that booted without a
// real-time clock, a technician setting the date): PIN attempt limits are
// counted on the monotonic clock, so a jump forward neither ends a burst
// lock nor empties the budget, and a jump back after a staff lift does not
// stop new failures from counting (they used to be stamped before the
// lift). Across a restart the count resumes from the latest failure when
// the clock went back. docs/security.md's bound counts real time.
// lockedRig starts a rig whose clock is time.Now moved by jump and
// types wrong PINs until PIN entry locks (the rig allows 3).
func lockedRig(t *testing.T) (r *rig, jump *atomic.Int64, clock func() time.Time) {
	jump = new(atomic.Int64)
	clock = func() time.Time { return time.Now().Add(time.Duration(jump.Load())) }
	r = newRig(t, rigOpts{caps: sensors, clock: clock})
	for i := 0; i < 2; i++ {
		require.Equal(t, StateWrongCode, r.wrongPIN(i).State)
	}
	require.Equal(t, StateLockedOut, r.wrongPIN(2).State)
	return r, jump, clock
}

// wrongPIN types the wrong PIN number i.
func (r *rig) wrongPIN(i int) Screen {
	return r.pickup(PickupRequest{PIN: fmt.Sprintf("11111111%d", i), BirthDate: "1990-01-01"})
}

func TestPINLimitsSurviveClockJumps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, jump, clock := lockedRig(t)
		defer func() { r.stop() }()

		jump.Store(int64(25 * time.Hour))
		s := r.wrongPIN(3)
		require.Equal(t, StateLockedOut, s.State, "a day forward on the wall clock lifts nothing")
		require.Greater(t, s.RetryAfterS, 14*60)

		// Lifted by staff, then the clock goes back a day: the next
		// wrong PINs count towards the burst all the same.
		_, err := r.e.liftPINLock(wire.Event{StaffID: "u1"}, "test")
		require.NoError(t, err)
		time.Sleep(time.Second)
		jump.Store(int64(-24 * time.Hour))
		for i := 0; i < 2; i++ {
			require.Equal(t, StateWrongCode, r.wrongPIN(i).State)
		}
		require.Equal(t, StateLockedOut, r.wrongPIN(2).State, "a day back after a lift")

		// A restart with the clock still a day back: still locked.
		r = r.restart(rigOpts{clock: clock})
		require.Equal(t, StateLockedOut, r.wrongPIN(4).State)
	})
}

// The clock set forward while kluisd is stopped gives no fresh attempts.
// At a start the limits resumed at the wall clock, so a device whose
// clock had moved a day forward while it was off (NTP after a boot
// without a real-time clock, or someone who can power-cycle it and set
// its date) found its lock and its daily window over: a fresh budget per
// power cycle. Now the time kluisd was stopped is not counted: the
// limits resume at the PIN clock's last journaled reading, and only a
// time the backend vouches for (a signed command's issue time) moves
// them forward.
func TestPINBudgetSurvivesAClockMovedForwardWhileStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, jump, clock := lockedRig(t)
		defer func() { r.stop() }()
		time.Sleep(3 * time.Minute) // kluisd runs on, locked

		// Stopped, the clock set a day forward, started again: the lock
		// has the 12 minutes it had left, and its failures still count.
		r.stop()
		jump.Store(int64(25 * time.Hour))
		r = r.restart(rigOpts{clock: clock})
		s := r.wrongPIN(3)
		require.Equal(t, StateLockedOut, s.State, "a day forward while kluisd was stopped lifts nothing")
		require.InDelta(t, 12*60, s.RetryAfterS, 70)
		require.Greater(t, r.e.Diagnostics(context.Background()).LockedUntil.Sub(clock()), 11*time.Minute, "diagnostics tell the lock's end on the wall clock")

		// A second power cycle after 5 minutes of running, with the
		// clock a day further: 7 minutes left.
		time.Sleep(5 * time.Minute)
		r.stop()
		jump.Store(int64(49 * time.Hour))
		r = r.restart(rigOpts{clock: clock})
		s = r.wrongPIN(4)
		require.Equal(t, StateLockedOut, s.State)
		require.InDelta(t, 7*60, s.RetryAfterS, 70)

		// The backend's word on the time (a signed command issued now, by
		// the wall clock that NTP set) ends the lock the day has passed.
		now := clock()
		res := r.e.HandleCommand(context.Background(), r.signed(wire.Command{ID: "sync-t", Kind: wire.CmdCodeSync, Issued: now,
			Expires: now.Add(time.Minute), Codes: &wire.CodeSync{Version: 1, Full: true}}))
		require.Equal(t, wire.StatusDone, res.Status, res.Detail)
		require.Equal(t, StateWrongCode, r.wrongPIN(5).State, "the backend's time released the day-old lock")

		// and a restart keeps that time (journaled).
		r = r.restart(rigOpts{clock: clock})
		require.Equal(t, StateWrongCode, r.wrongPIN(6).State)
	})
}
