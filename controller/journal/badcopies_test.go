package journal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// badFiles lists the journal.log.bad-N files in dir.
func badFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, FileName+".bad-*"))
	require.NoError(t, err)
	return m
}

// Crashes while a damaged tail is being moved aside (after its copy, partly
// or wholly written, before the cut) do not pile up copies of the same
// tail: the next Open writes the copy the last crash left again, whole,
// instead of adding journal.log.bad-N+1 (each as large as the tail: a
// device that kept crashing there filled its disk). Another damage found
// later gets a copy of its own.
func TestDamagedTailCopiedOnceAcrossCrashes(t *testing.T) {
	dir := t.TempDir()
	p, b := threeEvents(t, dir)
	b[len(b)/2] ^= 0x40
	require.NoError(t, os.WriteFile(p, b, 0o600))

	j, _, rec := open(t, dir)
	require.True(t, rec.Corrupt)
	require.NoError(t, j.Close())
	tail, err := os.ReadFile(rec.BadFile)
	require.NoError(t, err)
	require.NotEmpty(t, tail)
	first := rec.BadFile

	for i, crash := range []struct {
		name   string
		copied int  // bytes of the copy written before the crash
		marked bool // the marker written before the crash
	}{
		{"after the copy", len(tail), false},
		{"during the copy", len(tail) / 2, false},
		{"right after the copy's file was made", 0, false},
		{"after the marker, before the cut", len(tail), true},
		{"after the copy again", len(tail), false},
	} {
		// The state the crash left: the journal not cut yet, the copy as
		// far as it got.
		require.NoError(t, os.WriteFile(p, b, 0o600))
		require.NoError(t, os.WriteFile(first, tail[:crash.copied], 0o600))
		if !crash.marked {
			require.NoError(t, os.Remove(filepath.Join(dir, DamageName)))
		}
		j, recs, rec := open(t, dir)
		require.True(t, rec.Corrupt, crash.name)
		require.Len(t, recs, 1, crash.name)
		require.Equal(t, first, rec.BadFile, "%d: %s", i, crash.name)
		require.Equal(t, []string{first}, badFiles(t, dir), crash.name)
		got, err := os.ReadFile(first)
		require.NoError(t, err)
		require.Equal(t, tail, got, "%s: the copy is whole again", crash.name)
		require.Contains(t, rec.Damage(), filepath.Base(first))
		require.NoError(t, j.Close())
	}

	// Another damage later: a copy of its own; the first one is kept.
	j, _, rec = open(t, dir)
	require.NoError(t, j.SettleDamage())
	for i := 0; i < 3; i++ {
		_, err := j.AppendEvent(Event{ID: "late-" + string(rune('a'+i)), Kind: "k"})
		require.NoError(t, err)
	}
	require.NoError(t, j.Close())
	b2, err := os.ReadFile(p)
	require.NoError(t, err)
	i := bytes.Index(b2, []byte(`"late-b"`))
	require.Positive(t, i)
	b2[i+2] ^= 0x40 // before the last record: damage, not a torn tail
	require.NoError(t, os.WriteFile(p, b2, 0o600))
	j, _, rec = open(t, dir)
	require.True(t, rec.Corrupt)
	require.NotEqual(t, first, rec.BadFile)
	require.Len(t, badFiles(t, dir), 2)
	got, err := os.ReadFile(first)
	require.NoError(t, err)
	require.Equal(t, tail, got, "the first damage's copy is kept")
	require.NoError(t, j.Close())
}
