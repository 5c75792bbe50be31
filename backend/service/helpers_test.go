package service_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/service"
	"kluis/backend/service/servicetest"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
)

// t0 is a Monday morning in Kortrijk.
var t0 = time.Date(2026, 3, 23, 9, 0, 0, 0, time.UTC)

type env struct {
	t      *testing.T
	ctx    context.Context
	st     *store.Store
	svc    *service.Service
	clock  *storetest.Clock
	codes  *servicetest.Codes
	notes  *servicetest.Notifier
	purger *servicetest.Purger
	seq    atomic.Int64
}

func newEnv(t *testing.T, mod func(*service.Options)) *env {
	t.Helper()
	e := &env{t: t, ctx: context.Background(), clock: storetest.NewClock(t0),
		codes: &servicetest.Codes{}, notes: &servicetest.Notifier{}, purger: &servicetest.Purger{}}
	e.st = storetest.NewWithOptions(t, store.Options{Clock: e.clock.Now})
	opts := service.Options{Store: e.st, Clock: e.clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Codes: e.codes, Notifier: e.notes, Purger: e.purger, PseudonymKey: []byte("test-key")}
	if mod != nil {
		mod(&opts)
	}
	svc, err := service.New(opts)
	require.NoError(t, err)
	e.svc = svc
	_, err = svc.CreateSite(e.ctx, "user:admin", store.NewSite{ID: "kortrijk", Name: "Stadhuis Kortrijk"})
	require.NoError(t, err)
	return e
}

// device creates a locker with the given compartments (sizes and heights).
func (e *env) device(id string, comps ...store.NewCompartment) store.Device {
	e.t.Helper()
	for i := range comps {
		comps[i].Board, comps[i].Channel = i/48, i%48 // channels 0-47 per board
	}
	d, err := e.svc.CreateDevice(e.ctx, "user:admin", store.NewDevice{ID: id, SiteID: "kortrijk", Kind: store.Locker,
		Compartments: comps})
	require.NoError(e.t, err)
	return d
}

// uniform returns n compartments of one size and height.
func uniform(n int, size store.Size, height int) []store.NewCompartment {
	out := make([]store.NewCompartment, n)
	for i := range out {
		out[i] = store.NewCompartment{Size: size, HeightCM: height}
	}
	return out
}

func (e *env) newDoc(kind store.DocumentKind, low bool) store.NewDocument {
	n := e.seq.Add(1)
	return store.NewDocument{Kind: kind, Number: fmt.Sprintf("592-%07d-01", n), FirstName: "Jan", LastName: "Peeters",
		BirthDate: new(time.Date(1980, 2, 3, 0, 0, 0, 0, time.UTC)), Language: "nl", Email: "jan@example.be",
		Mobile: "0470 12 34 56", WantsLow: low, SiteID: "kortrijk"}
}

func (e *env) register(kind store.DocumentKind, low bool) store.Document {
	e.t.Helper()
	d, err := e.svc.RegisterDocument(e.ctx, "user:counter1", e.newDoc(kind, low))
	require.NoError(e.t, err)
	return d
}

// compartment reads a compartment's current row.
func (e *env) compartment(id int64) store.Compartment {
	e.t.Helper()
	c, err := store.GetCompartment(e.ctx, e.st.Pool(), id)
	require.NoError(e.t, err)
	return c
}
