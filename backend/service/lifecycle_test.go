package service_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/lifecycle"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
)

func TestDeadlineIsEndOfTenthLocalDay(t *testing.T) {
	e := newEnv(t, func(o *service.Options) {
		o.PickupDays = map[store.DocumentKind]int{store.DrivingLicence: 3}
	})
	brussels, err := time.LoadLocation("Europe/Brussels")
	require.NoError(t, err)
	// Loaded Friday 27 March 2026 at 23:30 Brussels time (22:30 UTC); DST
	// starts on 29 March. Ten days: the end of Monday 6 April, local.
	loaded := time.Date(2026, 3, 27, 22, 30, 0, 0, time.UTC)
	got := e.svc.Deadline(store.EID, loaded, brussels)
	require.Equal(t, time.Date(2026, 4, 7, 0, 0, 0, 0, brussels).UTC(), got)
	require.Equal(t, time.Date(2026, 4, 6, 22, 0, 0, 0, time.UTC), got)
	got = e.svc.Deadline(store.DrivingLicence, loaded, brussels)
	require.Equal(t, time.Date(2026, 3, 30, 22, 0, 0, 0, time.UTC), got) // end of 30 March CEST
	require.Equal(t, 3, e.svc.PickupDays(store.DrivingLicence))
	require.Equal(t, 10, e.svc.PickupDays(store.Passport))

	// Through Load, with the clock.
	e.device("d", uniform(2, store.SizeM, 150)...)
	e.clock.Set(loaded)
	doc := e.register(store.EID, false)
	_, err = e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{})
	require.NoError(t, err)
	doc, err = e.svc.Load(e.ctx, "user:counter1", doc.ID)
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 4, 6, 22, 0, 0, 0, time.UTC), *doc.Deadline)
	require.Equal(t, loaded, *doc.LoadedAt)
}

func TestOptionsRefused(t *testing.T) {
	e := newEnv(t, nil)
	for name, o := range map[string]service.Options{
		"no store":  {},
		"days":      {Store: e.st, PickupDays: map[store.DocumentKind]int{store.EID: 0}},
		"kind":      {Store: e.st, PickupDays: map[store.DocumentKind]int{"library": 5}},
		"size":      {Store: e.st, MinSize: map[store.DocumentKind]store.Size{store.EID: "XL"}},
		"height":    {Store: e.st, LowMaxHeightCM: -1},
		"retention": {Store: e.st, Retention: -time.Hour},
	} {
		_, err := service.New(o)
		require.ErrorIs(t, err, service.ErrInvalid, name)
	}
}

func TestHooksCodesAndNotifications(t *testing.T) {
	e := newEnv(t, nil)
	e.device("d", uniform(2, store.SizeS, 150)...)
	doc := e.register(store.KidsID, false)
	doc, err := e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{})
	require.NoError(t, err)
	require.Empty(t, e.codes.Issued())

	doc, err = e.svc.Load(e.ctx, "device:d", doc.ID)
	require.NoError(t, err)
	issued := e.codes.Issued()
	require.Len(t, issued, 1)
	require.Equal(t, doc.ID, issued[0].Document.ID)
	require.Equal(t, doc.Deadline, issued[0].Document.Deadline, "codes see the deadline")
	require.Equal(t, doc.CompartmentID, issued[0].Compartment.ID)
	require.Equal(t, store.CompartmentLoaded, issued[0].Compartment.State)
	sent := e.notes.Sent()
	require.Len(t, sent, 1)
	require.Equal(t, service.NotifyLoaded, sent[0].Kind)
	require.Equal(t, "secret-1", sent[0].Secret)
	require.Equal(t, store.CompartmentLoaded, sent[0].Compartment.State)

	doc, err = e.svc.MarkNotified(e.ctx, "system", doc.ID)
	require.NoError(t, err)
	require.NotNil(t, doc.NotifiedAt)
	require.Len(t, e.notes.Sent(), 1, "marking notified sends nothing")

	doc, err = e.svc.Reissue(e.ctx, "user:counter1", doc.ID)
	require.NoError(t, err)
	require.Equal(t, []string{doc.ID}, e.codes.Revoked())
	require.Len(t, e.codes.Issued(), 2)
	sent = e.notes.Sent()
	require.Equal(t, service.NotifyReissued, sent[1].Kind)
	require.Equal(t, "secret-2", sent[1].Secret)

	_, err = e.svc.Renotify(e.ctx, "user:counter1", doc.ID)
	require.NoError(t, err)
	require.Equal(t, service.NotifyReminder, e.notes.Sent()[2].Kind)

	// A failing notifier does not undo the transition.
	e.notes.Fail = errors.New("smtp down")
	doc, err = e.svc.Collect(e.ctx, "device:d", doc.ID)
	require.NoError(t, err)
	require.Equal(t, "collected", string(doc.State))
	require.Len(t, e.codes.Revoked(), 2)
	require.Equal(t, service.NotifyCollected, e.notes.Sent()[3].Kind)
}

