package systemtest

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kluis/backend/broker/mosquittotest"
	"kluis/backend/pgtest"
	"kluis/controller/daemon/daemonclient"
	"kluis/deploy/dev/procrun"
	"kluis/deploy/dev/testenv"
)

// backendMQTTUser is the user kluis-backend logs in with at Mosquitto
// (deploy/mosquitto/acl: "user kluis-backend").
const backendMQTTUser = "kluis-backend"

// newMosquittoWorld starts a private Mosquitto with the production
// configuration and ACL of deploy/mosquitto (paths and port adapted, a
// password file made with mosquitto_passwd -b for the backend and the
// locker), kluis-backend on it (MQTT_URL, MQTT_USERNAME, MQTT_PASSWORD),
// kluis-sim with the Kluis-protocol locker only, and the locker's kluisd
// logging in to Mosquitto with its own user name and password.
func newMosquittoWorld(t *testing.T) (*world, *mosquittotest.Process) {
	t.Helper()
	return newMosquittoWorldWith(t, mosquittoWorldOptions{})
}

// mosquittoWorldOptions adjust newMosquittoWorldWith.
type mosquittoWorldOptions struct {
	// tls uncomments the configuration's TLS listener (certificates made
	// by the test): the backend and kluisd connect over it, trusting the
	// test's CA only.
	tls bool
	// acl edits the shipped ACL (e.g. to uncomment a replica's block).
	acl func(string) string
	// users are more broker users (user name: password).
	users map[string]string
	// dbURL is the backend's database; default a new one from pgtest.
	dbURL string
}

