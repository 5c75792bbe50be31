package link

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/journal"
)

// Held results: due again every resendAfter and at once after a
// reconnection, forgotten when acknowledged, the oldest given up beyond
// maxHeldResults, none held beyond maxHoldResult (one due at once after a
// reconnection is sent a last time); a clock set back delays a resend by
// resendAfter at most.
func TestHeldResults(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	const after = 30 * time.Second
	var h heldResults
	require.Empty(t, h.hold("a", []byte("A"), t0))
	again, _, wait := h.due(t0, after)
	require.Empty(t, again)
	require.Equal(t, after, wait)
	again, _, wait = h.due(t0.Add(after), after)
	require.Equal(t, [][]byte{[]byte("A")}, again)
	require.Equal(t, after, wait)

	h.reconnected()
	again, _, _ = h.due(t0.Add(after+time.Second), after)
	require.Equal(t, [][]byte{[]byte("A")}, again, "at once after a reconnection")

	// The clock set back a day: due again resendAfter later, not a day.
	back := t0.Add(-24 * time.Hour)
	again, _, wait = h.due(back, after)
	require.Empty(t, again)
	require.Equal(t, after, wait)
	again, _, _ = h.due(back.Add(after), after)
	require.Len(t, again, 1)

	require.True(t, h.acked("a"))
	require.False(t, h.acked("a"), "once")
	again, _, wait = h.due(back.Add(2*after), after)
	require.Empty(t, again)
	require.Zero(t, wait, "nothing held: nothing to wait for")

	for i := range maxHeldResults {
		require.Empty(t, h.hold(fmt.Sprint("r", i), nil, t0.Add(time.Duration(i)*time.Second)))
	}
	require.Equal(t, "r0", h.hold("one-more", nil, t0.Add(time.Hour/2)), "the oldest given up")
	require.Equal(t, maxHeldResults, h.count())
	_, expired, _ := h.due(t0.Add(maxHoldResult+maxHeldResults*time.Second), after)
	require.Equal(t, 1, h.count(), "held an hour at most")
	require.Len(t, expired, maxHeldResults-1)

	// Sent, then an outage longer than the hour: sent once more on the
	// new connection, then given up.
	var o heldResults
	require.Empty(t, o.hold("b", []byte("B"), t0))
	o.reconnected()
	again, expired, wait = o.due(t0.Add(2*maxHoldResult), after)
	require.Equal(t, [][]byte{[]byte("B")}, again, "a last sending after the outage")
	require.Equal(t, []string{"b"}, expired)
	require.Zero(t, wait)
	require.Zero(t, o.count())
}

// Results held by a previous run (journal.Results, oldest first) are due
// at the first look once connected, and their hour starts then, not when
// they were journaled: a kluisd offline for three nights still sends
// them. Beyond maxHeldResults the oldest are given up. A command
// delivered twice keeps its first result.
func TestHeldResultsLoaded(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	const after = 30 * time.Second
	var rs []journal.Result
	for i := range maxHeldResults + 2 {
		rs = append(rs, journal.Result{ID: fmt.Sprint("r", i), Payload: []byte(fmt.Sprint(i)), At: t0.Add(-72 * time.Hour)})
	}
	var h heldResults
	require.Equal(t, []string{"r0", "r1"}, h.load(rs), "the oldest given up")
	require.Equal(t, maxHeldResults, h.count())
	now := t0
	again, expired, wait := h.due(now, after)
	require.Len(t, again, maxHeldResults, "every loaded result sent at once")
	require.Empty(t, expired, "three nights offline do not count")
	require.Equal(t, after, wait)
	again, expired, _ = h.due(now.Add(maxHoldResult), after)
	require.Len(t, again, maxHeldResults)
	require.Empty(t, expired)
	_, expired, _ = h.due(now.Add(maxHoldResult+time.Second), after)
	require.Len(t, expired, maxHeldResults, "an hour after they were first sent")
	require.Zero(t, h.count())

	require.Empty(t, h.hold("x", []byte("first"), now))
	require.True(t, h.has("x"))
	h.again("x")
	again, _, _ = h.due(now.Add(time.Second), after)
	require.Equal(t, [][]byte{[]byte("first")}, again, "due again at once")
}
