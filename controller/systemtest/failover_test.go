package systemtest

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"kluis/backend/pgtest/pgpair"
)

// TestDatabaseFailover gives kluis-backend a primary and a synchronous
// streaming standby (backend/pgtest/pgpair) as one multi-host URL with
// target_session_attrs=read-write. While a citizen's door is open the
// primary's machine dies (SIGKILL of all its processes) and the standby is
// promoted; the citizen finishes meanwhile. The backend finds the new
// primary by itself: the pickup event is applied once, what it had
// acknowledged before (documents registered and loaded) is all there, new
// registrations, loads and online verifications work, the audit chain
// verifies.
func TestDatabaseFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("system test: starts two PostgreSQL clusters, Mosquitto, the backend, the simulator and kluisd")
	}
	parallelWorld(t)
	pair := pgpair.Start(t)
	pair.CreateDatabase("kluis")
	w, mosq := newMosquittoWorldWith(t, mosquittoWorldOptions{dbURL: pair.URL("kluis")})
	locker := w.nodes[lockerID]
	ctx := context.Background()
	defer func() {
		if t.Failed() {
			t.Logf("--- kluisd ---\n%s\n--- kluis-backend ---\n%s\n--- mosquitto ---\n%s\n--- primary ---\n%s\n--- standby ---\n%s",
				locker.proc.Tail(3000), w.backend.Tail(6000), mosq.Log(), pair.Log("primary"), pair.Log("standby"))
		}
	}()

	before := w.register("driving_licence", lockerID)
	w.load(before)
	w.collect(before, map[string]string{"qr": before.mail.QR})
	d := w.register("driving_licence", lockerID)
	w.load(d)
	waiting := w.register("driving_licence", lockerID) // acknowledged to staff, nothing more

	p0 := w.pulseCount(lockerID)
	w.pickupOpens(d, map[string]string{"pin": d.mail.PIN, "birth_date": d.birth})
	pair.KillPrimary()
	w.takeAndClose(d)
	w.waitScreen(locker, "done")
	time.Sleep(time.Second) // the backend meets the dead primary alone for a moment
	pair.Promote()

	w.waitState(d, "collected")
	if !strings.Contains(w.backend.Tail(1<<30), "event not applied; not acknowledged") {
		t.Fatal("the backend never met the dead primary: the failover was not exercised")
	}
	w.waitBacklogEmpty(locker)
	w.exactlyOnePulse(lockerID, p0, d.comp.Board, d.comp.Channel)
	if n := w.historyCount(d, "collected"); n != 1 {
		t.Fatalf("collected %d times", n)
	}
	for _, x := range []struct {
		d     *doc
		state string
	}{{before, "collected"}, {waiting, "registered"}} {
		got, err := w.staff.Document(ctx, x.d.ID)
		if err != nil || got.State != x.state {
			t.Fatalf("after the failover %s is %q (%v), want %s", x.d.number, got.State, err, x.state)
		}
	}
	if !w.backend.Running() {
		t.Fatal("kluis-backend exited with the primary")
	}
	if err := doJSON(ctx, http.MethodGet, w.apiBase+"/readyz", "", nil, nil); err != nil {
		t.Fatalf("readyz after the failover: %v", err)
	}
	// New work on the new primary: load, verify online, collect.
	w.load(waiting)
	w.collect(waiting, map[string]string{"qr": waiting.mail.QR})
	var rep struct {
		OK     bool   `json:"ok"`
		Reason string `json:"reason"`
	}
	if err := w.admin.Do(ctx, http.MethodGet, "/api/v1/audit/verify", nil, &rep); err != nil || !rep.OK {
		t.Fatalf("audit chain: %+v (%v)", rep, err)
	}
}
