package systemtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"kluis/backend/broker/mosquittotest"
	"kluis/backend/notify"
	"kluis/controller/daemon/daemonclient"
	"kluis/controller/engine"
	"kluis/deploy/dev/testenv"
)

// replica is one kluis-backend process of several on one database and one
// broker. Its database sessions carry its name (PGAPPNAME), so that the
// test can see in pg_stat_activity which replica is inside a transaction.
type replica struct {
	name string // kluis-replica-a, also its application_name
	api  string // http://127.0.0.1:port
	env  []string
	proc *proc
}

// replicaArgs are the replicas' flags: housekeeping every second, a
// residence card expires 20 s after loading and a passport 2 minutes
// after (so that both are due for a reminder at once), codes given back 5 s
// after an unfollowed verification.
var replicaArgs = []string{"serve", "-housekeep-every", "1s", "-pickup-period", "residence_card=20s,passport=120s",
	"-code-sync-every", "2s", "-open-timeout", "10s", "-audit-verify-every", "0", "-rearm-unfollowed-after", "5s"}

// newReplicaWorld is the Mosquitto world (deploy/mosquitto's configuration
// and ACL, with the ACL block of a second backend user uncommented as
// docs/operations.md says) with two kluis-backend replicas instead of one:
// kluis-replica-a logs in as kluis-backend, kluis-replica-b as
// kluis-backend-2; both share the database, the keys and the mail drop,
// and take device traffic through the shared subscriptions.
func newReplicaWorld(t *testing.T) (*world, *mosquittotest.Process, []*replica) {
	t.Helper()
	pass2 := "backend2-" + randomHex(16)
	w, mosq := newMosquittoWorldWith(t, mosquittoWorldOptions{
		acl: func(acl string) string {
			out := strings.Replace(acl, "#user kluis-backend-2\n#topic readwrite #\n", "user kluis-backend-2\ntopic readwrite #\n", 1)
			if out == acl {
				t.Fatal("deploy/mosquitto/acl has no commented block for kluis-backend-2")
			}
			return out
		},
		users: map[string]string{"kluis-backend-2": pass2},
	})
	// The world's backend made the data; the replicas take over.
	w.backend.Stop(10 * time.Second)
	a := &replica{name: "kluis-replica-a", api: w.apiBase, env: append(slices.Clone(w.env), "PGAPPNAME=kluis-replica-a")}
	b := &replica{name: "kluis-replica-b", api: "http://" + testenv.FreeAddr(t)}
	b.env = append(slices.Clone(w.env), "PGAPPNAME=kluis-replica-b", "KLUIS_HTTP_ADDR="+strings.TrimPrefix(b.api, "http://"),
		"MQTT_USERNAME=kluis-backend-2", "MQTT_PASSWORD="+pass2)
	rs := []*replica{a, b}
	w.startReplicas(rs...)
	w.backend = a.proc
	return w, mosq, rs
}

// startReplicas starts the replicas at once and waits until each serves
// and is connected to the broker.
func (w *world) startReplicas(rs ...*replica) {
	w.t.Helper()
	for _, r := range rs {
		r.proc = startProc(w.t, w.root, w.dir, r.name, "kluis-backend", replicaArgs, r.env, nil)
	}
	for _, r := range rs {
		testenv.MustPoll(w.t, 60*time.Second, r.name+" ready and on the broker", func(ctx context.Context) (bool, string, error) {
			if !r.proc.Running() {
				w.t.Fatalf("%s exited:\n%s", r.name, r.proc.Tail(3000))
			}
			s, err := daemonclient.Scrape(ctx, httpc, r.api+"/metrics")
			v := s.Value("kluis_devicelink_broker_connected", "")
			return err == nil && v == 1, fmt.Sprint(v), err
		})
	}
}

// use sends the test's REST calls to r.
func (w *world) use(r *replica) {
	w.apiBase, w.admin.Base, w.staff.Base = r.api, r.api, r.api
}

// other is the replica that is not r.
func other(rs []*replica, r *replica) *replica {
	if rs[0] == r {
		return rs[1]
	}
	return rs[0]
}

