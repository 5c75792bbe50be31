package journal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/deploy/dev/testenv"
)

// A journal found damaged at start on a full disk: the damaged tail's copy
// (journal.log.bad-N) finds no room, and Open failed, so kluisd could not
// start at all (no alarm, the device only offline) until someone made
// room. The reserve kept from the last run is given up for the copy, as
// for any record that must be kept: the journal opens, low (no door opens,
// journal_full), damaged (journal_damaged), the copy whole; with room
// again the reserve is made again.
func TestDamagedJournalOpensOnAFullDisk(t *testing.T) {
	mnt := testenv.SmallDisk(t, 4<<20)
	j, _, _, err := Open(Options{Dir: mnt, DeviceID: "d", Reserve: 256 << 10})
	require.NoError(t, err)
	for i := 0; i < 400; i++ {
		_, err := j.AppendEvent(Event{ID: fmt.Sprintf("e%03d", i), Kind: "k", Payload: []byte(`"` + string(bytes.Repeat([]byte("x"), 400)) + `"`)})
		require.NoError(t, err)
	}
	require.NoError(t, j.Close())
	p := filepath.Join(mnt, FileName)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	i := bytes.Index(b, []byte(`"e050"`))
	require.Positive(t, i)
	b[i+2] ^= 0x40
	require.NoError(t, os.WriteFile(p, b, 0o600))
	filler := testenv.FillDisk(t, mnt, "filler")

	j, recs, rec, err := Open(Options{Dir: mnt, DeviceID: "d", Reserve: 256 << 10})
	require.NoError(t, err, "kluisd must start on a full disk with a damaged journal")
	require.True(t, rec.Corrupt)
	require.True(t, rec.Unsettled)
	require.Equal(t, "e049", recs[len(recs)-1].Event.ID, "read up to the damage")
	tail, err := os.ReadFile(rec.BadFile)
	require.NoError(t, err)
	require.Equal(t, b[bytes.LastIndexByte(b[:i], '\n')+1:], tail, "the whole damaged tail kept")
	st, _ := j.Space()
	require.True(t, st.Low)
	require.True(t, st.DiskFull(), "%v", st.Cause)

	require.NoError(t, os.Remove(filler))
	require.NoError(t, j.Restore())
	st, _ = j.Space()
	require.False(t, st.Low)
	require.NoError(t, j.Close())
}
