package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

// diskFull reads kluisd_journal_disk_full from kluisd's /metrics (-1 when
// it does not answer).
func diskFull(metrics string) int {
	switch metricValue(metrics, "kluisd_journal_disk_full") {
	case -1:
		return -1
	case 1:
		return 1
	}
	return 0
}

// kluisd as a real process with its journal on a small tmpfs that fills
// up (root only; skipped otherwise), against the real backend: pickups go
// on until a journal write meets the full disk, kluisd is killed with
// SIGKILL at once, restarts on the full disk (no room for its reserve)
// and opens no door; once there is room it makes its reserve again and
// serves. Afterwards every document was collected once, no channel was
// pulsed twice, and the backend has journal_full raised and cleared, each
// once: nothing journaled on the full disk was lost to the kill.
func TestKillNineOnAFullDisk(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("child")
	}
	mnt := testenv.SmallDisk(t, 8<<20)
	const docs = 6
	dir := t.TempDir()
	dev := fmt.Sprintf("full-%d", time.Now().UnixNano())
	kiosk, metrics := testenv.FreeAddr(t), testenv.FreeAddr(t)
	var addrs []wire.Address
	for i := 1; i <= docs; i++ {
		addrs = append(addrs, wire.Address{Board: 0, Channel: i - 1})
	}
	be := startRealBackend(t, dev, "locker", numbered(addrs...), server.Options{RearmUnfollowed: 3 * time.Second})
	ids, tokens := be.loadDocuments(docs)
	cfgPath := writeLockerConfig(t, be, dir, filepath.Join(mnt, "journal"), kiosk, metrics, "{door_open_detect: 2s, verify: 2s, resume_window: 60s}", docs)
	collected := func() int {
		n := 0
		for _, id := range ids {
			if be.state(id) == "collected" {
				n++
			}
		}
		return n
	}
	pulses := func() map[hardware.Address]int { return simPulses(t, filepath.Join(dir, "board.sim")) }

	c := startChild(t, cfgPath, metrics)
	require.Equal(t, 0, diskFull(metrics))
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	require.NoError(t, err)
	for buf := make([]byte, 64<<10); ; {
		if _, err := f.Write(buf); err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			break
		}
	}
	require.NoError(t, f.Close())
	// Pickups until a journal write meets the full disk (what is left of
	// the journal file's last page may take a pickup or two).
	next := 0
	deadline := time.Now().Add(60 * time.Second)
	for diskFull(metrics) != 1 {
		require.True(t, time.Now().Before(deadline), "the journal never met the full disk\n%s", c.stderr.String())
		if next < docs-2 {
			pickup(kiosk, tokens[ids[next]])
			next++
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
	<-c.done
	before := pulses()
	t.Logf("the journal met the full disk after %d pickups asked, %d pulses", next, len(before))

	// Restarted on the full disk: no room for the reserve, no door opens.
	c = startChild(t, cfgPath, metrics)
	require.Equal(t, 1, diskFull(metrics))
	pickup(kiosk, tokens[ids[docs-1]])
	time.Sleep(time.Second)
	require.Equal(t, before, pulses(), "a door opened on the full disk")
	require.NotEqual(t, "collected", be.state(ids[docs-1]))

	require.NoError(t, os.Remove(filler))
	deadline = time.Now().Add(60 * time.Second)
	for diskFull(metrics) != 0 {
		require.True(t, time.Now().Before(deadline), "the reserve never came back\n%s", c.stderr.String())
		time.Sleep(100 * time.Millisecond)
	}
	for collected() < docs && time.Now().Before(deadline.Add(30*time.Second)) {
		for _, id := range ids {
			if be.state(id) != "collected" {
				pickup(kiosk, tokens[id])
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.Equal(t, docs, collected(), "every document collected\n%s", c.stderr.String())
	raised, cleared := 0, 0
	for time.Now().Before(deadline.Add(30 * time.Second)) {
		raised, cleared = journalFullAudit(be, dev)
		if raised == 1 && cleared == 1 {
			break
		}
		require.LessOrEqual(t, raised, 1)
		require.LessOrEqual(t, cleared, 1)
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, [2]int{1, 1}, [2]int{raised, cleared}, "journal_full raised and cleared once each")
	stopChild(t, c)
	for a, n := range pulses() {
		require.Equal(t, 1, n, "channel %s pulsed %d times", a, n)
	}
	for _, id := range ids {
		require.Equal(t, 1, be.auditActions("document:" + id)["document.collect"], "document %s collected once", id)
	}
}
