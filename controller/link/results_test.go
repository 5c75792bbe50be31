package link

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Held results: due again every resendAfter and at once after a
// reconnection, forgotten when acknowledged, the oldest given up beyond
// maxHeldResults, none held beyond maxHoldResult; a clock set back delays
// a resend by resendAfter at most.
func TestHeldResults(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	const after = 30 * time.Second
	var h heldResults
	require.Empty(t, h.hold("a", []byte("A"), t0))
	again, wait := h.due(t0, after)
	require.Empty(t, again)
	require.Equal(t, after, wait)
	again, wait = h.due(t0.Add(after), after)
	require.Equal(t, [][]byte{[]byte("A")}, again)
	require.Equal(t, after, wait)

	h.reconnected()
	again, _ = h.due(t0.Add(after+time.Second), after)
	require.Equal(t, [][]byte{[]byte("A")}, again, "at once after a reconnection")

	// The clock set back a day: due again resendAfter later, not a day.
	back := t0.Add(-24 * time.Hour)
	again, wait = h.due(back, after)
	require.Empty(t, again)
	require.Equal(t, after, wait)
	again, _ = h.due(back.Add(after), after)
	require.Len(t, again, 1)

	require.True(t, h.acked("a"))
	require.False(t, h.acked("a"), "once")
	again, wait = h.due(back.Add(2*after), after)
	require.Empty(t, again)
	require.Zero(t, wait, "nothing held: nothing to wait for")

	for i := range maxHeldResults {
		require.Empty(t, h.hold(fmt.Sprint("r", i), nil, t0.Add(time.Duration(i)*time.Second)))
	}
	require.Equal(t, "r0", h.hold("one-more", nil, t0.Add(time.Hour/2)), "the oldest given up")
	require.Equal(t, maxHeldResults, h.count())
	h.due(t0.Add(maxHoldResult+maxHeldResults*time.Second), after)
	require.Equal(t, 1, h.count(), "held an hour at most")
}
