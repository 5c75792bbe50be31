package verify

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/deviceops"
)

func TestParseDBSetAndPGWaits(t *testing.T) {
	o, cmd, err := parse([]string{"-devices", "8", "-pg-waits", "1ms", "-db-set", "commit_delay=300,commit_siblings=1"})
	require.NoError(t, err)
	require.Equal(t, [][2]string{{"commit_delay", "300"}, {"commit_siblings", "1"}}, o.dbSet)
	require.Equal(t, time.Millisecond, o.pgWaits)
	require.Contains(t, cmd, "-pg-waits 1ms -db-set commit_delay=300,commit_siblings=1", "the command that reproduces the run")
	for _, bad := range []string{"commit_delay", "commit delay=1", "x=", "=1", "Commit_Delay=1", "a;DROP DATABASE x=1"} {
		_, _, err := parse([]string{"-db-set", bad})
		require.Error(t, err, bad)
	}
	o, cmd, err = parse(nil)
	require.NoError(t, err)
	require.Empty(t, o.dbSet)
	require.Zero(t, o.pgWaits)
	require.NotContains(t, cmd, "-db-set")
	require.NotContains(t, cmd, "-pg-waits")
}

func TestWaitsNote(t *testing.T) {
	busy := waitKey("active", "LWLock", "WALWrite", "COMMIT")
	onCPU := waitKey("active", "", "", "SELECT   device_id\n\t FROM code_devices WHERE device_id = ANY($1::text[]) ORDER BY device_id")
	idle := waitKey("idle", "Client", "ClientRead", "COMMIT")
	require.Equal(t, "idle (between transactions)", idle, "an idle backend's last statement does not matter")
	require.Contains(t, onCPU, "CPU (no wait event)")
	require.Contains(t, onCPU, "SELECT device_id FROM code_devices WHERE device_")
	require.NotContains(t, onCPU, "ANY", "the statement is cut to its first words")
	note := waitsNote("8 devices, Kluis", 4, map[string]int{busy: 6, onCPU: 1, idle: 20}, walCounts{syncs: 10, commits: 25, bytes: 4000, took: 2 * time.Second})
	lines := strings.Split(note, "\n")
	require.Len(t, lines, 4)
	require.Contains(t, lines[0], "in 2.0 s, 25 commits in the bench database, 10 WAL flushes and 4 KB of WAL")
	require.Contains(t, lines[0], "2.50 commits per flush")
	require.Contains(t, lines[1], " 5.00  idle", "the busiest state first, as the mean number of backends")
	require.Contains(t, lines[2], " 1.50  active")
	require.Contains(t, lines[2], "LWLock:WALWrite")
	require.Contains(t, lines[3], " 0.25  active")
	require.Empty(t, waitsNote("x", 0, nil, walCounts{}), "no samples, no note")
}

func TestCoresNote(t *testing.T) {
	// Kluis: 4,000 claims in 1 s at 250 µs in the process and 125 µs in
	// PostgreSQL; the floor: 6,000 in 1 s at 50 + 200 µs.
	k := &cost{client: time.Second, server: 500 * time.Millisecond, wall: time.Second, ops: 4000}
	f := &cost{client: 300 * time.Millisecond, server: 1200 * time.Millisecond, wall: time.Second, ops: 6000}
	note := coresNote(k, f)
	require.Contains(t, note, "Kluis 1.50 (the process 1.00 + PostgreSQL 0.50), floor 1.50 (pgbench 0.30 + PostgreSQL 1.20)")
	// 4,000/6,000 = 0.67 = (1.50/1.50) × (250 µs / 375 µs)
	require.Contains(t, note, "about 1.00 (cores) × 0.67 (the floor's CPU per claim over Kluis's)")
	require.Empty(t, coresNote(&cost{ops: 1}, f), "no elapsed time, no note")
	require.Empty(t, coresNote(k, &cost{wall: time.Second}), "no claims, no note")
}

// -answer-signature: kr2 by default (the bench's kiosks check both forms,
// as kluisd does), kr1 named in the command that reproduces the run.
func TestParseAnswerSignature(t *testing.T) {
	o, cmd, err := parse(nil)
	require.NoError(t, err)
	require.Equal(t, deviceops.AnswerKR2, o.answers)
	require.NotContains(t, cmd, "-answer-signature")
	o, cmd, err = parse([]string{"-answer-signature", "kr1"})
	require.NoError(t, err)
	require.Equal(t, deviceops.AnswerKR1, o.answers)
	require.Contains(t, cmd, "-answer-signature kr1")
	_, _, err = parse([]string{"-answer-signature", "kr3"})
	require.Error(t, err)
}
