package journal

import (
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

func resultIDs(rs []Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// Held command results survive a reopen (the replay a restart does) and a
// compaction, oldest first, until an ack names the command (journaled, so
// a reopen does not bring it back) or ForgetResult gives it up (nothing
// written: a reopen before a compaction brings it back, a compaction
// drops it). The ack of a result touches no event, and an event's
// none of the results.
func TestResultsHeldUntilAcked(t *testing.T) {
	dir := t.TempDir()
	j, _, _ := open(t, dir)
	require.Error(t, j.HoldResult("", []byte(`{}`)))
	require.Error(t, j.HoldResult("c0", []byte(`not json`)))
	for _, id := range []string{"c1", "c2", "c3", "c4"} {
		require.NoError(t, j.HoldResult(id, []byte(`{"id":"`+id+`","status":"done"}`)))
	}
	ev, err := j.AppendEvent(Event{Kind: "door_opened"})
	require.NoError(t, err)
	journaled, err := j.Ack("c2")
	require.NoError(t, err)
	require.True(t, journaled, "a result's ack is journaled")
	journaled, err = j.Ack("c2")
	require.NoError(t, err)
	require.False(t, journaled, "once")
	j.ForgetResult("c4")
	require.Equal(t, []string{"c1", "c3"}, resultIDs(j.Results()))
	require.Equal(t, 1, j.OutboxLen(), "the event is still unacknowledged")
	require.NoError(t, j.Close())

	// A restart: the ack holds, the forgotten one comes back (nothing was
	// written for it).
	j, _, _ = open(t, dir)
	rs := j.Results()
	require.Equal(t, []string{"c1", "c3", "c4"}, resultIDs(rs))
	require.JSONEq(t, `{"id":"c1","status":"done"}`, string(rs[0].Payload))
	require.False(t, rs[0].At.IsZero())
	require.Equal(t, 1, j.OutboxLen())

	// A compaction keeps what is held and drops what is forgotten; an
	// event's ack leaves the results alone.
	j.ForgetResult("c4")
	require.NoError(t, j.HoldResult("c1", []byte(`{"id":"c1","status":"duplicate"}`)))
	require.NoError(t, j.Compact())
	_, err = j.Ack(ev.ID)
	require.NoError(t, err)
	require.NoError(t, j.Close())
	j, recs, _ := open(t, dir)
	rs = j.Results()
	require.Equal(t, []string{"c3", "c1"}, resultIDs(rs), "the latest result of an id, in its place")
	require.JSONEq(t, `{"id":"c1","status":"duplicate"}`, string(rs[1].Payload))
	n := 0
	for _, r := range recs {
		if r.Type == TypeResult {
			n++
		}
	}
	require.Equal(t, 2, n, "the compaction kept one record per held result")
	require.Zero(t, j.OutboxLen())
	for _, id := range []string{"c1", "c3"} {
		_, err := j.Ack(id)
		require.NoError(t, err)
	}
	require.NoError(t, j.Compact())
	require.NoError(t, j.Close())
	j, _, _ = open(t, dir)
	require.Empty(t, j.Results())
}

// On a full disk a result is refused once half of the reserve's room is
// used (as acks are), ErrNoSpace: the rest is for the outcomes and
// alarms of the operations under way; until then it is journaled in the
// reserve's room and survives a reopen.
func TestResultsOnAFullDisk(t *testing.T) {
	dir := t.TempDir()
	var full atomic.Bool
	o := fullDiskOptions(dir, &full)
	j, _, _, err := Open(o)
	require.NoError(t, err)
	full.Store(true)
	require.NoError(t, j.HoldResult("c1", []byte(`{"id":"c1","status":"failed"}`)), "written in the reserve's room")
	st, _ := j.Space()
	require.True(t, st.Low)
	for i := 0; ; i++ {
		require.Less(t, i, 1000, "results never refused")
		if _, err := j.AppendEvent(Event{Kind: "alarm"}); err != nil {
			t.Fatal(err)
		}
		if err := j.HoldResult("c2", []byte(`{"id":"c2","status":"failed"}`)); err != nil {
			require.ErrorIs(t, err, ErrNoSpace)
			break
		}
	}
	_, err = j.AppendEvent(Event{Kind: "pickup_completed"})
	require.NoError(t, err, "an outcome still has room")
	require.NoError(t, j.Close())
	j, _, _, err = Open(o)
	require.NoError(t, err)
	defer j.Close()
	require.Equal(t, []string{"c1", "c2"}, resultIDs(j.Results()))
}