func newMosquittoWorldWith(t *testing.T, o mosquittoWorldOptions) (*world, *mosquittotest.Process) {
	t.Helper()
	root, err := procrun.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(root, "deploy", "mosquitto", "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	acl, err := os.ReadFile(filepath.Join(root, "deploy", "mosquitto", "acl"))
	if err != nil {
		t.Fatal(err)
	}
	backendPass, devicePass := "backend-"+randomHex(16), "device-"+randomHex(16)
	// With an external broker the backend checks no device credential
	// itself: Mosquitto's password file is the only place the device's
	// password has to be.
	mo := mosquittotest.Options{
		Config: string(conf),
		ACL:    string(acl),
		Users:  map[string]string{backendMQTTUser: backendPass, lockerID: devicePass},
	}
	for u, p := range o.users {
		mo.Users[u] = p
	}
	if o.acl != nil {
		mo.ACL = o.acl(mo.ACL)
	}
	var certs *mosquittotest.Certs
	if o.tls {
		certs = mosquittotest.NewCerts(t)
		mo.Config, mo.TLS = mosquittotest.EnableTLS(mo.Config), certs
	}
	mosq := mosquittotest.Start(t, mo)

	w := &world{t: t, root: t, dir: t.TempDir(), nodes: map[string]*node{}, runID: randomHex(3)}
	w.dbURL = o.dbURL
	if w.dbURL == "" {
		w.dbURL = pgtest.NewDatabase(t)
	}
	w.mailDir = filepath.Join(w.dir, "mail")
	w.adminPass = "Admin-" + randomHex(10)
	w.apiBase = "http://" + testenv.FreeAddr(t)
	w.mqttAddr = mosq.Addr()
	brokerURL := mosq.URL()
	if o.tls {
		w.mqttAddr, w.mqttCA, brokerURL = mosq.TLSAddr(), certs.CAFile, mosq.TLSURL()
	}
	w.env = []string{
		"DATABASE_URL=" + w.dbURL,
		"KLUIS_HTTP_ADDR=" + strings.TrimPrefix(w.apiBase, "http://"),
		"MQTT_URL=" + brokerURL,
		"MQTT_CA_FILE=" + w.mqttCA,
		"MQTT_USERNAME=" + backendMQTTUser,
		"MQTT_PASSWORD=" + backendPass,
		"KLUIS_KEY_DIR=" + filepath.Join(w.dir, "keys"),
		"KLUIS_MAIL_URL=drop:" + w.mailDir,
		"KLUIS_SLIP_DIR=" + filepath.Join(w.dir, "slips"),
		"KLUIS_ADMIN_USER=admin",
		"KLUIS_ADMIN_PASSWORD=" + w.adminPass,
		"KLUIS_INSECURE_FAST_HASH=1",
		"KLUIS_PUBLIC_URL=http://kluis.example",
	}
	w.startBackend()
	w.waitBackendBroker(true)
	pub := w.cli(nil, "pubkey")
	w.pubKey = filepath.Join(w.dir, "qr.pub")
	if err := os.WriteFile(w.pubKey, []byte(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	w.setupBackendData()
	w.startFleet(fmt.Sprintf("seed: 20261122\nhttp: 127.0.0.1:0\ndevices:\n  - id: %s\n    kind: locker\n    hardware: kluis\n    boards: 1\n    channels: %d\n    link: %s\n",
		lockerID, lockerDoors, filepath.Join(w.dir, "tty-locker")))
	w.startNodeWithPassword(lockerID, "locker", devicePass)
	w.waitConnected(w.nodes[lockerID])
	w.waitOnline(lockerID)
	return w, mosq
}

// waitBackendBroker waits until the backend's device link is connected to
// the broker (or not), by its kluis_devicelink_broker_connected gauge.
func (w *world) waitBackendBroker(connected bool) {
	w.t.Helper()
	want := 0.0
	if connected {
		want = 1
	}
	testenv.MustPoll(w.t, 30*time.Second, fmt.Sprintf("kluis-backend broker_connected=%v", want), func(ctx context.Context) (bool, string, error) {
		if !w.backend.Running() {
			w.t.Fatalf("kluis-backend exited:\n%s", w.backend.Tail(3000))
		}
		s, err := daemonclient.Scrape(ctx, httpc, w.apiBase+"/metrics")
		v := s.Value("kluis_devicelink_broker_connected", "")
		return err == nil && v == want, fmt.Sprint(v), err
	})
}

// waitOnline waits until the backend shows the device online: its kluisd's
// presence went through the broker to the backend.
func (w *world) waitOnline(dev string) {
	w.t.Helper()
	testenv.MustPoll(w.t, 30*time.Second, dev+" online in the backend", func(ctx context.Context) (bool, string, error) {
		var d struct {
			Presence *struct {
				Online bool `json:"online"`
			} `json:"presence"`
		}
		if err := w.admin.Do(ctx, http.MethodGet, "/api/v1/devices/"+dev, nil, &d); err != nil {
			return false, "", err
		}
		return d.Presence != nil && d.Presence.Online, fmt.Sprintf("%+v", d.Presence), nil
	})
}

// killBroker kills Mosquitto with SIGKILL and waits until kluisd and the
// backend both see it gone; both keep running.
func (w *world) killBroker(mosq *mosquittotest.Process, n *node) {
	w.t.Helper()
	mosq.Kill()
	testenv.MustPoll(w.t, 30*time.Second, n.id+" sees the broker gone", func(ctx context.Context) (bool, string, error) {
		h, err := n.kluisd.Health(ctx)
		return err == nil && !h.MQTTConnected, fmt.Sprintf("%+v", h), err
	})
	w.waitBackendBroker(false)
}

// restartBroker starts Mosquitto again on the same port and waits until
// kluisd and the backend are back on it.
func (w *world) restartBroker(mosq *mosquittotest.Process, n *node) {
	w.t.Helper()
	mosq.Start()
	w.waitConnected(n)
	w.waitBackendBroker(true)
}

// stillUp checks that neither the backend nor kluisd was restarted.
func (w *world) stillUp(n *node) {
	w.t.Helper()
	for _, p := range []*proc{w.backend, n.proc, w.simProc} {
		if !p.Running() {
			w.t.Fatalf("%s exited:\n%s", p.Name, p.Tail(3000))
		}
		if c := strings.Count(p.Tail(1<<30), "=== start "); c != 1 {
			w.t.Fatalf("%s was started %d times", p.Name, c)
		}
	}
}

// heldInOutbox checks that the broker outage holds d's events in kluisd's
// outbox: the backend does not show it in state yet.
func (w *world) heldInOutbox(n *node, d *doc, state string) {
	w.t.Helper()
	ctx := context.Background()
	if h, err := n.kluisd.Health(ctx); err != nil || h.Backlog == 0 || h.MQTTConnected {
		w.t.Fatalf("during the outage kluisd's events must wait in the outbox: %+v (%v)", h, err)
	} else {
		w.t.Logf("broker down: %d events in kluisd's outbox", h.Backlog)
	}
	got, err := w.staff.Document(ctx, d.ID)
	if err != nil {
		w.t.Fatal(err)
	}
	if got.State == state {
		w.t.Fatalf("the backend shows %s %s during the broker outage", d.number, state)
	}
}

// TestBrokerRestart kills the production-configured Mosquitto alone
// (SIGKILL) while a door is open, during a pickup and during a staff load;
// kluis-backend and kluisd stay up. The person finishes while the broker is
// down, Mosquitto comes back on the same port, and kluisd's outbox delivers
// every event: no event lost, exactly one pulse, the outbox empty.
func TestBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("system test: starts Mosquitto, the backend, the simulator and kluisd")
	}
	parallelWorld(t)
	w, mosq := newMosquittoWorld(t)
	locker := w.nodes[lockerID]
	ctx := context.Background()
	step := func(name string, fn func(t *testing.T)) {
		if !t.Run(name, func(t *testing.T) {
			w.t = t
			defer func() { w.t = t }()
			fn(t)
		}) {
			t.Logf("--- kluisd %s ---\n%s", lockerID, locker.proc.Tail(4000))
			t.Logf("--- kluis-backend ---\n%s", w.backend.Tail(4000))
			t.Logf("--- mosquitto ---\n%s", mosq.Log())
			t.FailNow()
		}
	}

	step("Mosquitto killed while the door is open during a pickup", func(t *testing.T) {
		d := w.register("driving_licence", lockerID)
		w.load(d) // codes in the .eml drop
		p0 := w.pulseCount(lockerID)
		w.pickupOpens(d, map[string]string{"qr": d.mail.QR})
		w.killBroker(mosq, locker)
		w.takeAndClose(d)
		w.waitScreen(locker, "done")
		w.exactlyOnePulse(lockerID, p0, d.comp.Board, d.comp.Channel)
		w.heldInOutbox(locker, d, "collected")
		w.restartBroker(mosq, locker)
		w.waitState(d, "collected")
		if a := d.ActorOf("collected"); a != "device:"+lockerID {
			t.Fatalf("collected by %q, want device:%s", a, lockerID)
		}
		w.waitPickupEvents(d)
		w.waitBacklogEmpty(locker)
		w.exactlyOnePulse(lockerID, p0, d.comp.Board, d.comp.Channel)
		c, err := w.sim.Truth(ctx, lockerID, d.comp.Board, d.comp.Channel)
		if err != nil || c.DoorOpen || c.Item != "" {
			t.Fatalf("after the pickup the simulator shows %+v (%v)", c, err)
		}
		w.stillUp(locker)
	})

	step("Mosquitto killed while the door is open during a staff load", func(t *testing.T) {
		d := w.register("driving_licence", lockerID)
		p0 := w.pulseCount(lockerID)
		if s := w.kioskPost(locker, "/kiosk/v1/staff/login", map[string]string{"pin": w.staffPIN}); s.State != "staff" {
			t.Fatalf("staff login: %s (%s)", s.State, s.Message)
		}
		if s := w.kioskPost(locker, "/kiosk/v1/staff/load", map[string]string{"document_number": d.number}); s.State != "loading" {
			t.Fatalf("staff load: %s (%s)", s.State, s.Message)
		}
		w.compOf(d)
		w.waitDoor(lockerID, d.comp.Board, d.comp.Channel, true)
		w.killBroker(mosq, locker)
		time.Sleep(humanPause)
		w.act(lockerID, d.comp.Board, d.comp.Channel, "put", url.Values{"label": {d.label}})
		time.Sleep(humanPause)
		w.act(lockerID, d.comp.Board, d.comp.Channel, "close", nil)
		w.waitScreen(locker, "loaded")
		w.exactlyOnePulse(lockerID, p0, d.comp.Board, d.comp.Channel)
		w.heldInOutbox(locker, d, "loaded")
		w.restartBroker(mosq, locker)
		w.waitState(d, "notified")
		if a := d.ActorOf("loaded"); a != "device:"+lockerID {
			t.Fatalf("loaded by %q, want device:%s", a, lockerID)
		}
		w.kioskPost(locker, "/kiosk/v1/staff/logout", nil)
		w.readMail(d)
		w.waitBacklogEmpty(locker)
		w.exactlyOnePulse(lockerID, p0, d.comp.Board, d.comp.Channel)
		// The codes the backend sent after the late load work.
		w.collect(d, map[string]string{"qr": d.mail.QR})
		w.waitPickupEvents(d)
		w.waitBacklogEmpty(locker)
		w.stillUp(locker)
	})

	step("audit chain intact, no data race in kluisd", func(t *testing.T) {
		var rep struct {
			OK     bool   `json:"ok"`
			Reason string `json:"reason"`
		}
		if err := w.admin.Do(ctx, http.MethodGet, "/api/v1/audit/verify", nil, &rep); err != nil || !rep.OK {
			t.Fatalf("audit chain: %+v (%v)", rep, err)
		}
		w.allShut(lockerID)
		if strings.Contains(locker.proc.Tail(1<<30), "WARNING: DATA RACE") {
			t.Errorf("kluisd reported a data race:\n%s", locker.proc.Tail(8000))
		}
	})
}
