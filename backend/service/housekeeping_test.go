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