// killWaiting waits until a replica's database session waits for a lock
// the test holds (it is inside its transaction), kills that replica with
// SIGKILL and returns it.
func (w *world) killWaiting(db *pgx.Conn, rs []*replica) *replica {
	w.t.Helper()
	var name string
	testenv.MustPoll(w.t, 20*time.Second, "a replica waiting inside its transaction", func(ctx context.Context) (bool, string, error) {
		err := db.QueryRow(ctx, `SELECT coalesce(min(application_name), '') FROM pg_stat_activity
			WHERE datname = current_database() AND application_name LIKE 'kluis-replica-%' AND wait_event_type = 'Lock'`).Scan(&name)
		return err == nil && name != "", name, err
	})
	for _, r := range rs {
		if r.name == name {
			r.proc.Kill()
			w.t.Logf("%s killed inside its transaction", name)
			return r
		}
	}
	w.t.Fatalf("no replica named %q", name)
	return nil
}

// historyCount counts the document's transitions into state.
func (w *world) historyCount(d *doc, state string) int {
	w.t.Helper()
	got, err := w.staff.Document(context.Background(), d.ID)
	if err != nil {
		w.t.Fatal(err)
	}
	n := 0
	for _, h := range got.History {
		if h.To == state {
			n++
		}
	}
	return n
}

