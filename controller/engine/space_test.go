package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/journal"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

// reserveDisk is a journal Write that says the disk is full while full
// holds and the journal's reserve still has its room (giving it up makes
// room, as on a real file system), and an Allocate that says so while
// full holds.
func reserveDisk(dir string) (func(*os.File, []byte) (int, error), func(*os.File, int64) error, func(bool)) {
	var mu sync.Mutex
	full := false
	return func(f *os.File, b []byte) (int, error) {
			mu.Lock()
			isFull := full
			mu.Unlock()
			if isFull {
				if st, err := os.Stat(filepath.Join(dir, journal.ReserveName)); err == nil && st.Size() > 0 {
					return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
				}
			}
			return f.Write(b)
		}, func(f *os.File, size int64) error {
			mu.Lock()
			isFull := full
			mu.Unlock()
			if isFull {
				return syscall.ENOSPC
			}
			return f.Truncate(size)
		}, func(v bool) {
			mu.Lock()
			full = v
			mu.Unlock()
		}
}

// A disk that fills up during a pickup: the pickup's outcome and end are
// journaled at once in the reserve's room (nothing waits in memory, so a
// kill loses nothing), journal_full is raised, a new pickup is refused
// before it is verified (door shut, "this machine is out of order, call
// 1777"), staff and
// remote opens too; once the disk has room the reserve is made again,
// the alarm cleared and doors open again.
func TestFullDiskReserve(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		write, alloc, setFull := reserveDisk(dir)
		r := newRig(t, rigOpts{caps: sensors, dir: dir, write: write, alloc: alloc, reserve: 16 << 10})
		defer r.stop()
		a := hardware.Address{Board: 0, Channel: 2}
		r.setItem(a, true, false)
		r.be.set(func() {
			r.be.verify["K1.good"] = okAt("doc-1", 2)
			r.be.verify["K2.good"] = okAt("doc-2", 1)
		})
		_, err := r.e.Pickup(context.Background(), PickupRequest{QR: "K1.good"})
		require.NoError(t, err)
		r.waitFor("pulse", func() bool { return len(r.f.Pulses()) == 1 })
		require.Zero(t, r.mustMetric("kluisd_journal_disk_full"))

		setFull(true)
		r.citizen(a, true)
		r.waitState(StateDone)
		synctest.Wait()
		require.True(t, r.hasEvent("pickup_completed"), "journaled in the reserve's room: %v", r.kinds())
		require.Zero(t, r.e.KeptWrites(), "nothing waits in memory")
		require.Empty(t, r.j.Unfinished(), "the operation's end is journaled")
		require.True(t, r.hasEvent("alarm:journal_full"), "%v", r.kinds())
		require.Equal(t, 1.0, r.mustMetric("kluisd_journal_disk_full"))

		calls := func() int { r.be.mu.Lock(); defer r.be.mu.Unlock(); return r.be.calls }
		before := calls()
		s, err := r.e.Pickup(context.Background(), PickupRequest{QR: "K2.good"})
		require.NoError(t, err)
		require.Equal(t, StateDeviceOutOfOrder, s.State)
		// The whole machine is out of order, not "this compartment":
		// the citizen is told to call 1777, in every language.
		for _, l := range Langs() {
			require.Contains(t, s.Messages[l], "1777", l)
		}
		require.Equal(t, "This machine is out of order. Please call\u00a01777 for help.", s.Messages["en"])
		require.Equal(t, before, calls(), "not verified: no door opens on a full disk")
		res := r.e.HandleCommand(context.Background(), r.signed(wire.Command{ID: "cmd-full", Kind: wire.CmdOpen, Addr: &wire.Address{Board: 0, Channel: 1},
			Issued: time.Now(), Expires: time.Now().Add(time.Minute), Reason: "test"}))
		require.Equal(t, wire.StatusFailed, res.Status)
		require.Equal(t, "device out of order: disk full", res.Detail)
		synctest.Wait()
		require.Len(t, r.f.Pulses(), 1, "no second pulse")

		// Still full: the reserve is not made again, the alarm stays.
		time.Sleep(3 * spaceRetry)
		synctest.Wait()
		require.Equal(t, 1.0, r.mustMetric("kluisd_journal_disk_full"))

		setFull(false)
		time.Sleep(spaceRetry)
		synctest.Wait()
		require.Zero(t, r.mustMetric("kluisd_journal_disk_full"))
		require.True(t, r.hasEvent("alarm_cleared:journal_full"), "%v", r.kinds())
		st, err := os.Stat(filepath.Join(dir, journal.ReserveName))
		require.NoError(t, err)
		require.EqualValues(t, 16<<10, st.Size())
		r.setItem(hardware.Address{Board: 0, Channel: 1}, true, false)
		_, err = r.e.Pickup(context.Background(), PickupRequest{QR: "K2.good"})
		require.NoError(t, err)
		r.waitFor("second pulse", func() bool { return len(r.f.Pulses()) == 2 })
		n := 0
		for _, k := range r.kinds() {
			if k == "alarm:journal_full" {
				n++
			}
		}
		require.Equal(t, 1, n, "one alarm: %v", r.kinds())
	})
}

