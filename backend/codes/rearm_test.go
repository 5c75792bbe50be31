package codes

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/controller/pickupcode"
)

func (f *fixture) rearm(doc, dev string, until time.Time) bool {
	f.t.Helper()
	var ok bool
	require.NoError(f.t, pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		var err error
		ok, err = f.svc.Rearm(context.Background(), tx, Rearm{DocumentID: doc, DeviceID: dev, Until: until})
		return err
	}))
	return ok
}

func (f *fixture) bundleHas(dev, doc string) (pickupcode.OfflineEntry, bool) {
	f.t.Helper()
	b, err := f.svc.OfflineBundle(context.Background(), dev)
	require.NoError(f.t, err)
	for _, e := range b {
		if e.DocumentID == doc {
			return e, true
		}
	}
	return pickupcode.OfflineEntry{}, false
}

// A citizen who opened the door and left the document may use the same
// code again within the grace period, once; afterwards it counts as used.
func TestRearmAfterNotCollectedGivesAGracePeriod(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	doc, c, cr := f.issue("eid", "l1", 5)

	_, err := f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.NoError(t, err)
	_, ok := f.bundleHas("l1", doc)
	require.False(t, ok, "a used code leaves the offline cache")
	require.False(t, f.rearm(doc, "l2", f.clock.Now().Add(10*time.Minute)), "another device cannot give the code back")
	require.False(t, f.rearm(doc, "l1", f.clock.Now().Add(-time.Second)), "a grace period already over gives nothing back")

	grace := f.clock.Now().Add(10 * time.Minute)
	require.True(t, f.rearm(doc, "l1", grace))
	require.False(t, f.rearm(doc, "l1", grace), "an open code is not re-armed twice")
	e, ok := f.bundleHas("l1", doc)
	require.True(t, ok, "a re-armed code is back in the offline cache")
	require.True(t, e.ExpiresAt.Equal(grace), "offline it ends with the grace period: %s", e.ExpiresAt)

	// The PIN (with the date of birth) works again, once.
	f.clock.Add(5 * time.Minute)
	res, err := f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "1990-02-28"})
	require.NoError(t, err)
	require.Equal(t, c.ID, res.CompartmentID)
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrAlreadyCollected, "still single use within the grace period")

	// Left again: a new grace period from the second report.
	grace2 := f.clock.Now().Add(10 * time.Minute)
	require.True(t, f.rearm(doc, "l1", grace2))
	f.clock.Set(grace2)
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrAlreadyCollected, "after the grace period the code is spent")
	_, err = f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "1990-02-28"})
	require.ErrorIs(t, err, pickupcode.ErrAlreadyCollected)
	_, ok = f.bundleHas("l1", doc)
	require.False(t, ok, "nor offline")

	var actions []string
	_, err = audit.Chain(context.Background(), f.pool) // the records reach audit_log through the chain
	require.NoError(t, err)
	rows, err := f.pool.Query(context.Background(), `SELECT action FROM audit_log WHERE action LIKE 'code.rearm%' ORDER BY seq`)
	require.NoError(t, err)
	actions, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"code.rearmed", "code.rearmed"}, actions)
}

// A door that never opened gives the code back as it was.
func TestRearmAfterDoorNotOpened(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	doc, _, cr := f.issue("driving_licence", "l1", 6)
	_, err := f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "2001-01-01"})
	require.NoError(t, err)
	f.clock.Add(time.Minute)
	ok, err := f.svc.Rearm(context.Background(), nil, Rearm{}) // invalid before any database work
	require.ErrorIs(t, err, pickupcode.ErrInvalid)
	require.False(t, ok)
	require.NoError(t, pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		ok, err = f.svc.Rearm(context.Background(), tx, Rearm{DocumentID: doc, DeviceID: "l1", UsedSince: f.clock.Now()})
		return err
	}))
	require.False(t, ok, "a code used before UsedSince is another pickup's")
	require.True(t, f.rearm(doc, "l1", time.Time{}))
	f.clock.Add(48 * time.Hour)
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.NoError(t, err, "valid until its expiry")
}

// Re-issued, collected or unused codes are never brought back.
func TestRearmRefusesDeadCodes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	soon := func() time.Time { return f.clock.Now().Add(10 * time.Minute) }

	unused, _, _ := f.issue("eid", "l1", 7)
	require.False(t, f.rearm(unused, "l1", soon()), "nothing to give back")

	// Re-issued after use: the old code stays dead, the new one is open.
	doc, c, old := f.issue("eid", "l1", 8)
	_, err := f.verify(Attempt{DeviceID: "l1", QRToken: old.QRToken})
	require.NoError(t, err)
	require.NoError(t, pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		_, err := f.svc.Issue(ctx, tx, IssueRequest{DocumentID: doc, DocumentKind: "eid", BirthDate: "1990-02-28",
			DeviceID: "l1", Compartment: c, ExpiresAt: f.clock.Now().Add(24 * time.Hour)})
		return err
	}))
	require.False(t, f.rearm(doc, "l1", soon()), "the newest code is not a used one")
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: old.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrAlreadyCollected)

	// Collected (the device's pickup_completed came first): dead.
	gone, _, cr := f.issue("eid", "l1", 9)
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.NoError(t, err)
	_, err = f.pool.Exec(ctx, `UPDATE documents SET state = 'collected', closed_at = now() WHERE id = $1`, gone)
	require.NoError(t, err)
	require.False(t, f.rearm(gone, "l1", soon()))

	// Revoked (retrieved by staff) after use: dead.
	back, _, cr2 := f.issue("eid", "l1", 10)
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr2.QRToken})
	require.NoError(t, err)
	_, err = f.pool.Exec(ctx, `UPDATE codes SET revoked_at = now() WHERE document_id = $1`, back)
	require.NoError(t, err)
	require.False(t, f.rearm(back, "l1", soon()))

	err = pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		_, err := f.svc.Rearm(ctx, tx, Rearm{DocumentID: "x", DeviceID: "l1"})
		return err
	})
	require.ErrorIs(t, err, pickupcode.ErrInvalid)
}

// A used code whose PIN meanwhile belongs to another open code of the
// device stays used: two open codes never share a PIN.
func TestRearmRefusesATakenPIN(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	doc, _, cr := f.issue("eid", "l1", 11)
	_, err := f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.NoError(t, err)
	other, _, _ := f.issue("eid", "l1", 12)
	// The PIN draw for the other document happened to give the same PIN.
	_, err = f.pool.Exec(ctx, `UPDATE codes SET pin_digest = (SELECT pin_digest FROM codes WHERE document_id = $1)
		WHERE document_id = $2`, doc, other)
	require.NoError(t, err)

	require.False(t, f.rearm(doc, "l1", f.clock.Now().Add(10*time.Minute)))
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrAlreadyCollected)
	var n int
	_, err = audit.Chain(ctx, f.pool)
	require.NoError(t, err)
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'code.rearm_refused'
		AND details->>'reason' = 'pin_taken'`).Scan(&n))
	require.Equal(t, 1, n)
}
