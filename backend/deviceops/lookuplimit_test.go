package deviceops_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/deviceops"
	"kluis/backend/store"
	"kluis/controller/wire"
)

// A kiosk staff session could look documents up by number without bound:
// someone logged in (or at a kiosk left logged in) could try numbers one
// after another and learn which exist. Now every lookup that finds nothing
// is audited (kiosk.lookup_miss); the session's fifth miss ends it
// (session_expired with expires, audited kiosk.session_ended), and the
// device's twelfth within an hour pauses lookups there, for every
// session and on every replica, until the oldest leaves the hour (denied
// with the pause's end in expires). Found documents count for nothing.
func TestKioskLookupMissesEndTheSessionAndPauseTheDevice(t *testing.T) {
	e := newEnv(t)
	as := e.kioskAuth(t)
	pin := e.counterClerk(t, as)
	replica := func() *deviceops.Staff {
		return deviceops.NewStaff(deviceops.StaffOptions{Auth: as, Service: e.svc, Pool: e.st.Pool(), Clock: e.clock.Now,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}
	hs := []*deviceops.Staff{replica(), replica()}
	n := 0
	ask := func(dev string, req wire.StaffRequest) wire.StaffResponse {
		n++
		req.ID, req.At = wire.NewID(e.clock.Now()), e.clock.Now()
		return hs[n%2].HandleStaff(e.ctx, dev, req)
	}
	login := func(dev string) string {
		t.Helper()
		r := ask(dev, wire.StaffRequest{Op: wire.StaffLogin, PIN: pin})
		require.Equal(t, wire.StaffOK, r.Result)
		return r.Session
	}
	doc, _ := e.loaded(store.EID, "591-1234567-89", "k1")
	lookup := func(dev, session, number string) wire.StaffResponse {
		return ask(dev, wire.StaffRequest{Op: wire.StaffRetrieve, Session: session, DocumentNumber: number})
	}

	// The first session: four misses are not_found, a found document in
	// between is found and counts for nothing, the fifth ends it.
	s1 := login("k1")
	for i := 0; i < 4; i++ {
		r := lookup("k1", s1, "591-0000000-0"+string(rune('0'+i)))
		require.Equal(t, wire.StaffNotFound, r.Result, "miss %d", i+1)
		assert.Nil(t, r.Expires)
		if i == 1 {
			require.Equal(t, wire.StaffOK, lookup("k1", s1, doc.Number).Result)
		}
	}
	r := lookup("k1", s1, "591-0000000-05")
	require.Equal(t, wire.StaffSessionExpired, r.Result, "the fifth miss ends the session")
	require.NotNil(t, r.Expires, "with when it ended: the kiosk says why")
	assert.WithinDuration(t, e.clock.Now(), *r.Expires, time.Second)
	require.NoError(t, (&wire.StaffResponse{V: 1, ID: "x", Op: wire.StaffRetrieve, Result: r.Result, Expires: r.Expires}).Validate())
	r = lookup("k1", s1, doc.Number)
	assert.Equal(t, wire.StaffSessionExpired, r.Result, "the session is gone")
	assert.Nil(t, r.Expires, "a plain expiry says nothing more")

	// Another session on another device counts on its own.
	s2 := login("k2")
	assert.Equal(t, wire.StaffNotFound, lookup("k2", s2, "591-0000000-99").Result)

	// Two more sessions on k1: the device's twelfth miss within the hour
	// pauses lookups there until the first leaves the hour.
	first := e.clock.Now()
	e.clock.Add(time.Minute)
	s3 := login("k1")
	for i := 0; i < 4; i++ {
		require.Equal(t, wire.StaffNotFound, lookup("k1", s3, "591-0000001-0"+string(rune('0'+i))).Result)
	}
	require.Equal(t, wire.StaffSessionExpired, lookup("k1", s3, "591-0000001-09").Result) // 10 on k1
	s4 := login("k1")
	require.Equal(t, wire.StaffNotFound, lookup("k1", s4, "591-0000002-00").Result) // 11
	r = lookup("k1", s4, "591-0000002-01")                                          // 12
	require.Equal(t, wire.StaffDenied, r.Result, "the device's twelfth miss pauses its lookups")
	require.NotNil(t, r.Expires)
	assert.True(t, r.Expires.Equal(first.Add(time.Hour)), "the pause ends when the first miss leaves the hour: %v", r.Expires)
	pause := *r.Expires
	for _, number := range []string{doc.Number, "591-0000002-02"} {
		r = lookup("k1", s4, number)
		assert.Equal(t, wire.StaffDenied, r.Result, "under the pause no lookup is made, found or not")
		require.NotNil(t, r.Expires)
		assert.Equal(t, pause, *r.Expires)
	}
	assert.NotEqual(t, wire.StaffSessionExpired, ask("k1", wire.StaffRequest{Op: wire.StaffClearLockout, Session: s4}).Result,
		"the session itself goes on")
	assert.Equal(t, wire.StaffNotFound, lookup("k2", s2, "591-0000000-98").Result, "k2 is not paused")

	e.clock.Set(pause)
	s5 := login("k1")
	assert.Equal(t, wire.StaffOK, lookup("k1", s5, doc.Number).Result, "after the pause")

	// Every miss is audited, with the counts and without the number.
	recs, err := audit.List(e.ctx, e.st.Pool(), audit.ListOptions{Subject: "device:k1", Limit: 200})
	require.NoError(t, err)
	var misses, ended, refused int
	for _, rec := range recs {
		switch rec.Action {
		case "kiosk.lookup_miss":
			misses++
			assert.NotContains(t, string(rec.Details), "591-", "the number typed is not in the audit trail")
			assert.Contains(t, string(rec.Details), "session_misses")
		case "kiosk.session_ended":
			ended++
		case "kiosk.lookup_refused":
			refused++
		}
	}
	assert.Equal(t, 12, misses, "every miss on k1")
	assert.Equal(t, 2, ended)
	assert.Equal(t, 2, refused)
	assert.Equal(t, 2, auditCount(t, e, "kiosk.lookup_miss")-misses, "k2's own")

	// The misses go after the hour (none had left it at a write).
	k, err := deviceops.PruneKioskLookups(e.ctx, e.st.Pool(), e.clock.Now().Add(time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 14, k)
}

// The pause check, the lookup and the count of its miss were separate
// steps: lookups on one device at once all passed the check before any
// miss was counted, and the device's misses went past 12 (and a session's
// past 5). Now they are one transaction under the device's lock: with 48
// lookups at once over two replicas, from four sessions, exactly 12 are
// made and counted, none of a session after its fifth, and every other is
// refused (paused) or finds its session ended, never made.
func TestKioskLookupBoundsExactUnderConcurrency(t *testing.T) {
	e := newEnv(t)
	pin, replica := e.kioskStaff(t)
	hs := []*deviceops.Staff{replica(), replica()}
	ask := func(i int, req wire.StaffRequest) wire.StaffResponse {
		req.ID, req.At = wire.NewID(e.clock.Now()), e.clock.Now()
		return hs[i%2].HandleStaff(e.ctx, "k1", req)
	}
	var sessions []string
	for i := 0; i < 4; i++ {
		r := ask(i, wire.StaffRequest{Op: wire.StaffLogin, PIN: pin})
		require.Equal(t, wire.StaffOK, r.Result)
		sessions = append(sessions, r.Session)
	}

	const n = 48
	results := make([]wire.StaffResponse, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			op := wire.StaffRetrieve
			if i%3 == 0 {
				op = wire.StaffReserve
			}
			results[i] = ask(i, wire.StaffRequest{Op: op, Session: sessions[i%len(sessions)], DocumentNumber: fmt.Sprintf("591-0000009-%02d", i)})
		}()
	}
	close(start)
	wg.Wait()

	count := map[wire.StaffResult]int{}
	for _, r := range results {
		count[r.Result]++
	}
	var rows, worst int
	require.NoError(t, e.st.Pool().QueryRow(e.ctx, `SELECT coalesce(sum(c), 0), coalesce(max(c), 0) FROM
		(SELECT count(*) AS c FROM kiosk_lookup_misses WHERE device_id = 'k1' GROUP BY token_id) s`).Scan(&rows, &worst))
	assert.Equal(t, 12, rows, "exactly the device's bound is counted: %v", count)
	assert.LessOrEqual(t, worst, 5, "no session past its bound")
	assert.Equal(t, 12, auditCount(t, e, "kiosk.lookup_miss"), "exactly 12 lookups were made, each audited")
	assert.Equal(t, n-12, auditCount(t, e, "kiosk.lookup_refused")+count[wire.StaffSessionExpired]-auditCount(t, e, "kiosk.session_ended"),
		"every other lookup was refused under the pause or found its session ended, unmade: %v", count)
	assert.Zero(t, count[wire.StaffUnavailable], "%v", count)
}

// wrong_state (the document exists, in a state the session may not act
// on: not yet loaded for a retrieve, already loaded for a reserve) was not
// a miss: a staff member probing numbers learnt for free that one exists,
// and told the two apart by which lookups used up the session. Now it is
// a miss like not_found: counted, audited kiosk.lookup_miss with the
// outcome (not the number), and it may end the session; the answer stays
// wrong_state, which tells the staff member the number is right.
func TestKioskLookupWrongStateIsAMiss(t *testing.T) {
	e := newEnv(t)
	pin, replica := e.kioskStaff(t)
	h := replica()
	ask := func(req wire.StaffRequest) wire.StaffResponse {
		req.ID, req.At = wire.NewID(e.clock.Now()), e.clock.Now()
		return h.HandleStaff(e.ctx, "k1", req)
	}
	loaded, _ := e.loaded(store.EID, "591-1234567-89", "k1")
	reg, err := e.svc.RegisterDocument(e.ctx, "user:1", store.NewDocument{Kind: store.EID, Number: "591-2222222-22",
		FirstName: "Els", LastName: "Claes", BirthDate: new(time.Date(1990, 3, 4, 0, 0, 0, 0, time.UTC)), Language: "fr",
		Email: "els@example.be", SiteID: "kortrijk"})
	require.NoError(t, err)
	login := ask(wire.StaffRequest{Op: wire.StaffLogin, PIN: pin})
	require.Equal(t, wire.StaffOK, login.Result)
	s := login.Session

	for i := 0; i < 2; i++ {
		r := ask(wire.StaffRequest{Op: wire.StaffRetrieve, Session: s, DocumentNumber: reg.Number})
		assert.Equal(t, wire.StaffWrongState, r.Result, "not in a compartment yet")
		assert.Nil(t, r.Expires)
		r = ask(wire.StaffRequest{Op: wire.StaffReserve, Session: s, DocumentNumber: loaded.Number})
		assert.Equal(t, wire.StaffWrongState, r.Result, "already loaded")
	}
	require.Equal(t, wire.StaffOK, ask(wire.StaffRequest{Op: wire.StaffRetrieve, Session: s, DocumentNumber: loaded.Number}).Result,
		"a document the session may act on counts for nothing")
	r := ask(wire.StaffRequest{Op: wire.StaffRetrieve, Session: s, DocumentNumber: reg.Number})
	require.Equal(t, wire.StaffSessionExpired, r.Result, "the fifth miss, a wrong_state, ends the session")
	require.NotNil(t, r.Expires)

	recs, err := audit.List(e.ctx, e.st.Pool(), audit.ListOptions{Subject: "device:k1", Limit: 50})
	require.NoError(t, err)
	outcomes := map[string]int{}
	for _, rec := range recs {
		if rec.Action == "kiosk.lookup_miss" {
			var d struct {
				Outcome string `json:"outcome"`
			}
			require.NoError(t, json.Unmarshal(rec.Details, &d))
			outcomes[d.Outcome]++
			assert.NotContains(t, string(rec.Details), "591-", "the number typed is not in the audit trail")
			assert.NotContains(t, string(rec.Details), "5912", "the number typed is not in the audit trail")
		}
	}
	assert.Equal(t, map[string]int{"wrong_state": 5}, outcomes)
}

// kioskStaff creates the counter clerk (kioskAuth, counterClerk) and
// returns the PIN and a maker of backend replicas' kiosk staff handlers.
func (e *env) kioskStaff(t *testing.T) (pin string, replica func() *deviceops.Staff) {
	t.Helper()
	as := e.kioskAuth(t)
	pin = e.counterClerk(t, as)
	return pin, func() *deviceops.Staff {
		return deviceops.NewStaff(deviceops.StaffOptions{Auth: as, Service: e.svc, Pool: e.st.Pool(), Clock: e.clock.Now,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}
}