func TestFailingCodeIssuerRollsBackLoad(t *testing.T) {
	e := newEnv(t, nil)
	e.device("d", uniform(1, store.SizeS, 150)...)
	doc := e.register(store.EID, false)
	doc, err := e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{})
	require.NoError(t, err)
	e.codes.FailIssue = errors.New("signing key missing")
	_, err = e.svc.Load(e.ctx, "device:d", doc.ID)
	require.ErrorContains(t, err, "signing key missing")
	got, err := e.svc.GetDocument(e.ctx, doc.ID)
	require.NoError(t, err)
	require.Equal(t, doc, got)
	require.Equal(t, store.CompartmentReserved, e.compartment(doc.CompartmentID).State)
	require.Empty(t, e.notes.Sent())
	hist, err := e.svc.History(e.ctx, doc.ID)
	require.NoError(t, err)
	require.Len(t, hist, 2) // register, reserve
}

func TestDeviceEventsByCompartment(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("d", uniform(3, store.SizeS, 150)...)
	doc := e.register(store.EID, false)
	doc, err := e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{})
	require.NoError(t, err)
	number := 0
	for _, c := range d.Compartments {
		if c.ID == doc.CompartmentID {
			number = c.Number
		}
	}
	other := number%3 + 1
	_, err = e.svc.LoadAt(e.ctx, "device:d", "d", other)
	require.ErrorIs(t, err, service.ErrNotFound, "nothing reserved there")
	_, err = e.svc.LoadAt(e.ctx, "device:d", "d", 99)
	require.ErrorIs(t, err, service.ErrNotFound)
	got, err := e.svc.LoadAt(e.ctx, "device:d", "d", number)
	require.NoError(t, err)
	require.Equal(t, doc.ID, got.ID)
	require.Equal(t, "loaded", string(got.State))
	_, err = e.svc.LoadAt(e.ctx, "device:d", "d", number)
	require.ErrorIs(t, err, service.ErrForbiddenTransition, "second door-closed event")
	got, err = e.svc.CollectAt(e.ctx, "device:d", "d", number)
	require.NoError(t, err)
	require.Equal(t, "collected", string(got.State))
	hist, err := e.svc.History(e.ctx, doc.ID)
	require.NoError(t, err)
	require.Equal(t, "device:d", hist[len(hist)-1].Actor)
	require.Equal(t, store.CompartmentFree, e.compartment(doc.CompartmentID).State)
}

