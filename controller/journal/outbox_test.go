package journal

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func ids(es []Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

// The outbox index: urgent events in a lane of their own, each lane oldest
// first, acks taking events out, and the same index after a reopen and a
// compaction (it is made from the file, never written).
func TestOutboxLanesAcksReopenCompact(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, DeviceID: "dev1", Urgent: func(k string) bool { return k == "alarm" }}
	j, _, _, err := Open(o)
	require.NoError(t, err)
	kinds := []string{"door_opened", "alarm", "door_closed", "loaded", "alarm", "retrieved"}
	var all []string
	for i, k := range kinds {
		e, err := j.AppendEvent(Event{ID: string(rune('a' + i)), Kind: k})
		require.NoError(t, err)
		all = append(all, e.ID)
	}
	require.Equal(t, all, ids(j.Outbox()), "Outbox stays in file order")
	require.Equal(t, []string{"b", "e"}, ids(j.OutboxNext(true, 10, nil)))
	require.Equal(t, []string{"a", "c", "d", "f"}, ids(j.OutboxNext(false, 10, nil)))
	require.Equal(t, []string{"c", "d"}, ids(j.OutboxNext(false, 2, func(id string) bool { return id == "a" })), "skipped ones do not count")
	require.Equal(t, 6, j.OutboxLen())
	require.Equal(t, 2, j.OutboxUrgent())

	for _, id := range []string{"b", "c", "c", "zz"} {
		_, err := j.Ack(id)
		require.NoError(t, err)
	}
	require.Equal(t, []string{"a", "d", "e", "f"}, ids(j.Outbox()))
	require.Equal(t, []string{"e"}, ids(j.OutboxNext(true, 10, nil)))
	require.Equal(t, 4, j.OutboxLen())
	require.Equal(t, 1, j.OutboxUrgent())
	require.NoError(t, j.Close())

	j2, _, _, err := Open(o)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "d", "e", "f"}, ids(j2.Outbox()), "the index is made again from the file")
	require.Equal(t, []string{"e"}, ids(j2.OutboxNext(true, 10, nil)))
	require.NoError(t, j2.Compact())
	require.Equal(t, []string{"a", "d", "f"}, ids(j2.OutboxNext(false, 10, nil)), "and after a compaction")
	_, err = j2.Ack("e")
	require.NoError(t, err)
	require.Empty(t, j2.OutboxNext(true, 10, nil))
	require.Equal(t, 3, j2.OutboxLen())
	require.NoError(t, j2.Close())
}

// An ack costs the same with a long backlog as with a short one: it takes
// its event out by id. The outbox of 10,000 events is read window by
// window without walking the acknowledged ones.
func BenchmarkAckLongOutbox(b *testing.B) {
	j, _, _, err := Open(Options{Dir: b.TempDir(), DeviceID: "dev1", Reserve: -1})
	require.NoError(b, err)
	defer j.Close()
	for range 10000 {
		_, err := j.AppendEvent(Event{Kind: "door_opened"})
		require.NoError(b, err)
	}
	b.ResetTimer()
	for range b.N {
		es := j.OutboxNext(false, 1, nil)
		if len(es) == 0 {
			b.StopTimer()
			for range 10000 {
				_, _ = j.AppendEvent(Event{Kind: "door_opened"})
			}
			b.StartTimer()
			continue
		}
		_, _ = j.Ack(es[0].ID)
	}
}
