package engine

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/journal"
	"kluis/controller/wire"
)

// HoldInterrupted reports uncertain only the commands journaled with no
// result: not one whose result is held, acknowledged, or marked reported
// (the mark outlives a compaction that dropped the acknowledged result,
// and Keep keeps it as long as the command's id).
func TestHoldInterruptedOnlyCommandsWithoutAResult(t *testing.T) {
	dir := t.TempDir()
	j, _, _, err := journal.Open(journal.Options{Dir: dir, DeviceID: "k1"})
	require.NoError(t, err)
	exp := time.Now().Add(time.Minute)
	cmd := func(id string) {
		b, _ := json.Marshal(map[string]any{"id": id, "expires": exp, "kind": "open"})
		_, err := j.Append(journal.Record{Type: recCommand, Data: b})
		require.NoError(t, err)
	}
	for _, id := range []string{"a", "held", "acked", "marked"} {
		cmd(id)
	}
	require.NoError(t, j.HoldResult("held", []byte(`{"v":1,"id":"held","status":"done"}`)))
	require.NoError(t, j.HoldResult("acked", []byte(`{"v":1,"id":"acked","status":"done"}`)))
	_, err = j.Ack("acked")
	require.NoError(t, err)
	b, _ := json.Marshal(map[string]any{"id": "marked", "expires": exp})
	_, err = j.Append(journal.Record{Type: recCommandReported, Data: b})
	require.NoError(t, err)
	require.NoError(t, j.Close())

	j, recs, _, err := journal.Open(journal.Options{Dir: dir, DeviceID: "k1"})
	require.NoError(t, err)
	ids, err := HoldInterrupted(j, recs, time.Now())
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, ids)
	var got []string
	for _, r := range j.Results() {
		var res wire.CommandResult
		require.NoError(t, json.Unmarshal(r.Payload, &res))
		got = append(got, r.ID+":"+string(res.Status))
	}
	require.ElementsMatch(t, []string{"held:done", "a:uncertain"}, got)
	require.NoError(t, j.Close())

	j, recs, _, err = journal.Open(journal.Options{Dir: dir, DeviceID: "k1"})
	require.NoError(t, err)
	defer j.Close()
	ids, err = HoldInterrupted(j, recs, time.Now())
	require.NoError(t, err)
	require.Empty(t, ids, "reported once")
	e := &Engine{now: time.Now}
	for _, r := range recs {
		if r.Type == recCommandReported {
			require.True(t, e.Keep(r), "the mark is kept while the command's id is")
		}
	}
}