// The same on a real small file system, with a restart on the full disk:
// the restarted engine opens its journal without a reserve, refuses doors,
// does not raise journal_full twice, and clears it once there is room.
func TestFullTmpfsAcrossARestart(t *testing.T) {
	mnt := testenv.SmallDisk(t, 4<<20)
	synctest.Test(t, func(t *testing.T) {
		dir := filepath.Join(mnt, "kluisd")
		require.NoError(t, os.Mkdir(dir, 0o700))
		r := newRig(t, rigOpts{caps: sensors, dir: dir, reserve: 512 << 10})
		a := hardware.Address{Board: 0, Channel: 2}
		r.setItem(a, true, false)
		r.be.set(func() {
			r.be.verify["K1.good"] = okAt("doc-1", 2)
			r.be.verify["K2.good"] = okAt("doc-2", 1)
		})
		_, err := r.e.Pickup(context.Background(), PickupRequest{QR: "K1.good"})
		require.NoError(t, err)
		r.waitFor("pulse", func() bool { return len(r.f.Pulses()) == 1 })
		filler := testenv.FillDisk(t, mnt, "filler")
		// Other journal writes fill what is left of the journal file's
		// last page (a record type nobody keeps), up to the one that
		// meets the full disk and gives the reserve up.
		for i := 0; ; i++ {
			require.Less(t, i, 100)
			if st, _ := r.j.Space(); st.Low {
				break
			}
			_, err := r.j.Append(journal.Record{Type: "padding", Data: []byte(`"` + strings.Repeat("p", 500) + `"`)})
			require.NoError(t, err)
		}
		r.citizen(a, true)
		r.waitState(StateDone)
		synctest.Wait()
		require.True(t, r.hasEvent("pickup_completed"), "%v", r.kinds())
		require.True(t, r.hasEvent("alarm:journal_full"), "%v", r.kinds())
		require.Zero(t, r.e.KeptWrites())
		require.Empty(t, r.j.Unfinished())

		f, priv := r.f, r.priv
		r.stop()
		f.Resume()
		r = newRig(t, rigOpts{caps: sensors, dir: dir, fake: f, priv: priv, reserve: 512 << 10})
		defer r.stop()
		r.be.set(func() { r.be.verify["K2.good"] = okAt("doc-2", 1) })
		require.Equal(t, 1.0, r.mustMetric("kluisd_journal_disk_full"), "no room for the reserve at start-up")
		s, err := r.e.Pickup(context.Background(), PickupRequest{QR: "K2.good"})
		require.NoError(t, err)
		require.Equal(t, StateDeviceOutOfOrder, s.State)
		synctest.Wait()
		require.Len(t, f.Pulses(), 1)
		n := 0
		for _, k := range r.kinds() {
			if k == "alarm:journal_full" {
				n++
			}
		}
		require.Equal(t, 1, n, "the replayed alarm is not raised again: %v", r.kinds())

		require.NoError(t, os.Remove(filler))
		time.Sleep(spaceRetry)
		synctest.Wait()
		require.True(t, r.hasEvent("alarm_cleared:journal_full"), "%v", r.kinds())
		require.Zero(t, r.mustMetric("kluisd_journal_disk_full"))
		r.setItem(hardware.Address{Board: 0, Channel: 1}, true, false)
		_, err = r.e.Pickup(context.Background(), PickupRequest{QR: "K2.good"})
		require.NoError(t, err)
		r.waitFor("second pulse", func() bool { return len(f.Pulses()) == 2 })
	})
}