// notificationCount counts the document's sent notifications of kind.
func notificationCount(t *testing.T, db *pgx.Conn, d *doc, kind string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM notifications WHERE document_id = $1::uuid AND kind = $2 AND status = 'sent'`,
		d.ID, kind).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// refusedAgain presents a used code again: no door opens.
func (w *world) refusedAgain(d *doc, req map[string]string) {
	w.t.Helper()
	n := w.nodes[d.device]
	p0 := w.pulseCount(d.device)
	s := w.kioskPost(n, "/kiosk/v1/pickup", req)
	if s.State == "open" || s.State == "presenting" {
		w.t.Fatalf("a used code opened again: %s", s.State)
	}
	w.noPulse(d.device, p0)
}

// collectOnce finishes a pickup whose door is open and checks the
// invariants: exactly one pulse since p0, the document collected exactly
// once by the device, every event of kluisd acknowledged.
func (w *world) collectOnce(d *doc, p0 int) {
	w.t.Helper()
	w.takeAndClose(d)
	w.waitScreen(w.nodes[d.device], "done")
	w.waitState(d, "collected")
	w.waitBacklogEmpty(w.nodes[d.device])
	w.exactlyOnePulse(d.device, p0, d.comp.Board, d.comp.Channel)
	if n := w.historyCount(d, "collected"); n != 1 {
		w.t.Fatalf("document %s collected %d times", d.number, n)
	}
	if a := d.ActorOf("collected"); a != "device:"+d.device {
		w.t.Fatalf("collected by %q, want device:%s", a, d.device)
	}
}

// TestReplicas runs two kluis-backend replicas behind Mosquitto's shared
// subscriptions on one database and kills one with SIGKILL inside a code
// verification's transaction, inside a device event's transaction, and at
// seeded moments of pickups. Each time the door opens exactly once (online,
// or offline when the answer died with the replica), the document is
// collected exactly once, kluisd's outbox empties (every event applied),
// the code opens nothing a second time, and the killed replica rejoins.
func TestReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("system test: starts Mosquitto, two backends, the simulator and kluisd")
	}
	parallelWorld(t)
	w, mosq, rs := newReplicaWorld(t)
	locker := w.nodes[lockerID]
	ctx := context.Background()
	db, err := pgx.Connect(ctx, w.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	step := func(name string, fn func(t *testing.T)) {
		if !t.Run(name, func(t *testing.T) {
			w.t = t
			defer func() { w.t = t }()
			fn(t)
		}) {
			t.Logf("--- kluisd ---\n%s", locker.proc.Tail(4000))
			for _, r := range rs {
				t.Logf("--- %s ---\n%s", r.name, r.proc.Tail(4000))
			}
			t.Logf("--- mosquitto ---\n%s", mosq.Log())
			t.FailNow()
		}
	}

	step("both replicas serve the device", func(t *testing.T) {
		for range 2 {
			d := w.register("driving_licence", lockerID)
			w.load(d)
			p0 := w.pulseCount(lockerID)
			w.pickupOpens(d, map[string]string{"qr": d.mail.QR})
			w.collectOnce(d, p0)
		}
		for _, r := range rs {
			testenv.MustPoll(t, 20*time.Second, r.name+" handled device messages", func(ctx context.Context) (bool, string, error) {
				s, err := daemonclient.Scrape(ctx, httpc, r.api+"/metrics")
				v := s.Sum("kluis_devicelink_messages_total", `outcome="ok"`)
				return v > 0, fmt.Sprint(v), err
			})
		}
	})

	step("replica killed inside a verification", func(t *testing.T) {
		d := w.register("driving_licence", lockerID)
		w.load(d)
		testenv.MustPoll(t, 20*time.Second, "the code in kluisd's offline cache", func(context.Context) (bool, string, error) {
			return locker.inOfflineCache(d.ID), "", nil
		})
		// Hold the code's row: the verification stops right before the
		// claim, inside its transaction.
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `SELECT 1 FROM codes WHERE document_id = $1::uuid FOR UPDATE`, d.ID); err != nil {
			t.Fatal(err)
		}
		p0 := w.pulseCount(lockerID)
		screen := make(chan engine.Screen, 1)
		go func() {
			s, _ := locker.kiosk.Post(context.Background(), "/kiosk/v1/pickup", map[string]string{"qr": d.mail.QR})
			screen <- s
		}()
		victim := w.killWaiting(db, rs)
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		w.use(other(rs, victim))
		// The answer died with the replica: kluisd verifies offline.
		if s := <-screen; s.State != "open" {
			t.Fatalf("pickup: kiosk shows %s (%s)", s.State, s.Message)
		}
		w.waitDoor(lockerID, d.comp.Board, d.comp.Channel, true)
		w.collectOnce(d, p0)
		w.startReplicas(victim)
		w.refusedAgain(d, map[string]string{"qr": d.mail.QR})
		w.refusedAgain(d, map[string]string{"pin": d.mail.PIN, "birth_date": d.birth})
	})

	step("replica killed inside a device event", func(t *testing.T) {
		d := w.register("driving_licence", lockerID)
		w.load(d)
		p0 := w.pulseCount(lockerID)
		w.pickupOpens(d, map[string]string{"qr": d.mail.QR})
		// Hold the document's row: the pickup event's transaction stops
		// at the collect transition.
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `SELECT 1 FROM documents WHERE id = $1::uuid FOR UPDATE`, d.ID); err != nil {
			t.Fatal(err)
		}
		w.takeAndClose(d)
		w.waitScreen(locker, "done")
		victim := w.killWaiting(db, rs)
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		w.use(other(rs, victim))
		// kluisd resends what was not acknowledged; the other replica applies it.
		w.waitState(d, "collected")
		w.waitBacklogEmpty(locker)
		w.exactlyOnePulse(lockerID, p0, d.comp.Board, d.comp.Channel)
		if n := w.historyCount(d, "collected"); n != 1 {
			t.Fatalf("collected %d times", n)
		}
		w.startReplicas(victim)
		w.refusedAgain(d, map[string]string{"qr": d.mail.QR})
	})

	seed := uint64(15)
	if s := os.Getenv("KLUIS_REPLICA_SEED"); s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("KLUIS_REPLICA_SEED: %v", err)
		}
	}
	rounds := 2
	if s := os.Getenv("KLUIS_REPLICA_ROUNDS"); s != "" {
		if rounds, err = strconv.Atoi(s); err != nil {
			t.Fatalf("KLUIS_REPLICA_ROUNDS: %v", err)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x6b6c756973))
	for i := range rounds {
		victim := rs[rng.IntN(len(rs))]
		delay := time.Duration(rng.IntN(80)) * time.Millisecond
		usePIN := rng.IntN(2) == 0
		step(fmt.Sprintf("seed %d round %d: %s killed %v into a pickup", seed, i, victim.name, delay), func(t *testing.T) {
			d := w.register("driving_licence", lockerID)
			w.load(d)
			testenv.MustPoll(t, 20*time.Second, "the code in kluisd's offline cache", func(context.Context) (bool, string, error) {
				return locker.inOfflineCache(d.ID), "", nil
			})
			req := map[string]string{"qr": d.mail.QR}
			if usePIN {
				req = map[string]string{"pin": d.mail.PIN, "birth_date": d.birth}
			}
			w.use(other(rs, victim))
			p0 := w.pulseCount(lockerID)
			screen := make(chan engine.Screen, 1)
			go func() {
				s, _ := locker.kiosk.Post(context.Background(), "/kiosk/v1/pickup", req)
				screen <- s
			}()
			time.Sleep(delay)
			victim.proc.Kill()
			s := <-screen
			// Whatever the replica had done, a person trying again gets
			// the door, once (a code accepted by the dead replica whose
			// answer was lost is given back after -rearm-unfollowed-after).
			testenv.MustPoll(t, 30*time.Second, "the door opens for the citizen", func(ctx context.Context) (bool, string, error) {
				if s.State == "open" {
					return true, s.State, nil
				}
				time.Sleep(time.Second)
				var err error
				s, err = locker.kiosk.Post(ctx, "/kiosk/v1/pickup", req)
				return err == nil && s.State == "open", s.State, err
			})
			w.waitDoor(lockerID, d.comp.Board, d.comp.Channel, true)
			w.collectOnce(d, p0)
			w.startReplicas(victim)
			w.refusedAgain(d, req)
		})
	}

	step("audit chain intact", func(t *testing.T) {
		var rep struct {
			OK     bool   `json:"ok"`
			Reason string `json:"reason"`
		}
		if err := w.admin.Do(ctx, http.MethodGet, "/api/v1/audit/verify", nil, &rep); err != nil || !rep.OK {
			t.Fatalf("audit chain: %+v (%v)", rep, err)
		}
		w.allShut(lockerID)
	})
}

// TestReplicaJobsRunOnce: reminders and housekeeping on two replicas. The
// reminder lock (a PostgreSQL advisory lock) holds across processes: while
// the test holds it, both replicas skip their reminder pass; released, one
// replica reminds and the other, starting later, finds nothing due. The
// expiry sweep runs every second on both: the document expires once and
// its holder gets one expiry message.
func TestReplicaJobsRunOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("system test: starts Mosquitto, two backends, the simulator and kluisd")
	}
	parallelWorld(t)
	w, _, rs := newReplicaWorld(t)
	ctx := context.Background()
	db, err := pgx.Connect(ctx, w.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	defer func() {
		if t.Failed() {
			for _, r := range rs {
				t.Logf("--- %s ---\n%s", r.name, r.proc.Tail(4000))
			}
		}
	}()
	expiring := w.register(expiryKind, lockerID) // 20 s
	w.load(expiring)
	due := w.register("passport", lockerID) // 2 minutes: due for a reminder, not expiring yet
	w.load(due)

	// Another session holds the reminder lock: both replicas, restarted
	// together, skip their first pass.
	if _, err := db.Exec(ctx, "SELECT pg_advisory_lock($1)", notify.ReminderLockKey); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		r.proc.Kill()
	}
	w.startReplicas(rs...)
	for _, r := range rs {
		testenv.MustPoll(t, 20*time.Second, r.name+" skipped its reminder pass", func(ctx context.Context) (bool, string, error) {
			s, err := daemonclient.Scrape(ctx, httpc, r.api+"/metrics")
			v := s.Value("kluis_reminder_passes_total", `result="skipped"`)
			return v == 1, fmt.Sprint(v), err
		})
	}
	if n := notificationCount(t, db, due, "reminder"); n != 0 {
		t.Fatalf("%d reminders sent while another session held the lock", n)
	}
	if _, err := db.Exec(ctx, "SELECT pg_advisory_unlock($1)", notify.ReminderLockKey); err != nil {
		t.Fatal(err)
	}
	// A replica restarted now reminds; the other one after it finds nothing due.
	for _, r := range rs {
		r.proc.Kill()
		w.startReplicas(r)
		w.use(r)
		testenv.MustPoll(t, 20*time.Second, r.name+" made its reminder pass", func(ctx context.Context) (bool, string, error) {
			s, err := daemonclient.Scrape(ctx, httpc, r.api+"/metrics")
			v := s.Value("kluis_reminder_passes_total", `result="done"`)
			return v == 1, fmt.Sprint(v), err
		})
		if n := notificationCount(t, db, due, "reminder"); n != 1 {
			t.Fatalf("after %s's pass: %d reminders, want 1", r.name, n)
		}
	}
	if n := notificationCount(t, db, expiring, "reminder"); n > 1 {
		t.Fatalf("the expiring document got %d reminders", n)
	}

	w.waitExpired(expiring)
	time.Sleep(2 * time.Second) // both sweeps ran again since
	if n := w.historyCount(expiring, "expired"); n != 1 {
		t.Fatalf("expired %d times", n)
	}
	if n := notificationCount(t, db, expiring, "expired"); n != 1 {
		t.Fatalf("%d expiry messages, want 1", n)
	}
	if n := w.historyCount(due, "expired"); n != 0 {
		t.Fatalf("the passport expired early")
	}
}