func TestExpireDueSweep(t *testing.T) {
	e := newEnv(t, func(o *service.Options) {
		o.PickupDays = map[store.DocumentKind]int{store.DrivingLicence: 2}
	})
	e.device("d", uniform(5, store.SizeS, 150)...)
	load := func(kind store.DocumentKind) store.Document {
		doc := e.register(kind, false)
		doc, err := e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{})
		require.NoError(t, err)
		doc, err = e.svc.Load(e.ctx, "device:d", doc.ID)
		require.NoError(t, err)
		return doc
	}
	short1, short2, long := load(store.DrivingLicence), load(store.DrivingLicence), load(store.EID)
	_, err := e.svc.MarkNotified(e.ctx, "system", short2.ID)
	require.NoError(t, err)
	reserved := e.register(store.EID, false)
	_, err = e.svc.Reserve(e.ctx, "user:counter1", reserved.ID, service.ReserveOptions{})
	require.NoError(t, err)

	n, err := e.svc.ExpireDue(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 0, n, "nothing is due yet")
	_, err = e.svc.Expire(e.ctx, "user:counter1", long.ID)
	require.ErrorIs(t, err, service.ErrConflict, "not past its deadline")

	e.clock.Set(*short1.Deadline) // exactly at the deadline
	n, err = e.svc.ExpireDue(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	for _, id := range []string{short1.ID, short2.ID} {
		d, err := e.svc.GetDocument(e.ctx, id)
		require.NoError(t, err)
		require.Equal(t, "expired", string(d.State))
		require.Equal(t, store.CompartmentLoaded, e.compartment(d.CompartmentID).State, "item still inside")
		hist, err := e.svc.History(e.ctx, id)
		require.NoError(t, err)
		require.Equal(t, "system", hist[len(hist)-1].Actor)
	}
	d, err := e.svc.GetDocument(e.ctx, long.ID)
	require.NoError(t, err)
	require.Equal(t, "loaded", string(d.State))
	n, err = e.svc.ExpireDue(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 0, n, "idempotent")
	expired := 0
	for _, x := range e.notes.Sent() {
		if x.Kind == service.NotifyExpired {
			expired++
		}
	}
	require.Equal(t, 2, expired)
}

func TestPurgePersonalData(t *testing.T) {
	e := newEnv(t, func(o *service.Options) { o.Retention = 7 * 24 * time.Hour })
	e.device("d", uniform(3, store.SizeS, 150)...)
	collected := e.register(store.EID, false)
	collected, err := e.svc.Reserve(e.ctx, "user:counter1", collected.ID, service.ReserveOptions{})
	require.NoError(t, err)
	_, err = e.svc.Load(e.ctx, "device:d", collected.ID)
	require.NoError(t, err)
	collected, err = e.svc.Collect(e.ctx, "device:d", collected.ID)
	require.NoError(t, err)
	cancelled, err := e.svc.Cancel(e.ctx, "user:counter1", e.register(store.Passport, false).ID, "")
	require.NoError(t, err)
	active := e.register(store.EID, true) // still registered: never purged
	e.clock.Add(3 * 24 * time.Hour)
	lateCancel, err := e.svc.Cancel(e.ctx, "user:counter1", e.register(store.EID, false).ID, "")
	require.NoError(t, err)

	e.clock.Add(5 * 24 * time.Hour) // 8 days after the first two closed, 5 after the last
	n, err := e.svc.Purge(e.ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.ElementsMatch(t, []string{collected.ID, cancelled.ID}, e.purger.IDs())
	for _, id := range []string{collected.ID, cancelled.ID} {
		d, err := e.svc.GetDocument(e.ctx, id)
		require.NoError(t, err)
		requirePurged(t, d)
	}
	for _, id := range []string{active.ID, lateCancel.ID} {
		d, err := e.svc.GetDocument(e.ctx, id)
		require.NoError(t, err)
		require.Nil(t, d.PurgedAt)
		require.Equal(t, "Peeters", d.LastName)
	}
	n, err = e.svc.Purge(e.ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 0, n, "idempotent")
	n, err = e.svc.Purge(e.ctx, 24*time.Hour)
	require.NoError(t, err)
	require.Equal(t, 1, n, "a shorter period reaches the late cancellation")
	_, err = e.svc.Purge(e.ctx, -time.Hour)
	require.ErrorIs(t, err, service.ErrInvalid)

	// The audit trail still verifies and never held personal data.
	rep, err := audit.Verify(e.ctx, e.st.Pool())
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.Reason)
	var leaks int
	require.NoError(t, e.st.Pool().QueryRow(e.ctx, `SELECT count(*) FROM audit_log
		WHERE details::text ILIKE '%peeters%' OR details::text ILIKE '%example.be%' OR details::text LIKE '%592-%'
		   OR details::text LIKE '%470%' OR details::text LIKE '%1980%'`).Scan(&leaks))
	require.Equal(t, 0, leaks)
	var purges int
	require.NoError(t, e.st.Pool().QueryRow(e.ctx, "SELECT count(*) FROM audit_log WHERE action = 'document.purge'").Scan(&purges))
	require.Equal(t, 3, purges)
}

