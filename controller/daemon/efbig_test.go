package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"kluis/backend/server"
	"kluis/controller/config"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// journalFullAudit counts the backend's journal_full raises and clears of
// device dev.
func journalFullAudit(be *realBackend, dev string) (raised, cleared int) {
	for _, r := range be.audit("device:" + dev) {
		if r.Details["alarm"] != string(wire.AlarmJournalFull) {
			continue
		}
		switch r.Action {
		case "device.alarm":
			raised++
		case "device.alarm_cleared":
			cleared++
		}
	}
	return raised, cleared
}

// lockerConfig is a kluisd.yaml for be's device: a locker of n
// compartments on board 0 (channel = number - 1) on a simfile board in
// dir, its journal in journalDir, the kiosk and metrics on the given
// addresses, timeouts as given (YAML).
func lockerConfig(be *realBackend, dir, journalDir, kiosk, metrics, timeouts string, n int) string {
	var comps strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&comps, "  - {number: %d, board: 0, channel: %d}\n", i, i-1)
	}
	return fmt.Sprintf(`
device_id: %s
site: %s
kind: locker
mqtt: %s
hardware: {driver: simfile, simfile: %s}
journal_dir: %s
kiosk: {listen: "%s"}
metrics_listen: "%s"
offline: %s
timeouts: %s
compartments:
%s`, be.dev, "site-"+be.dev, be.mqttConfig(), filepath.Join(dir, "board.sim"), journalDir, kiosk, metrics, be.offlineConfig(), timeouts, comps.String())
}

// writeLockerConfig writes lockerConfig into dir's kluisd.yaml and returns
// the file's path.
func writeLockerConfig(t *testing.T, be *realBackend, dir, journalDir, kiosk, metrics, timeouts string, n int) string {
	t.Helper()
	cfgPath := filepath.Join(dir, "kluisd.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(lockerConfig(be, dir, journalDir, kiosk, metrics, timeouts, n)), 0o600))
	return cfgPath
}

// parseLockerConfig parses lockerConfig (test drivers allowed).
func parseLockerConfig(t *testing.T, be *realBackend, dir, journalDir, kiosk, metrics, timeouts string, n int) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(lockerConfig(be, dir, journalDir, kiosk, metrics, timeouts, n)), config.ParseOptions{AllowTestDrivers: true})
	require.NoError(t, err)
	return cfg
}

// setFileSizeLimit sets a running process's RLIMIT_FSIZE (its soft limit;
// the hard one stays unlimited, so that it can be lifted again).
func setFileSizeLimit(t *testing.T, pid int, n uint64) {
	t.Helper()
	require.NoError(t, unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: n, Max: unix.RLIM_INFINITY}, nil))
}

// kluisd as a real process whose journal cannot grow (RLIMIT_FSIZE at the
// journal file's size: every append and every compaction fails with
// EFBIG), against the real backend: the door of the pickup that met it
// stays shut, and the journal_full alarm reaches the backend while the
// journal still fails (it used to wait in memory, the outbox being the
// journal, until the journal took writes again). Once the limit is lifted
// the alarm is journaled and sent again with the same id: the backend has
// it raised once, and cleared once.
func TestJournalEFBIGAlarmReachesTheBackend(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	dev := fmt.Sprintf("efbig-%d", time.Now().UnixNano())
	kiosk, metrics := testenv.FreeAddr(t), testenv.FreeAddr(t)
	addrs := []wire.Address{{Board: 0, Channel: 0}, {Board: 0, Channel: 1}}
	be := startRealBackend(t, dev, "locker", numbered(addrs...), server.Options{})
	ids, tokens := be.loadDocuments(len(addrs))
	techPIN := be.technician()
	jdir := filepath.Join(dir, "journal")
	cfgPath := writeLockerConfig(t, be, dir, jdir, kiosk, metrics, "{door_open_detect: 2s, verify: 2s}", len(addrs))
	c := startChild(t, cfgPath, metrics)
	defer func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}()
	require.Equal(t, 0, diskFull(metrics))
	fi, err := os.Stat(filepath.Join(jdir, "journal.log"))
	require.NoError(t, err)
	setFileSizeLimit(t, c.cmd.Process.Pid, uint64(fi.Size()))

	deadline := time.Now().Add(30 * time.Second)
	for i := 0; diskFull(metrics) != 1; i++ {
		require.True(t, time.Now().Before(deadline), "the journal's failure never seen\n%s", tail(c.stderr.String(), 4000))
		if i%20 == 0 { // the link may still be connecting: verified offline, refused
			pickup(kiosk, tokens[ids[0]])
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.Empty(t, simPulses(t, filepath.Join(dir, "board.sim")), "not journaled, not pulsed")
	for {
		raised, _ := journalFullAudit(be, dev)
		if raised == 1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "journal_full never reached the backend while the journal fails\n%s", tail(c.stderr.String(), 4000))
		time.Sleep(200 * time.Millisecond)
	}
	require.Equal(t, 1, diskFull(metrics), "the journal still fails")
	// The technician's screen (the kiosk's diagnostics, for a technician
	// logged in) lists it too.
	diag := techDiagnostics(t, kiosk, techPIN)
	require.Len(t, diag.Alarms, 1, "journal_full on the technician's screen while the journal fails")
	require.Equal(t, wire.AlarmJournalFull, diag.Alarms[0].Alarm)
	fi2, err := os.Stat(filepath.Join(jdir, "journal.log"))
	require.NoError(t, err)
	require.Equal(t, fi.Size(), fi2.Size(), "nothing journaled meanwhile")

	setFileSizeLimit(t, c.cmd.Process.Pid, unix.RLIM_INFINITY)
	deadline = time.Now().Add(90 * time.Second)
	for {
		raised, cleared := journalFullAudit(be, dev)
		require.LessOrEqual(t, raised, 1, "raised once: the journaled alarm has the id it was published with")
		if cleared == 1 && diskFull(metrics) == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "journal_full never cleared\n%s", tail(c.stderr.String(), 4000))
		time.Sleep(200 * time.Millisecond)
	}
	// The repeat was sent and acknowledged (the outbox empties).
	for metricValue(metrics, "kluisd_journal_backlog") > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	raised, cleared := journalFullAudit(be, dev)
	require.Equal(t, [2]int{1, 1}, [2]int{raised, cleared})
	diag = techDiagnostics(t, kiosk, techPIN)
	require.Len(t, diag.Alarms, 1, "listed once: not again when journaled")
	stopChild(t, c)
}
