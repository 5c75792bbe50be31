package notify

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
	"kluis/deploy/dev/testenv"
)

// A replica skips the reminders while another one is sending them (so no
// holder is reminded twice at once), and releases the lock after its pass.
// Whether a reminder is due is decided on the injected clock.
func TestRemindOneReplicaAtATime(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	loaded := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	clock := storetest.NewClock(loaded)
	st := storetest.NewWithOptions(t, store.Options{Clock: clock.Now})
	svc, err := service.New(service.Options{Store: st, Clock: clock.Now, Logger: quiet})
	require.NoError(t, err)
	_, err = svc.CreateSite(ctx, "system", store.NewSite{ID: "kortrijk", Name: "Stadhuis"})
	require.NoError(t, err)
	_, err = svc.CreateDevice(ctx, "system", store.NewDevice{ID: "k1", SiteID: "kortrijk", Kind: store.Locker,
		Compartments: []store.NewCompartment{{Channel: 0, Size: store.SizeM, HeightCM: 100}}})
	require.NoError(t, err)
	d, err := svc.RegisterDocument(ctx, "user:1", store.NewDocument{Kind: store.EID, Number: "591-1234567-89", FirstName: "Jan",
		LastName: "Peeters", BirthDate: new(time.Date(1980, 1, 2, 0, 0, 0, 0, time.UTC)), Language: "nl", Email: "jan@example.be", SiteID: "kortrijk"})
	require.NoError(t, err)
	_, err = svc.Reserve(ctx, "user:1", d.ID, service.ReserveOptions{})
	require.NoError(t, err)
	_, err = svc.Load(ctx, "user:1", d.ID)
	require.NoError(t, err)
	_, err = svc.MarkNotified(ctx, "system", d.ID)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	r, err := NewReminders(RemindersOptions{Pool: st.Pool(), Service: svc, Clock: clock.Now, Logger: quiet, Registerer: reg})
	require.NoError(t, err)
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
			AND ((classid::bigint << 32) | objid::bigint) = $1)`, ReminderLockKey).Scan(&held))
		return held
	}

	// Loaded a day ago: nothing is due yet (the deadline is ten days after loading).
	clock.Set(loaded.Add(24 * time.Hour))
	require.True(t, r.Pass(ctx))
	require.Equal(t, 0, reminders(), "not yet within the reminder lead")
	// Nine days after loading the deadline is within the lead.
	clock.Set(loaded.Add(9 * 24 * time.Hour))

	// Another replica holds the reminder lock: this one skips.
	other, err := st.Pool().Acquire(ctx)
	require.NoError(t, err)
	var got bool
	require.NoError(t, other.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", ReminderLockKey).Scan(&got))
	require.True(t, got)
	require.True(t, lockHeld())
	require.False(t, r.Pass(ctx))
	require.Equal(t, 0, reminders())
	_, err = other.Exec(ctx, "SELECT pg_advisory_unlock($1)", ReminderLockKey)
	require.NoError(t, err)
	other.Release()

	require.True(t, r.Pass(ctx))
	require.Equal(t, 1, reminders(), "the due reminder went out")
	require.False(t, lockHeld(), "the lock is released after the pass")
	require.Equal(t, 1.0, testutil.ToFloat64(r.passes.WithLabelValues("skipped")))
	require.Equal(t, 2.0, testutil.ToFloat64(r.passes.WithLabelValues("done")))

	// Run makes a pass at once and stops with its context.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	testenv.EventuallyWithin(t, 20*time.Second, "three reminder passes", func() bool {
		return testutil.ToFloat64(r.passes.WithLabelValues("done")) >= 3
	})
	require.Equal(t, 3.0, testutil.ToFloat64(r.passes.WithLabelValues("done")))
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}