// requirePurged checks that d's personal data is gone and what is not
// personal stays.
func requirePurged(t *testing.T, d store.Document) {
	t.Helper()
	require.NotNil(t, d.PurgedAt, d.ID)
	require.Empty(t, d.Number)
	require.Empty(t, d.FirstName)
	require.Empty(t, d.LastName)
	require.Nil(t, d.BirthDate)
	require.Empty(t, d.Email)
	require.Empty(t, d.Mobile)
	require.NotEmpty(t, d.NumberPseudonym, "the pseudonym stays")
	require.NotEmpty(t, d.Kind)
}

// Documents that are never closed (registered and never loaded, reserved
// and never loaded, expired and never taken back) lose their holder's
// personal data UnclaimedRetention after their deadline, or their
// registration when they were never loaded, in the housekeeping pass. Their
// state and compartment stay (an expired one is still behind its door),
// every erasure is audited without personal data, the chain still
// verifies, and staff can still take the document back.
func TestHousekeepingPurgesDocumentsNeverClosed(t *testing.T) {
	const keep = 30 * 24 * time.Hour
	e := newEnv(t, func(o *service.Options) { o.UnclaimedRetention = keep })
	e.device("d", uniform(3, store.SizeS, 150)...)
	loadDoc := func() store.Document {
		d := e.register(store.EID, false)
		d, err := e.svc.Reserve(e.ctx, "user:counter1", d.ID, service.ReserveOptions{})
		require.NoError(t, err)
		d, err = e.svc.Load(e.ctx, "device:d", d.ID)
		require.NoError(t, err)
		return d
	}
	expired := loadDoc()
	registered := e.register(store.Passport, false)
	reserved, err := e.svc.Reserve(e.ctx, "user:counter1", e.register(store.EID, false).ID, service.ReserveOptions{})
	require.NoError(t, err)

	// Fifteen days on: a document loaded now expires ten days later, so
	// its deadline is well within the retention at the check below.
	e.clock.Set(expired.Deadline.Add(15 * 24 * time.Hour))
	recentExpired := loadDoc()
	e.clock.Set(expired.Deadline.Add(keep + time.Hour))
	fresh := e.register(store.EID, false) // registered today: kept

	r, err := e.svc.Housekeep(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.HousekeepResult{Expired: 2, Purged: 0, Unclaimed: 3}, r)
	require.ElementsMatch(t, []string{expired.ID, registered.ID, reserved.ID}, e.purger.IDs())

	for id, want := range map[string]lifecycle.State{expired.ID: lifecycle.Expired, registered.ID: lifecycle.Registered,
		reserved.ID: lifecycle.Reserved} {
		d, err := e.svc.GetDocument(e.ctx, id)
		require.NoError(t, err)
		require.Equal(t, want, d.State, "the state stays")
		requirePurged(t, d)
		require.Nil(t, d.ClosedAt, "not closed by the purge")
	}
	require.Equal(t, store.CompartmentLoaded, e.compartment(expired.CompartmentID).State, "the item is still behind its door")
	require.Equal(t, store.CompartmentReserved, e.compartment(reserved.CompartmentID).State)
	for _, id := range []string{recentExpired.ID, fresh.ID} {
		d, err := e.svc.GetDocument(e.ctx, id)
		require.NoError(t, err)
		require.Nil(t, d.PurgedAt, "within the retention")
		require.Equal(t, "Peeters", d.LastName)
	}

	// A purged registered document cannot be reserved (nobody could be
	// told it is ready); its number is free to be registered again.
	_, err = e.svc.Reserve(e.ctx, "user:counter1", registered.ID, service.ReserveOptions{})
	require.ErrorIs(t, err, service.ErrConflict)
	again := e.newDoc(store.Passport, false)
	again.Number = registered.Number
	_, err = e.svc.RegisterDocument(e.ctx, "user:counter1", again)
	require.NoError(t, err)

	n, err := e.svc.PurgeUnclaimed(e.ctx, 0)
	require.NoError(t, err)
	require.Zero(t, n, "idempotent")
	_, err = e.svc.PurgeUnclaimed(e.ctx, -time.Hour)
	require.ErrorIs(t, err, service.ErrInvalid)

	// Staff still take the expired document back and cancel the
	// reservation; the purge of finished documents does not erase (nor
	// audit) them a second time.
	back, err := e.svc.Retrieve(e.ctx, "user:counter1", expired.ID)
	require.NoError(t, err)
	require.Equal(t, lifecycle.Retrieved, back.State)
	require.NotNil(t, back.ClosedAt)
	require.Equal(t, store.CompartmentFree, e.compartment(expired.CompartmentID).State)
	_, err = e.svc.Cancel(e.ctx, "user:counter1", reserved.ID, "")
	require.NoError(t, err)
	e.clock.Add(service.DefaultRetention + time.Hour)
	n, err = e.svc.Purge(e.ctx, 0)
	require.NoError(t, err)
	require.Zero(t, n)

	rep, err := audit.Verify(e.ctx, e.st.Pool())
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.Reason)
	var unclaimed, leaks int
	require.NoError(t, e.st.Pool().QueryRow(e.ctx, `SELECT count(*) FILTER (WHERE action = 'document.purge' AND details->>'unclaimed' = 'true'),
		count(*) FILTER (WHERE details::text ILIKE '%peeters%' OR details::text ILIKE '%example.be%' OR details::text LIKE '%592-%')
		FROM audit_log`).Scan(&unclaimed, &leaks))
	require.Equal(t, 3, unclaimed)
	require.Zero(t, leaks)
	var state string
	require.NoError(t, e.st.Pool().QueryRow(e.ctx, `SELECT details->>'state' FROM audit_log WHERE action = 'document.purge' AND subject = $1`,
		"document:"+expired.ID).Scan(&state))
	require.Equal(t, "expired", state, "the record says the document was still open")
}

