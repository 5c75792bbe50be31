package service_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/service"
	"kluis/backend/store"
)

func TestFiftyConcurrentReservationsOnTwentyFourCompartments(t *testing.T) {
	e := newEnv(t, nil)
	e.device("locker-24", uniform(24, store.SizeM, 150)...)
	const n = 50
	docs := make([]store.Document, n)
	for i := range docs {
		docs[i] = e.register(store.EID, false)
	}
	var wg sync.WaitGroup
	results := make([]error, n)
	got := make([]store.Document, n)
	start := make(chan struct{})
	for i := range docs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got[i], results[i] = e.svc.Reserve(e.ctx, "user:counter1", docs[i].ID, service.ReserveOptions{DeviceID: "locker-24"})
		}()
	}
	close(start)
	wg.Wait()
	ok, conflict := 0, 0
	used := map[int64]string{}
	for i, err := range results {
		switch {
		case err == nil:
			ok++
			require.NotZero(t, got[i].CompartmentID)
			prev, dup := used[got[i].CompartmentID]
			require.False(t, dup, "compartment %d given to %s and %s", got[i].CompartmentID, prev, got[i].ID)
			used[got[i].CompartmentID] = got[i].ID
		case errors.Is(err, service.ErrNoCompartment):
			require.ErrorIs(t, err, service.ErrConflict)
			conflict++
		default:
			t.Fatalf("reservation %d: unexpected error %v", i, err)
		}
	}
	require.Equal(t, 24, ok)
	require.Equal(t, 26, conflict)
	d, err := e.svc.GetDevice(e.ctx, "locker-24")
	require.NoError(t, err)
	for _, c := range d.Compartments {
		require.Equal(t, store.CompartmentReserved, c.State, "compartment %d", c.Number)
	}
	counts, err := e.svc.DocumentCountsByState(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 24, counts["reserved"])
	require.Equal(t, 26, counts["registered"])
	rep, err := audit.Verify(e.ctx, e.st.Pool())
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.Reason)
}

func TestReserveFitsSizeAndHeight(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("mixed",
		store.NewCompartment{Size: store.SizeS, HeightCM: 170}, // 1
		store.NewCompartment{Size: store.SizeS, HeightCM: 60},  // 2 low S
		store.NewCompartment{Size: store.SizeM, HeightCM: 170}, // 3
		store.NewCompartment{Size: store.SizeL, HeightCM: 20},  // 4 low L
	)
	byID := map[int64]int{}
	for _, c := range d.Compartments {
		byID[c.ID] = c.Number
	}
	reserve := func(kind store.DocumentKind, low bool) (int, error) {
		doc := e.register(kind, low)
		r, err := e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{})
		return byID[r.CompartmentID], err
	}
	n, err := reserve(store.Passport, false) // needs M: smallest fitting is 3
	require.NoError(t, err)
	require.Equal(t, 3, n)
	n, err = reserve(store.EID, true) // low wish: 2
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = reserve(store.DrivingLicence, false) // S, high first: 1
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = reserve(store.Passport, false) // M left? only L low (4) fits
	require.NoError(t, err)
	_, err = reserve(store.EID, true) // nothing low left
	require.ErrorIs(t, err, service.ErrNoCompartment)
	require.Contains(t, err.Error(), "at most 120 cm high")
}

func TestReserveNeverPutsPassportInSmall(t *testing.T) {
	e := newEnv(t, nil)
	e.device("small", uniform(3, store.SizeS, 100)...)
	doc := e.register(store.Passport, false)
	_, err := e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{})
	require.ErrorIs(t, err, service.ErrNoCompartment)
	got, err := e.svc.GetDocument(e.ctx, doc.ID)
	require.NoError(t, err)
	require.Equal(t, doc, got, "a refused reservation changes nothing")
}

