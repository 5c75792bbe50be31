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
func TestJournalIOErrorKeepsDoorsShutAndRaisesAnAlarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
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
		r := newRig(t, rigOpts{caps: sensors, dir: dir, write: write, reserve: 16 << 10})
		defer r.stop()
		a2, a1 := hardware.Address{Board: 0, Channel: 2}, hardware.Address{Board: 0, Channel: 1}
		r.setItem(a2, true, false)
		r.setItem(a1, true, false)
		r.be.set(func() {
			r.be.verify["K1.good"] = okAt("doc-1", 2)
			r.be.verify["K2.good"] = okAt("doc-2", 1)
		})
		calls := func() int { r.be.mu.Lock(); defer r.be.mu.Unlock(); return r.be.calls }

		mu.Lock()
		failing = true
		mu.Unlock()
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

		mu.Lock()
		failing = false
		mu.Unlock()
		time.Sleep(5 * time.Second)
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