func TestUnclaimedRetentionHasAFloor(t *testing.T) {
	st := newEnv(t, nil).st
	_, err := service.New(service.Options{Store: st, UnclaimedRetention: 6 * 24 * time.Hour})
	require.ErrorIs(t, err, service.ErrInvalid)
	_, err = service.New(service.Options{Store: st, UnclaimedRetention: service.MinUnclaimedRetention})
	require.NoError(t, err)
}

// TestBirthDateTodayAtTheSite: at 00:30 in Brussels (23:30 UTC the day
// before) a holder born that day is registered: the date of birth is
// judged by the site's day, not UTC's (before, "is in the future" until
// 01:00 in winter, 02:00 in summer). The next day is still refused.
func TestBirthDateTodayAtTheSite(t *testing.T) {
	e := newEnv(t, nil)
	e.clock.Set(time.Date(2026, 12, 6, 23, 30, 0, 0, time.UTC)) // Monday 7 December, 00:30 in Brussels
	n := e.newDoc(store.EID, false)
	n.BirthDate = new(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))
	d, err := e.svc.RegisterDocument(e.ctx, "user:counter1", n)
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), d.BirthDate.UTC())

	n = e.newDoc(store.EID, false)
	n.BirthDate = new(time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC))
	_, err = e.svc.RegisterDocument(e.ctx, "user:counter1", n)
	var ve *store.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "holder_birth_date", ve.Fields[0].Field)
}

