package service_test

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/codes"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/controller/pickupcode"
)

// A kind with an exact pickup period gets deadline = load time + period
// (over its PickupDays), its real codes work until then and are refused
// from then on, and the expiry sweep expires it at that moment.
func TestExactPickupPeriod(t *testing.T) {
	var cs *codes.Service
	e := newEnv(t, func(o *service.Options) {
		o.PickupDays = map[store.DocumentKind]int{store.ResidenceCard: 3}
		o.PickupPeriods = map[store.DocumentKind]time.Duration{store.ResidenceCard: 90 * time.Second}
		keys, err := codes.GenerateKeys()
		require.NoError(t, err)
		cs, err = codes.New(codes.Options{Pool: o.Store.Pool(), Keys: keys, Clock: o.Clock,
			Argon:  pickupcode.ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		o.Codes = codes.Issuer{Service: cs}
	})
	p, ok := e.svc.PickupPeriod(store.ResidenceCard)
	require.True(t, ok)
	require.Equal(t, 90*time.Second, p)
	_, ok = e.svc.PickupPeriod(store.EID)
	require.False(t, ok)

	e.device("d", uniform(4, store.SizeS, 150)...)
	loaded := t0.Add(17 * time.Second)
	e.clock.Set(loaded)
	creds := map[string]codes.Credentials{}
	load := func(kind store.DocumentKind) store.Document {
		t.Helper()
		doc := e.register(kind, false)
		doc, err := e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{})
		require.NoError(t, err)
		doc, err = e.svc.Load(e.ctx, "device:d", doc.ID)
		require.NoError(t, err)
		sent := e.notes.Sent()
		cr, ok := sent[len(sent)-1].Secret.(codes.Credentials)
		require.True(t, ok)
		creds[doc.ID] = cr
		return doc
	}
	a, b, eid := load(store.ResidenceCard), load(store.ResidenceCard), load(store.EID)
	for _, d := range []store.Document{a, b} {
		require.Equal(t, loaded, *d.LoadedAt)
		require.Equal(t, loaded.Add(90*time.Second), *d.Deadline)
		require.Equal(t, *d.Deadline, creds[d.ID].ExpiresAt, "the codes end at the deadline")
	}
	brussels, err := time.LoadLocation("Europe/Brussels")
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 4, 3, 0, 0, 0, 0, brussels).UTC(), *eid.Deadline, "other kinds keep whole days")

	// A second before the deadline: the code works, nothing is due.
	e.clock.Set(a.Deadline.Add(-time.Second))
	res, err := cs.Verify(e.ctx, codes.Attempt{DeviceID: "d", QRToken: creds[a.ID].QRToken})
	require.NoError(t, err)
	require.Equal(t, a.ID, res.DocumentID)
	_, err = e.svc.Collect(e.ctx, "device:d", a.ID)
	require.NoError(t, err)
	n, err := e.svc.ExpireDue(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 0, n)

	// At the deadline: the code is refused and the sweep expires the document.
	e.clock.Set(*b.Deadline)
	_, err = cs.Verify(e.ctx, codes.Attempt{DeviceID: "d", QRToken: creds[b.ID].QRToken})
	require.ErrorIs(t, err, pickupcode.ErrExpired)
	n, err = e.svc.ExpireDue(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	got, err := e.svc.GetDocument(e.ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, "expired", string(got.State))
	got, err = e.svc.GetDocument(e.ctx, eid.ID)
	require.NoError(t, err)
	require.Equal(t, "loaded", string(got.State))
	_, err = cs.Verify(e.ctx, codes.Attempt{DeviceID: "d", QRToken: creds[b.ID].QRToken})
	// Revoked by the expiry, and still told "expired" (not "wrong code").
	require.ErrorIs(t, err, pickupcode.ErrExpired, "revoked on expiry")
}

func TestPickupPeriodsRefused(t *testing.T) {
	e := newEnv(t, nil)
	for name, p := range map[string]map[store.DocumentKind]time.Duration{
		"kind":  {"library": time.Hour},
		"zero":  {store.EID: 0},
		"short": {store.EID: time.Millisecond},
		"long":  {store.EID: 367 * 24 * time.Hour},
	} {
		_, err := service.New(service.Options{Store: e.st, PickupPeriods: p})
		require.ErrorIs(t, err, service.ErrInvalid, name)
	}
}

// A load is judged at the load's own time, not at the moment the codes
// are written later in its transaction. With a one-second period, a load
// that started at .9 s and reached the codes 0.2 s later (a loaded
// machine) had a code expiry (the deadline cut to the second) that had
// "passed": the load failed and the API answered 500 (seen in
// TestCounterRecordsAnExpiredDocumentAtTheCounter at load 33). A reissue
// after the deadline, before the sweep expired the document, is a 409
// conflict, not a 500.
func TestShortPickupPeriodLoadsOnABusyMachine(t *testing.T) {
	const lag = 200 * time.Millisecond // from the load's start to the codes' own clock
	e := newEnv(t, func(o *service.Options) {
		o.PickupPeriods = map[store.DocumentKind]time.Duration{store.ResidenceCard: time.Second}
		keys, err := codes.GenerateKeys()
		require.NoError(t, err)
		clock := o.Clock
		cs, err := codes.New(codes.Options{Pool: o.Store.Pool(), Keys: keys, Clock: func() time.Time { return clock().Add(lag) },
			Argon:  pickupcode.ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		o.Codes = codes.Issuer{Service: cs}
	})
	e.device("d", uniform(2, store.SizeS, 150)...)
	loaded := t0.Add(17*time.Second + 900*time.Millisecond)
	e.clock.Set(loaded)
	doc := e.register(store.ResidenceCard, false)
	doc, err := e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{})
	require.NoError(t, err)
	doc, err = e.svc.Load(e.ctx, "user:counter1", doc.ID)
	require.NoError(t, err, "the load is not refused for the time its transaction took")
	require.Equal(t, "loaded", string(doc.State))
	require.Equal(t, loaded.Add(time.Second), *doc.Deadline)
	sent := e.notes.Sent()
	cr, ok := sent[len(sent)-1].Secret.(codes.Credentials)
	require.True(t, ok)
	require.Equal(t, loaded.Add(time.Second).Truncate(time.Second), cr.ExpiresAt, "the code ends at the deadline, cut to the second")

	// Past the code's end, before the sweep: a reissue is a conflict and
	// changes nothing; the sweep then expires the document.
	e.clock.Set(cr.ExpiresAt.Add(100 * time.Millisecond))
	_, err = e.svc.Reissue(e.ctx, "user:counter1", doc.ID)
	require.ErrorIs(t, err, service.ErrConflict)
	got, err := e.svc.GetDocument(e.ctx, doc.ID)
	require.NoError(t, err)
	require.Equal(t, "loaded", string(got.State))
	e.clock.Set(doc.Deadline.Add(time.Millisecond))
	n, err := e.svc.ExpireDue(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
}
