package service_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/service"
	"kluis/backend/store"
)

func TestHousekeepingExpiresAndPurges(t *testing.T) {
	e := newEnv(t, func(o *service.Options) { o.Retention = 24 * time.Hour })
	e.device("d", uniform(2, store.SizeS, 150)...)
	doc := e.register(store.EID, false)
	doc, err := e.svc.Reserve(e.ctx, "user:c", doc.ID, service.ReserveOptions{})
	require.NoError(t, err)
	doc, err = e.svc.Load(e.ctx, "device:d", doc.ID)
	require.NoError(t, err)
	gone, err := e.svc.Cancel(e.ctx, "user:c", e.register(store.EID, false).ID, "")
	require.NoError(t, err)

	e.clock.Set(doc.Deadline.Add(time.Hour))
	r, err := e.svc.Housekeep(e.ctx)
	require.NoError(t, err)
	require.Equal(t, service.HousekeepResult{Expired: 1, Purged: 1}, r)

	// The loop does the same work and stops with its context.
	doc2 := e.register(store.EID, false)
	doc2, err = e.svc.Reserve(e.ctx, "user:c", doc2.ID, service.ReserveOptions{})
	require.NoError(t, err)
	doc2, err = e.svc.Load(e.ctx, "device:d", doc2.ID)
	require.NoError(t, err)
	e.clock.Set(doc2.Deadline.Add(time.Hour))
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- e.svc.RunHousekeeping(ctx, 10*time.Millisecond) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		d, err := e.svc.GetDocument(e.ctx, doc2.ID)
		require.NoError(t, err)
		if d.State == "expired" {
			break
		}
		require.True(t, time.Now().Before(deadline), "housekeeping loop never expired the document")
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		require.True(t, errors.Is(err, context.Canceled))
	case <-time.After(15 * time.Second):
		t.Fatal("housekeeping loop did not stop")
	}
	g, err := e.svc.GetDocument(e.ctx, gone.ID)
	require.NoError(t, err)
	require.NotNil(t, g.PurgedAt)
	require.Empty(t, g.LastName)
}

// A holder whose ready message never went out (the gateways failed, or the
// backend stopped between the commit and the message) gets new codes in a
// new message once the document has waited RedeliverAfter; a delivered
// message ends it. Found by the gauntlet (bench/chaos, fault mail_failing).
func TestHousekeepingRedeliversUndeliveredReady(t *testing.T) {
	e := newEnv(t, func(o *service.Options) { o.RedeliverAfter = time.Minute })
	e.device("d", uniform(2, store.SizeS, 150)...)
	e.notes.Fail = errors.New("gateway down")
	doc := e.register(store.EID, false)
	doc, err := e.svc.Reserve(e.ctx, "user:c", doc.ID, service.ReserveOptions{})
	require.NoError(t, err)
	doc, err = e.svc.Load(e.ctx, "device:d", doc.ID)
	require.NoError(t, err)
	require.Equal(t, "loaded", string(doc.State))
	sent := len(e.notes.Sent())

	// Not yet: the first message may still be on its way.
	e.clock.Add(30 * time.Second)
	r, err := e.svc.Housekeep(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 0, r.Redelivered)

	// Still failing: tried again, and again a minute later.
	e.clock.Add(31 * time.Second)
	r, err = e.svc.Housekeep(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, r.Redelivered)
	r, err = e.svc.Housekeep(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 0, r.Redelivered, "tried again at once")
	notes := e.notes.Sent()
	require.Len(t, notes, sent+1)
	last := notes[len(notes)-1]
	require.Equal(t, service.NotifyReissued, last.Kind)
	require.Equal(t, doc.ID, last.Document.ID)
	require.NotEmpty(t, last.Secret, "a new ready message carries new codes")

	// Delivered (notify records it as sent): never again.
	e.notes.Fail = nil
	e.clock.Add(61 * time.Second)
	r, err = e.svc.Housekeep(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, r.Redelivered)
	_, err = e.st.Pool().Exec(e.ctx, `INSERT INTO notifications (document_id, kind, channel, status, created_at)
		VALUES ($1, 'reissued', 'email', 'sent', $2)`, doc.ID, e.clock.Now())
	require.NoError(t, err)
	e.clock.Add(time.Hour)
	r, err = e.svc.Housekeep(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 0, r.Redelivered)
}

// A receipt that never went out is sent again, once, after RedeliverAfter.
func TestHousekeepingRedeliversReceipts(t *testing.T) {
	e := newEnv(t, func(o *service.Options) { o.RedeliverAfter = time.Minute })
	e.device("d", uniform(2, store.SizeS, 150)...)
	doc := e.register(store.EID, false)
	doc, err := e.svc.Reserve(e.ctx, "user:c", doc.ID, service.ReserveOptions{})
	require.NoError(t, err)
	doc, err = e.svc.Load(e.ctx, "device:d", doc.ID)
	require.NoError(t, err)
	sent := func(kind string) {
		_, err := e.st.Pool().Exec(e.ctx, `INSERT INTO notifications (document_id, kind, channel, status, created_at)
			VALUES ($1, $2, 'email', 'sent', $3)`, doc.ID, kind, e.clock.Now())
		require.NoError(t, err)
	}
	sent(service.NotifyLoaded)
	e.notes.Fail = errors.New("gateway down")
	_, err = e.svc.Collect(e.ctx, "device:d", doc.ID)
	require.NoError(t, err)
	e.notes.Fail = nil
	before := len(e.notes.Sent())
	r, err := e.svc.Housekeep(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 0, r.Redelivered, "too early")
	e.clock.Add(61 * time.Second)
	r, err = e.svc.Housekeep(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, r.Redelivered)
	notes := e.notes.Sent()
	require.Len(t, notes, before+1)
	require.Equal(t, service.NotifyCollected, notes[len(notes)-1].Kind)
	sent(service.NotifyCollected)
	e.clock.Add(time.Hour)
	r, err = e.svc.Housekeep(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 0, r.Redelivered)
}
