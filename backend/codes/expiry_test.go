package codes

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kluis/controller/pickupcode"
)

// countedAttempts returns how many attempts at dev counted against its PIN
// limits.
func (f *fixture) countedAttempts(dev string) int {
	f.t.Helper()
	var n int
	require.NoError(f.t, f.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM code_attempts WHERE device_id = $1 AND counted`, dev).Scan(&n))
	return n
}

func (f *fixture) revoke(doc string) {
	f.t.Helper()
	require.NoError(f.t, pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		_, err := f.svc.Revoke(context.Background(), tx, doc)
		return err
	}))
}

// The expire transition revokes the codes of a document past its deadline:
// its holder is told "expired" (QR and PIN), never "wrong code", and the
// attempts do not count towards the device's PIN limits, however often
// they are repeated.
func TestCodeRevokedByExpiryAnswersExpired(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	doc, _, cr := f.issue("eid", "l1", 1)
	f.clock.Add(7*24*time.Hour + time.Minute)
	f.revoke(doc) // what service.Expire does

	_, err := f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrExpired)
	for range 2 * pickupcode.DeviceMaxFailures {
		_, err = f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "1990-02-28"})
		require.ErrorIs(t, err, pickupcode.ErrExpired)
	}
	_, err = f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "2000-01-01"})
	require.ErrorIs(t, err, pickupcode.ErrExpired, "an expired code opens nothing: the date is not looked at")
	require.Zero(t, f.countedAttempts("l1"), "expired answers are not counted")
	until, err := f.svc.LockedUntil(context.Background(), "l1")
	require.NoError(t, err)
	require.True(t, until.IsZero(), "no lockout for the holder of an expired code")

	// Revoked at the very moment of its expiry: still expired.
	doc2, _, cr2 := f.issue("driving_licence", "l1", 2)
	f.clock.Set(f.clock.Now().Add(7 * 24 * time.Hour).Truncate(time.Second))
	f.revoke(doc2)
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr2.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrExpired)
	_, err = f.verify(Attempt{DeviceID: "l1", PIN: cr2.PIN, BirthDate: "1990-02-28"})
	require.ErrorIs(t, err, pickupcode.ErrExpired)
	require.Zero(t, f.countedAttempts("l1"))
}

// A code revoked while it was still valid (re-issued, cancelled, retrieved
// early, stolen device) stays "wrong code", counted, after its expiry too:
// the kiosk never tells that a guess matched a replaced code.
func TestCodeRevokedBeforeExpiryStaysWrongAfterIt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	doc, c, old := f.issue("driving_licence", "l1", 3)
	var fresh Credentials
	require.NoError(t, pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error { // re-issue, same deadline
		var err error
		fresh, err = f.svc.Issue(ctx, tx, IssueRequest{DocumentID: doc, DocumentKind: "driving_licence",
			DeviceID: "l1", Compartment: c, ExpiresAt: old.ExpiresAt})
		return err
	}))
	retrieved, _, early := f.issue("driving_licence", "l1", 4)
	f.revoke(retrieved) // back to the counter before its deadline

	f.clock.Add(7*24*time.Hour + time.Minute)
	f.revoke(doc) // the re-issued document expires

	_, err := f.verify(Attempt{DeviceID: "l1", QRToken: fresh.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrExpired, "the newest code expired")
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: old.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode, "the replaced code stays wrong")
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: early.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode)
	_, err = f.verify(Attempt{DeviceID: "l1", PIN: early.PIN, BirthDate: "1990-02-28"})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode)
	require.Equal(t, 1, f.countedAttempts("l1"), "the PIN of a code revoked while valid counts")
	if old.PIN != fresh.PIN {
		_, err = f.verify(Attempt{DeviceID: "l1", PIN: old.PIN, BirthDate: "1990-02-28"})
		require.ErrorIs(t, err, pickupcode.ErrWrongCode)
		require.Equal(t, 2, f.countedAttempts("l1"))
	}
}
