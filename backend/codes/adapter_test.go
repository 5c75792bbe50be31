package codes

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kluis/backend/store"
	"kluis/controller/pickupcode"
)

func TestIssuerAdapter(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id, c := f.document("residence_card", "l1", 4)
	deadline := t0.Add(10 * 24 * time.Hour)
	birth := time.Date(1990, 2, 28, 0, 0, 0, 0, time.UTC)
	doc := store.Document{ID: id, Kind: store.ResidenceCard, BirthDate: &birth, DeviceID: "l1", Deadline: &deadline}
	comp := store.Compartment{ID: c.ID, DeviceID: "l1", Number: c.Number, Board: c.Board, Channel: c.Channel}
	var secret any
	require.NoError(t, pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		var err error
		secret, err = Issuer{Service: f.svc}.Issue(context.Background(), tx, doc, comp, time.Time{})
		return err
	}))
	cr, ok := secret.(Credentials)
	require.True(t, ok)
	require.True(t, cr.NeedsDOB)
	require.Equal(t, deadline, cr.ExpiresAt)
	res, err := f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "1990-02-28"})
	require.NoError(t, err)
	require.Equal(t, 4, res.CompartmentNumber)

	doc.Deadline = nil
	err = pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		_, err := Issuer{Service: f.svc}.Issue(context.Background(), tx, doc, comp, time.Time{})
		return err
	})
	require.ErrorIs(t, err, pickupcode.ErrInvalid)
	require.NoError(t, pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		return Issuer{Service: f.svc}.Revoke(context.Background(), tx, id)
	}))
}
