package daemon

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/controller/journal"
	"kluis/deploy/dev/testenv"
)

func TestShouldCompact(t *testing.T) {
	for _, tc := range []struct {
		size, above, last int64
		want              bool
	}{
		{100, 256, 0, false},   // small
		{300, 256, 0, true},    // above, never compacted
		{300, 256, 100, true},  // above and more than twice the last
		{300, 256, 200, false}, // the live records alone are large: wait until it doubled
		{401, 256, 200, true},
	} {
		require.Equal(t, tc.want, shouldCompact(tc.size, tc.above, tc.last), "%+v", tc)
	}
}

// A journal above the threshold when kluisd starts (left by a version
// with a larger threshold) is compacted as soon as the engine is ready, not
// a minute later; its acknowledged events are gone, an unacknowledged one
// stays in the outbox.
func TestCompactLoopCompactsOnceReady(t *testing.T) {
	dir := t.TempDir()
	j, _, _, err := journal.Open(journal.Options{Dir: dir, DeviceID: "compact"})
	require.NoError(t, err)
	defer j.Close()
	for j.Size() < 64<<10 {
		e, err := j.AppendEvent(journal.Event{Kind: "pickup_completed", Payload: []byte(`{"addr":{"board":0,"channel":7}}`)})
		require.NoError(t, err)
		_, err = j.Ack(e.ID)
		require.NoError(t, err)
	}
	_, err = j.AppendEvent(journal.Event{Kind: "door_closed", Payload: []byte(`{}`)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); compactLoop(ctx, j, 16<<10, ready, slog.New(slog.DiscardHandler)) }()
	require.Greater(t, j.Size(), int64(16<<10))
	close(ready)
	testenv.Eventually(t, "the journal compacted", func() bool { return j.Size() < 16<<10 })
	cancel()
	<-done
	require.Equal(t, 1, j.OutboxLen())
}
