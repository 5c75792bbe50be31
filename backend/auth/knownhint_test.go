package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/store/storetest"
)

// The memory of known pairs, by which a login skips the line before its
// database work, is learnt from successes only: on the replica at once,
// on another one (or after a restart) by reading the table again every
// half minute. Failures never make a pair known, and it is forgotten
// after the knownFor period, as the limits forget it.
func TestKnownHintComesFromSuccessesOnly(t *testing.T) {
	st := storetest.New(t)
	ctx := context.Background()
	a, b := auth.NewLoginLimits(st.Pool()), auth.NewLoginLimits(st.Pool())
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	const office, guesser = "198.51.100.20", "203.0.113.9"

	require.False(t, b.KnownHint(ctx, "an.balie", office, now), "nobody logged in yet (b read the table)")
	for i := range 3 {
		require.Equal(t, "failed", try(t, a, "an.balie", guesser, now.Add(time.Duration(i)*time.Second), false))
	}
	require.Equal(t, "ok", try(t, a, "An.Balie", office, now.Add(10*time.Second), true))
	require.True(t, a.KnownHint(ctx, "an.balie", office, now.Add(11*time.Second)), "learnt at once where it succeeded")
	require.False(t, a.KnownHint(ctx, "an.balie", guesser, now.Add(11*time.Second)), "failures make nothing known")
	require.False(t, a.KnownHint(ctx, "bo.balie", office, now.Add(11*time.Second)), "per username")

	require.False(t, b.KnownHint(ctx, "an.balie", office, now.Add(20*time.Second)), "another replica: not before it reads again")
	require.True(t, b.KnownHint(ctx, "an.balie", office, now.Add(time.Minute)), "read again after half a minute")
	require.True(t, auth.NewLoginLimits(st.Pool()).KnownHint(ctx, "AN.BALIE", office, now.Add(time.Minute)), "a restarted backend reads it")
	require.False(t, b.KnownHint(ctx, "an.balie", guesser, now.Add(time.Minute)))

	later := now.Add(31 * 24 * time.Hour)
	require.False(t, a.KnownHint(ctx, "an.balie", office, later), "forgotten after 30 days")
	require.False(t, b.KnownHint(ctx, "an.balie", office, later))
}