func TestReserveDeviceChoiceAndOutOfService(t *testing.T) {
	e := newEnv(t, nil)
	a := e.device("a", uniform(1, store.SizeS, 150)...)
	e.device("b", uniform(1, store.SizeS, 150)...)
	_, err := e.svc.CreateSite(e.ctx, "user:admin", store.NewSite{ID: "gent", Name: "Gent"})
	require.NoError(t, err)
	_, err = e.svc.CreateDevice(e.ctx, "user:admin", store.NewDevice{ID: "g", SiteID: "gent", Kind: store.Automaton,
		Compartments: uniform(1, store.SizeL, 100)})
	require.NoError(t, err)

	doc := e.register(store.EID, false)
	_, err = e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{DeviceID: "g"})
	require.ErrorIs(t, err, service.ErrInvalid, "device of another site")
	_, err = e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{DeviceID: "nope"})
	require.ErrorIs(t, err, service.ErrNotFound)

	// Out of service compartments are never chosen.
	c, err := e.svc.SetOutOfService(e.ctx, "user:tech", a.Compartments[0].ID, true, "lock jammed")
	require.NoError(t, err)
	require.Equal(t, store.CompartmentOutOfService, c.State)
	_, err = e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{DeviceID: "a"})
	require.ErrorIs(t, err, service.ErrNoCompartment)
	r, err := e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{})
	require.NoError(t, err)
	require.Equal(t, "b", r.DeviceID)

	// An occupied compartment cannot go out of service.
	_, err = e.svc.SetOutOfService(e.ctx, "user:tech", r.CompartmentID, true, "")
	require.ErrorIs(t, err, service.ErrConflict)
	// Back in service, and idempotent.
	c, err = e.svc.SetOutOfService(e.ctx, "user:tech", a.Compartments[0].ID, false, "")
	require.NoError(t, err)
	require.Equal(t, store.CompartmentFree, c.State)
	c, err = e.svc.SetOutOfService(e.ctx, "user:tech", a.Compartments[0].ID, false, "")
	require.NoError(t, err)
	require.Equal(t, store.CompartmentFree, c.State)
	_, err = e.svc.SetOutOfService(e.ctx, "user:tech", 999999, true, "")
	require.ErrorIs(t, err, service.ErrNotFound)
}

func TestSameDocumentReservedConcurrentlyOnce(t *testing.T) {
	e := newEnv(t, nil)
	e.device("d", uniform(10, store.SizeS, 150)...)
	doc := e.register(store.EID, false)
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		require.ErrorIs(t, err, service.ErrForbiddenTransition)
	}
	require.Equal(t, 1, ok)
	d, err := e.svc.GetDevice(e.ctx, "d")
	require.NoError(t, err)
	held := 0
	for _, c := range d.Compartments {
		if c.State == store.CompartmentReserved {
			held++
		}
	}
	require.Equal(t, 1, held, "no compartment leaked")
}

func TestRecordEvent(t *testing.T) {
	e := newEnv(t, nil)
	rec, err := e.svc.RecordEvent(e.ctx, audit.Entry{Actor: "device:d", Action: "door.forced", Subject: "device:d",
		Details: map[string]any{"compartment": 3}})
	require.NoError(t, err)
	require.Equal(t, t0, rec.At)
	require.Greater(t, rec.Pending, int64(0), "queued for the chain")
	recs, err := audit.List(e.ctx, e.st.Pool(), audit.ListOptions{Subject: "device:d"}) // chains first
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, "door.forced", recs[0].Action)
	require.Greater(t, recs[0].Seq, int64(0))
	_, err = e.svc.RecordEvent(e.ctx, audit.Entry{Actor: "mallory", Action: "x"})
	require.ErrorIs(t, err, service.ErrInvalid)
	_, err = e.svc.RecordEvent(e.ctx, audit.Entry{Actor: "system"})
	require.ErrorIs(t, err, service.ErrInvalid)
}

// A device holds at most MaxPerDevice documents with live codes, whatever
// its number of compartments (the code security bound), exactly under
// concurrency; reservations without a device go to one with room.
func TestReserveCapPerDevice(t *testing.T) {
	e := newEnv(t, func(o *service.Options) { o.MaxPerDevice = 3 })
	e.device("big", uniform(6, store.SizeM, 150)...)
	const n = 8
	docs := make([]store.Document, n)
	for i := range docs {
		docs[i] = e.register(store.EID, false)
	}
	var wg sync.WaitGroup
	results := make([]error, n)
	start := make(chan struct{})
	for i := range docs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, results[i] = e.svc.Reserve(e.ctx, "user:counter1", docs[i].ID, service.ReserveOptions{DeviceID: "big"})
		}()
	}
	close(start)
	wg.Wait()
	ok := 0
	for i, err := range results {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, service.ErrNoCompartment):
			require.ErrorIs(t, err, service.ErrConflict)
		default:
			t.Fatalf("reservation %d: %v", i, err)
		}
	}
	require.Equal(t, 3, ok, "the cap, not the compartments, limits the device")

	e.device("small", uniform(2, store.SizeM, 150)...)
	var spare string
	for i, err := range results {
		if err != nil {
			spare = docs[i].ID
			break
		}
	}
	d, err := e.svc.Reserve(e.ctx, "user:counter1", spare, service.ReserveOptions{})
	require.NoError(t, err)
	require.Equal(t, "small", d.DeviceID, "a full device is skipped")
}
