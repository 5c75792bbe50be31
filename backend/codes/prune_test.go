package codes

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
)

// TestPruneAttempts: PruneAttempts deletes the attempts made before the
// cutoff, oldest first and at most limit at a time; later ones stay, and
// still count against the device's PIN limits; every attempt's audit
// record stays and the chain verifies.
func TestPruneAttempts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	_, _, cr := f.issue("driving_licence", "l1", 1)
	for range 3 { // long ago
		_, err := f.verify(Attempt{DeviceID: "l1", PIN: wrongPIN(cr.PIN), BirthDate: "1990-02-28"})
		require.Error(t, err)
	}
	cutoff := f.clock.Now().Add(time.Hour)
	f.clock.Set(cutoff.Add(time.Hour))
	_, err := f.verify(Attempt{DeviceID: "l1", PIN: wrongPIN(cr.PIN), BirthDate: "1990-02-28"})
	require.Error(t, err)
	_, err = audit.Chain(ctx, f.pool)
	require.NoError(t, err)
	_, attempts, records := f.counts("code.denied")
	require.Equal(t, 4, attempts)
	require.Equal(t, 4, records)

	n, err := PruneAttempts(ctx, f.pool, cutoff, 2)
	require.NoError(t, err)
	require.Equal(t, 2, n, "at most limit")
	n, err = PruneAttempts(ctx, f.pool, cutoff, 2)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = PruneAttempts(ctx, f.pool, cutoff, 2)
	require.NoError(t, err)
	require.Zero(t, n)
	_, attempts, records = f.counts("code.denied")
	require.Equal(t, 1, attempts, "the attempt after the cutoff stays")
	require.Equal(t, 4, records, "every audit record stays")
	require.Equal(t, 1, f.countedAttempts("l1"))
	f.chainIntact()
}
