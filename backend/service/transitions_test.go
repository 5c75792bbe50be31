package service_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/lifecycle"
	"kluis/backend/service"
	"kluis/backend/store"
)

// reach brings a fresh document to state s through the service.
func (e *env) reach(s lifecycle.State) store.Document {
	e.t.Helper()
	d := e.register(store.EID, false)
	step := func(f func(string) (store.Document, error)) {
		e.t.Helper()
		var err error
		d, err = f(d.ID)
		require.NoError(e.t, err)
	}
	act := e.actions()
	path := map[lifecycle.State][]lifecycle.Action{
		lifecycle.Registered: {},
		lifecycle.Reserved:   {lifecycle.Reserve},
		lifecycle.Loaded:     {lifecycle.Reserve, lifecycle.Load},
		lifecycle.Notified:   {lifecycle.Reserve, lifecycle.Load, lifecycle.Notify},
		lifecycle.Collected:  {lifecycle.Reserve, lifecycle.Load, lifecycle.Collect},
		lifecycle.Expired:    {lifecycle.Reserve, lifecycle.Load, lifecycle.Expire},
		lifecycle.Retrieved:  {lifecycle.Reserve, lifecycle.Load, lifecycle.Expire, lifecycle.Retrieve},
		lifecycle.Cancelled:  {lifecycle.Cancel},
	}[s]
	for _, a := range path {
		step(act[a])
	}
	require.Equal(e.t, s, d.State)
	return d
}

// actions maps every action to the service call, as user:counter1.
func (e *env) actions() map[lifecycle.Action]func(id string) (store.Document, error) {
	const who = "user:counter1"
	ctx := e.ctx
	return map[lifecycle.Action]func(string) (store.Document, error){
		lifecycle.Reserve: func(id string) (store.Document, error) {
			return e.svc.Reserve(ctx, who, id, service.ReserveOptions{})
		},
		lifecycle.Unreserve: func(id string) (store.Document, error) { return e.svc.Unreserve(ctx, who, id) },
		lifecycle.Load:      func(id string) (store.Document, error) { return e.svc.Load(ctx, who, id) },
		lifecycle.Notify:    func(id string) (store.Document, error) { return e.svc.MarkNotified(ctx, who, id) },
		lifecycle.Renotify:  func(id string) (store.Document, error) { return e.svc.Renotify(ctx, who, id) },
		lifecycle.Collect:   func(id string) (store.Document, error) { return e.svc.Collect(ctx, who, id) },
		lifecycle.Expire: func(id string) (store.Document, error) {
			// past every deadline, then back
			e.clock.Set(t0.Add(30 * 24 * time.Hour))
			defer e.clock.Set(t0)
			return e.svc.Expire(ctx, who, id)
		},
		lifecycle.Retrieve: func(id string) (store.Document, error) { return e.svc.Retrieve(ctx, who, id) },
		lifecycle.Cancel:   func(id string) (store.Document, error) { return e.svc.Cancel(ctx, who, id, "holder moved") },
		lifecycle.Reissue:  func(id string) (store.Document, error) { return e.svc.Reissue(ctx, who, id) },
	}
}

// compartmentAfter is the compartment state expected after a document
// reaches a state by an action.
func compartmentAfter(to lifecycle.State) store.CompartmentState {
	switch to {
	case lifecycle.Reserved:
		return store.CompartmentReserved
	case lifecycle.Loaded, lifecycle.Notified, lifecycle.Expired:
		return store.CompartmentLoaded
	}
	return store.CompartmentFree
}

func TestEveryTransitionThroughTheService(t *testing.T) {
	e := newEnv(t, nil)
	dev := e.device("locker-1", uniform(90, store.SizeS, 150)...)
	act := e.actions()
	allowed, forbidden := 0, 0
	for _, from := range lifecycle.States() {
		for _, a := range lifecycle.Actions() {
			t.Run(fmt.Sprintf("%s from %s", a, from), func(t *testing.T) {
				e.t = t
				before := e.reach(from)
				wantTo, checkErr := lifecycle.Check(from, a)
				got, err := act[a](before.ID)
				if checkErr != nil {
					forbidden++
					require.Error(t, err)
					require.True(t, errors.Is(err, service.ErrForbiddenTransition), "%v", err)
					require.Contains(t, err.Error(), fmt.Sprintf("cannot %s a document that is %s", a, from))
					after, err := e.svc.GetDocument(e.ctx, before.ID)
					require.NoError(t, err)
					require.Equal(t, before, after, "a refused action changes nothing")
					return
				}
				allowed++
				require.NoError(t, err)
				require.Equal(t, wantTo, got.State)
				require.Equal(t, before.Version+1, got.Version)
				hist, err := e.svc.History(e.ctx, got.ID)
				require.NoError(t, err)
				last := hist[len(hist)-1]
				require.Equal(t, a, last.Action)
				require.Equal(t, from, last.From)
				require.Equal(t, wantTo, last.To)
				require.Equal(t, "user:counter1", last.Actor)
				require.Equal(t, "register", string(hist[0].Action))
				if got.CompartmentID != 0 {
					require.Equal(t, dev.ID, got.DeviceID)
					require.Equal(t, compartmentAfter(wantTo), e.compartment(got.CompartmentID).State)
				} else {
					require.False(t, wantTo.Occupies())
				}
				if before.CompartmentID != 0 && got.CompartmentID != before.CompartmentID {
					require.Equal(t, store.CompartmentFree, e.compartment(before.CompartmentID).State)
				}
				require.Equal(t, wantTo.Final(), got.ClosedAt != nil)
			})
		}
	}
	e.t = t
	require.Equal(t, len(lifecycle.Transitions()), allowed)
	require.Equal(t, 8*10-allowed, forbidden)
	// The audit chain of all of it verifies.
	rep, err := audit.Verify(e.ctx, e.st.Pool())
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.Reason)
	require.Greater(t, rep.Records, 200)
	// No compartment is left with two documents, and occupancy matches.
	counts, err := e.svc.DocumentCountsByState(e.ctx)
	require.NoError(t, err)
	d, err := e.svc.GetDevice(e.ctx, dev.ID)
	require.NoError(t, err)
	held := 0
	for _, c := range d.Compartments {
		if c.State != store.CompartmentFree {
			held++
		}
	}
	require.Equal(t, counts["reserved"]+counts["loaded"]+counts["notified"]+counts["expired"], held)
}
