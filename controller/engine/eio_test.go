package engine

import (
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
	"kluis/hardware"
)

// rigLog is the rig's log: kept out of the test's output unless RIGLOG is
// set.
func rigLog() io.Writer {
	if os.Getenv("RIGLOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

// A journal whose disk fails with EIO (a worn SD card), not with ENOSPC:
// the door of the attempt that met it stays shut, and from then on no door
// operation starts (the whole machine out of order, "call 1777"; no code
// verified with the backend) and journal_full is raised naming the cause,
// instead of taking each citizen through a verification to "Something went
// wrong" with no alarm at all. Once the journal takes writes again, the
// alarm and its clear reach the outbox, nothing kept is lost, and doors
// open again.
// eioRig is a rig whose journal writes fail with EIO while fail(true).
func eioRig(t *testing.T) (r *rig, fail func(bool)) {
	var mu sync.Mutex
	failing := false
	write := func(f *os.File, b []byte) (int, error) {
		mu.Lock()
		bad := failing
		mu.Unlock()
		if bad {
			return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.EIO}
		}
		return f.Write(b)
	}
	r = newRig(t, rigOpts{caps: sensors, dir: t.TempDir(), write: write, reserve: 16 << 10})
	return r, func(v bool) { mu.Lock(); failing = v; mu.Unlock() }
}

func TestJournalIOErrorKeepsDoorsShutAndRaisesAnAlarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, fail := eioRig(t)
		defer r.stop()
		a2, a1 := hardware.Address{Board: 0, Channel: 2}, hardware.Address{Board: 0, Channel: 1}
		r.setItem(a2, true, false)
		r.setItem(a1, true, false)
		r.be.set(func() {
			r.be.verify["K1.good"] = okAt("doc-1", 2)
			r.be.verify["K2.good"] = okAt("doc-2", 1)
		})
		calls := func() int { r.be.mu.Lock(); defer r.be.mu.Unlock(); return r.be.calls }

		fail(true)
		_, err := r.e.Pickup(context.Background(), PickupRequest{QR: "K1.good"})
		require.NoError(t, err)
		r.waitState(StateError)
		synctest.Wait()
		require.Empty(t, r.f.Pulses(), "not journaled, not pulsed")
		require.Equal(t, 1.0, r.mustMetric("kluisd_journal_disk_full"))

		before := calls()
		s, err := r.e.Pickup(context.Background(), PickupRequest{QR: "K2.good"})
		require.NoError(t, err)
		require.Equal(t, StateDeviceOutOfOrder, s.State, "no door opens while the journal fails")
		require.Equal(t, before, calls(), "not verified")
		res := r.e.HandleCommand(context.Background(), r.signed(wire.Command{ID: "cmd-eio", Kind: wire.CmdOpen, Addr: &wire.Address{Board: 0, Channel: 0},
			Issued: time.Now(), Expires: time.Now().Add(time.Minute), Reason: "test"}))
		require.Equal(t, wire.StatusFailed, res.Status)
		require.Equal(t, "journal unavailable", res.Detail, "its id cannot be journaled")
		time.Sleep(10 * time.Second)
		synctest.Wait()
		require.Empty(t, r.f.Pulses())
		require.Positive(t, r.e.KeptWrites(), "the alarm waits in memory")

		fail(false)
		time.Sleep(journalHold + 5*time.Second)
		synctest.Wait()
		require.Zero(t, r.e.KeptWrites())
		require.Zero(t, r.mustMetric("kluisd_journal_disk_full"))
		var detail string
		for _, ev := range r.events() {
			if ev.Kind == wire.EvAlarm && ev.Alarm == wire.AlarmJournalFull {
				detail = ev.Detail
			}
		}
		require.True(t, strings.Contains(detail, "input/output error") && strings.Contains(detail, "not a full disk"), "%q", detail)
		require.True(t, r.hasEvent("alarm_cleared:journal_full"), "%v", r.kinds())

		_, err = r.e.Pickup(context.Background(), PickupRequest{QR: "K2.good"})
		require.NoError(t, err)
		r.waitFor("pulse", func() bool { return r.f.PulseCount(a1) == 1 })
	})
}

// An intermittent EIO (a card that fails one write now and then) used to
// raise journal_full and clear it half a second later, each time, so that
// only kluisd_journal_errors showed it. The alarm now stays raised, and
// the doors shut, until journal writes have worked for journalHold: a
// write failing meanwhile, whoever asked for it (here a remote open's
// command id), begins the hold again. Raised once, cleared once.
func TestFlakyJournalHoldsTheAlarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, fail := eioRig(t)
		defer r.stop()
		a1 := hardware.Address{Board: 0, Channel: 1}
		r.setItem(a1, true, false)
		r.be.set(func() { r.be.verify["K1.good"] = okAt("doc-1", 1) })
		count := func(kind wire.EventKind) int {
			n := 0
			for _, ev := range r.events() {
				if ev.Kind == kind && ev.Alarm == wire.AlarmJournalFull {
					n++
				}
			}
			return n
		}
		shut := func(why string) {
			t.Helper()
			s, err := r.e.Pickup(context.Background(), PickupRequest{QR: "K1.good"})
			require.NoError(t, err)
			require.Equal(t, StateDeviceOutOfOrder, s.State, why)
			require.Equal(t, 1.0, r.mustMetric("kluisd_journal_disk_full"), why)
			require.Zero(t, count(wire.EvAlarmCleared), why)
		}

		fail(true)
		_, err := r.e.Pickup(context.Background(), PickupRequest{QR: "K1.good"})
		require.NoError(t, err)
		r.waitState(StateError)
		time.Sleep(100 * time.Millisecond)
		fail(false)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		require.Zero(t, r.e.KeptWrites(), "the kept writes are written")
		require.Equal(t, 1, count(wire.EvAlarm))
		shut("held: writes worked for 5 s only")

		time.Sleep(journalHold / 2)
		fail(true)
		res := r.e.HandleCommand(context.Background(), r.signed(wire.Command{ID: "cmd-flaky", Kind: wire.CmdOpen, Addr: &wire.Address{Board: 0, Channel: 0},
			Issued: time.Now(), Expires: time.Now().Add(time.Minute), Reason: "test"}))
		require.Equal(t, wire.StatusFailed, res.Status)
		fail(false)
		time.Sleep(journalHold/2 + 5*time.Second)
		synctest.Wait()
		shut("a write failed during the hold: it began again")

		time.Sleep(journalHold)
		synctest.Wait()
		require.Zero(t, r.mustMetric("kluisd_journal_disk_full"))
		require.Equal(t, [2]int{1, 1}, [2]int{count(wire.EvAlarm), count(wire.EvAlarmCleared)}, "%v", r.kinds())
		_, err = r.e.Pickup(context.Background(), PickupRequest{QR: "K1.good"})
		require.NoError(t, err)
		r.waitFor("pulse", func() bool { return r.f.PulseCount(a1) == 1 })
	})
}