// A crash after journal_full's alarm was journaled but before its mark:
// the restarted engine takes the journaled alarm as raised and clears it
// once there is room (before, it knew of no raise, and the backend kept
// an alarm nobody would clear).
func TestJournalFullAlarmJournaledWithoutItsMark(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors, dir: dir})
		r.e.alarm(wire.AlarmJournalFull, nil, nil, "disk full (the crash comes before the mark)")
		synctest.Wait()
		require.True(t, r.hasEvent("alarm:journal_full"), "%v", r.kinds())
		f, priv := r.f, r.priv
		r.stop()
		f.Resume()
		r = newRig(t, rigOpts{caps: sensors, dir: dir, fake: f, priv: priv})
		defer r.stop()
		synctest.Wait()
		require.Zero(t, r.mustMetric("kluisd_journal_disk_full"))
		n := 0
		for _, k := range r.kinds() {
			if k == "alarm_cleared:journal_full" {
				n++
			}
		}
		require.Equal(t, 1, n, "the journaled raise is cleared once: %v", r.kinds())
	})
}

// A reserve that cannot be made for another reason than a full disk (an
// I/O error, a reserve file kluisd may not write): doors stay shut and the
// alarm is raised as before, but it names the cause instead of "disk full"
// (which sent a technician to free room on a disk with room to spare), as
// does the remote open's refusal; once the reserve can be made the alarm
// is cleared.
func TestReserveFailureNamesItsCause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		var mu sync.Mutex
		failing := true
		alloc := func(f *os.File, size int64) error {
			mu.Lock()
			defer mu.Unlock()
			if failing {
				return syscall.EIO
			}
			return f.Truncate(size)
		}
		r := newRig(t, rigOpts{caps: sensors, dir: dir, alloc: alloc, reserve: 16 << 10})
		defer r.stop()
		synctest.Wait()
		var detail string
		for _, ev := range r.events() {
			if ev.Kind == wire.EvAlarm && ev.Alarm == wire.AlarmJournalFull {
				detail = ev.Detail
			}
		}
		require.NotEmpty(t, detail, "raised: %v", r.kinds())
		require.NotContains(t, detail, "disk full")
		require.Contains(t, detail, "input/output error")
		require.Contains(t, detail, "no door opens")

		res := r.e.HandleCommand(context.Background(), r.signed(wire.Command{ID: "cmd-eio", Kind: wire.CmdOpen, Addr: &wire.Address{Board: 0, Channel: 1},
			Issued: time.Now(), Expires: time.Now().Add(time.Minute), Reason: "test"}))
		require.Equal(t, wire.StatusFailed, res.Status)
		require.Equal(t, "device out of order: the journal fails (not a full disk)", res.Detail)
		require.Empty(t, r.f.Pulses())

		mu.Lock()
		failing = false
		mu.Unlock()
		time.Sleep(spaceRetry)
		synctest.Wait()
		require.True(t, r.hasEvent("alarm_cleared:journal_full"), "%v", r.kinds())
		require.Zero(t, r.mustMetric("kluisd_journal_disk_full"))
	})
}