// The purge of finished documents works in bounded transactions (many
// documents, every one erased across the batches) and skips a document a
// clerk's transaction holds instead of waiting for it: the next pass
// erases it. The same for the documents never closed.
func TestPurgeBatchesAndSkipsLockedDocuments(t *testing.T) {
	const batch = 3
	e := newEnv(t, func(o *service.Options) { o.Retention = 7 * 24 * time.Hour; o.PurgeBatch = batch })
	var ids []string
	for range 8 {
		d, err := e.svc.Cancel(e.ctx, "user:counter1", e.register(store.EID, false).ID, "")
		require.NoError(t, err)
		ids = append(ids, d.ID)
	}
	e.clock.Add(8 * 24 * time.Hour)

	// A clerk's transaction holds the newest cancellation (as the
	// service's transitions lock a document) while the pass runs.
	tx, err := e.st.Pool().Begin(e.ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(e.ctx) }()
	_, err = store.LockDocument(e.ctx, tx, ids[7])
	require.NoError(t, err)
	// A purge that waited for the lock would never return: bound it.
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	n, err := e.svc.Purge(ctx, 0)
	require.NoError(t, err, "the purge does not wait for the clerk")
	require.Equal(t, 7, n)
	require.ElementsMatch(t, ids[:7], e.purger.IDs())
	for _, b := range e.purger.Batches() {
		require.LessOrEqual(t, b, batch, "at most PurgeBatch documents a transaction")
	}
	require.Len(t, e.purger.Batches(), 3, "7 documents in batches of 3")
	for _, id := range ids[:7] {
		d, err := e.svc.GetDocument(e.ctx, id)
		require.NoError(t, err)
		requirePurged(t, d)
	}
	held, err := e.svc.GetDocument(e.ctx, ids[7])
	require.NoError(t, err)
	require.Nil(t, held.PurgedAt, "skipped while the clerk holds it")
	require.Equal(t, "Peeters", held.LastName)
	require.NoError(t, tx.Commit(e.ctx))

	n, err = e.svc.Purge(e.ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the next pass takes the skipped one")
	d, err := e.svc.GetDocument(e.ctx, ids[7])
	require.NoError(t, err)
	requirePurged(t, d)
	require.NoError(t, audit.CatchUp(e.ctx, e.st.Pool()))
	var purges int
	require.NoError(t, e.st.Pool().QueryRow(e.ctx, "SELECT count(*) FROM audit_log WHERE action = 'document.purge'").Scan(&purges))
	require.Equal(t, 8, purges, "each audited once")
	n, err = e.svc.Purge(e.ctx, 0)
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestPurgeBatchMustNotBeNegative(t *testing.T) {
	st := storetest.New(t)
	_, err := service.New(service.Options{Store: st, PurgeBatch: -1})
	require.ErrorIs(t, err, service.ErrInvalid)
}

// The reason a clerk types when cancelling may name someone: the chained
// audit record only points at the transition that holds it (never
// rewritten, it must never hold it), and the purge erases it from the
// document's history with the rest of the personal data.
func TestPurgeErasesTheCancelReason(t *testing.T) {
	e := newEnv(t, func(o *service.Options) { o.Retention = 7 * 24 * time.Hour })
	const reason = "Jan Peeters belde: verhuisd naar Gent"
	d, err := e.svc.Cancel(e.ctx, "user:counter1", e.register(store.EID, false).ID, reason)
	require.NoError(t, err)
	hist, err := e.svc.History(e.ctx, d.ID)
	require.NoError(t, err)
	require.Len(t, hist, 2)
	require.Equal(t, reason, hist[1].Note, "the history keeps it until the purge")

	require.NoError(t, audit.CatchUp(e.ctx, e.st.Pool()))
	recs, err := audit.List(e.ctx, e.st.Pool(), audit.ListOptions{Subject: "document:" + d.ID})
	require.NoError(t, err)
	var cancel *audit.Record
	for i := range recs {
		if recs[i].Action == "document.cancel" {
			cancel = &recs[i]
		}
	}
	require.NotNil(t, cancel)
	require.NotContains(t, string(cancel.Details), "Gent", "no free text in a chained audit record")
	require.Contains(t, string(cancel.Details), fmt.Sprintf(`"note_transition":%d`, hist[1].ID), "a reference to the transition")

	e.clock.Add(8 * 24 * time.Hour)
	n, err := e.svc.Purge(e.ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	hist, err = e.svc.History(e.ctx, d.ID)
	require.NoError(t, err)
	require.Len(t, hist, 2, "the transitions stay")
	require.Empty(t, hist[1].Note, "its reason is erased")
	var left int
	require.NoError(t, e.st.Pool().QueryRow(e.ctx, `SELECT (SELECT count(*) FROM document_transitions WHERE note LIKE '%Gent%')
		+ (SELECT count(*) FROM audit_log WHERE details::text LIKE '%Gent%')
		+ (SELECT count(*) FROM audit_pending WHERE details::text LIKE '%Gent%')`).Scan(&left))
	require.Zero(t, left)
	rep, err := audit.Verify(e.ctx, e.st.Pool())
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.Reason)
}

// A document whose holder's data was erased while it was still behind its
// door (loaded, never expired; or reserved, its load recorded after the
// erasure) is physically there: staff take it back, but nobody can show
// it is theirs, so it is not handed over at the counter, gets no new
// codes, no reminder and no message; a pickup the device records (a code
// opened the door) is still recorded.
func TestPurgedDocumentInItsCompartment(t *testing.T) {
	e := newEnv(t, func(o *service.Options) { o.UnclaimedRetention = service.MinUnclaimedRetention })
	e.device("d", uniform(3, store.SizeS, 150)...)
	load := func() store.Document {
		d, err := e.svc.Reserve(e.ctx, "user:counter1", e.register(store.EID, false).ID, service.ReserveOptions{})
		require.NoError(t, err)
		d, err = e.svc.Load(e.ctx, "device:d", d.ID)
		require.NoError(t, err)
		return d
	}
	loaded, picked := load(), load()
	reserved, err := e.svc.Reserve(e.ctx, "user:counter1", e.register(store.EID, false).ID, service.ReserveOptions{})
	require.NoError(t, err)
	e.clock.Set(loaded.Deadline.Add(service.MinUnclaimedRetention + time.Hour))
	n, err := e.svc.PurgeUnclaimed(e.ctx, 0) // no ExpireDue: still loaded
	require.NoError(t, err)
	require.Equal(t, 3, n)
	_, err = e.svc.MarkNotified(e.ctx, "system", picked.ID)
	require.NoError(t, err)
	issued, sent := len(e.codes.Issued()), len(e.notes.Sent())

	_, err = e.svc.Collect(e.ctx, "user:counter1", loaded.ID)
	require.ErrorIs(t, err, service.ErrPurged, "no hand-over at the counter without an identity to check")
	require.ErrorIs(t, err, service.ErrConflict)
	_, err = e.svc.Reissue(e.ctx, "user:counter1", loaded.ID)
	require.ErrorIs(t, err, service.ErrPurged, "no new codes for nobody")
	_, err = e.svc.Renotify(e.ctx, "user:counter1", picked.ID)
	require.ErrorIs(t, err, service.ErrPurged, "no reminder to nobody")
	d, err := e.svc.GetDocument(e.ctx, loaded.ID)
	require.NoError(t, err)
	require.Equal(t, lifecycle.Loaded, d.State, "nothing changed")
	require.Equal(t, store.CompartmentLoaded, e.compartment(loaded.CompartmentID).State)

	// Loaded after the erasure: recorded, but no codes and no message.
	d, err = e.svc.Load(e.ctx, "device:d", reserved.ID)
	require.NoError(t, err)
	require.Equal(t, lifecycle.Loaded, d.State)
	// The device records a pickup: never refused, no receipt.
	d, err = e.svc.CollectAt(e.ctx, "device:d", "d", e.compartment(picked.CompartmentID).Number)
	require.NoError(t, err)
	require.Equal(t, lifecycle.Collected, d.State)
	require.Len(t, e.codes.Issued(), issued, "no codes for a purged document")
	require.Len(t, e.notes.Sent(), sent, "no message about a purged document")

	// Taking them back works.
	for _, id := range []string{loaded.ID, reserved.ID} {
		d, err := e.svc.Retrieve(e.ctx, "user:counter1", id)
		require.NoError(t, err)
		require.Equal(t, lifecycle.Retrieved, d.State)
		require.Equal(t, store.CompartmentFree, e.compartment(d.CompartmentID).State)
	}
}
