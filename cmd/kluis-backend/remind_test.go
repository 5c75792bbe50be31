package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
)

// A replica skips the reminders while another one is sending them (so no
// holder is reminded twice at once), and releases the lock after its pass.
func TestRemindOneReplicaAtATime(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// Loaded nine days ago: the deadline is within the reminder lead of now.
	clock := storetest.NewClock(time.Now().UTC().Add(-9 * 24 * time.Hour))
	st := storetest.NewWithOptions(t, store.Options{Clock: clock.Now})
	svc, err := service.New(service.Options{Store: st, Clock: clock.Now, Logger: quiet})
	require.NoError(t, err)
	_, err = svc.CreateSite(ctx, "system", store.NewSite{ID: "kortrijk", Name: "Stadhuis"})
	require.NoError(t, err)
	_, err = svc.CreateDevice(ctx, "system", store.NewDevice{ID: "k1", SiteID: "kortrijk", Kind: store.Locker,
		Compartments: []store.NewCompartment{{Channel: 0, Size: store.SizeM, HeightCM: 100}}})
	require.NoError(t, err)
	d, err := svc.RegisterDocument(ctx, "user:1", store.NewDocument{Kind: store.EID, Number: "591-1234567-89", FirstName: "Jan",
		LastName: "Peeters", BirthDate: time.Date(1980, 1, 2, 0, 0, 0, 0, time.UTC), Language: "nl", Email: "jan@example.be", SiteID: "kortrijk"})
	require.NoError(t, err)
	_, err = svc.Reserve(ctx, "user:1", d.ID, service.ReserveOptions{})
	require.NoError(t, err)
	_, err = svc.Load(ctx, "user:1", d.ID)
	require.NoError(t, err)
	_, err = svc.MarkNotified(ctx, "system", d.ID)
	require.NoError(t, err)
	clock.Set(time.Now().UTC())
	reminders := func() int {
		hist, err := svc.History(ctx, d.ID)
		require.NoError(t, err)
		n := 0
		for _, h := range hist {
			if h.Action == "renotify" {
				n++
			}
		}
		return n
	}

	lockHeld := func() bool {
		var held bool
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND ((classid::bigint << 32) | objid::bigint) = $1)`, reminderLockKey).Scan(&held))
		return held
	}

	// Another replica holds the reminder lock: this one skips.
	other, err := st.Pool().Acquire(ctx)
	require.NoError(t, err)
	var got bool
	require.NoError(t, other.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", reminderLockKey).Scan(&got))
	require.True(t, got)
	require.True(t, lockHeld())
	remind(ctx, st, svc, quiet)
	require.Equal(t, 0, reminders())
	_, err = other.Exec(ctx, "SELECT pg_advisory_unlock($1)", reminderLockKey)
	require.NoError(t, err)
	other.Release()

	remind(ctx, st, svc, quiet)
	require.Equal(t, 1, reminders(), "the due reminder went out")
	require.False(t, lockHeld(), "the lock is released after the pass")
}
