package codes

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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

// TestPurgeDocumentsErasesTheBirthDateOfDeadCodes: the retention purge of
// a document erases what its dead codes derived from the holder's date of
// birth (the HMAC and the offline verifier of PIN and date of birth);
// a live code, of a document not purged, keeps both and still verifies.
func TestPurgeDocumentsErasesTheBirthDateOfDeadCodes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	gone, _, _ := f.issue("eid", "l1", 1)
	live, _, cr := f.issue("eid", "l1", 2)
	require.NoError(t, pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		if _, err := f.svc.Revoke(ctx, tx, gone); err != nil {
			return err
		}
		// The live code's document is named too: its code is not dead.
		return f.svc.PurgeDocuments(ctx, tx, []string{gone, live})
	}))
	row := func(doc string) (needsDOB, hasDOB bool, verifier int, purged bool) {
		require.NoError(t, f.pool.QueryRow(ctx, `SELECT needs_dob, dob_digest IS NOT NULL, length(offline_verifier), purged_at IS NOT NULL
			FROM codes WHERE document_id = $1`, doc).Scan(&needsDOB, &hasDOB, &verifier, &purged))
		return
	}
	needs, has, verifier, purged := row(gone)
	require.True(t, needs, "an eID's code needs the date of birth")
	require.False(t, has, "its HMAC is gone")
	require.Zero(t, verifier, "its offline verifier is gone")
	require.True(t, purged)
	_, has, verifier, purged = row(live)
	require.True(t, has)
	require.NotZero(t, verifier)
	require.False(t, purged)
	_, err := f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.NoError(t, err, "the live code still opens")
}
