package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kluis/backend/api/apiclient"
	"kluis/backend/notify/mailread"
	"kluis/backend/pgtest"
	"kluis/controller/daemon/daemonclient"
	"kluis/controller/engine"
	"kluis/controller/kiosk/kioskclient"
	"kluis/deploy/dev/procrun"
	"kluis/deploy/dev/testenv"
	"kluis/simulator"
	"kluis/simulator/simclient"
)

// The simulated city hall: a Kluis-protocol locker on a pty and a Tasmota
// automaton on the Mosquitto broker.
const (
	siteID        = "sys-site"
	lockerID      = "sys-locker"
	autoID        = "sys-auto"
	lockerDoors   = 10
	autoSlots     = 6
	lockoutAfter  = 3                // kluisd's lockout.max_failures
	lockoutLength = 10 * time.Minute // longer than the test: only staff lift it
	// expiryKind gets the backend's exact pickup period expiryPeriod
	// (-pickup-period); only the document that is to expire has it.
	expiryKind   = "residence_card"
	expiryPeriod = 25 * time.Second
)

// world is one backend, one simulator and the kluisd of each device.
type world struct {
	t         *testing.T // the running (sub)test
	root      *testing.T // owns the processes
	dir       string
	dbURL     string
	env       []string // the backend's environment
	apiBase   string
	mqttAddr  string // the embedded broker
	mqttCA    string // the CA file when kluisd connects over TLS
	fieldbus  string // Mosquitto, for the Tasmota module
	mailDir   string
	pubKey    string // file with the QR public key
	backend   *proc
	simProc   *proc
	sim       *simclient.Client
	admin     api
	staff     api
	staffPIN  string
	techPIN   string
	nodes     map[string]*node
	docSeq    int
	runID     string
	adminPass string
}

// node is one device's kluisd.
type node struct {
	id, kind   string
	dir        string
	configPath string
	kiosk      *kioskclient.Client
	metrics    string
	kluisd     *daemonclient.Client // health and metrics at metrics
	proc       *proc
}

// worldOptions adjust newWorldWith.
type worldOptions struct {
	// lockerOnly leaves the automaton (its simulator module and kluisd)
	// out.
	lockerOnly bool
}

// newWorld starts everything and waits until each kluisd is connected.
func newWorld(t *testing.T) *world {
	t.Helper()
	return newWorldWith(t, worldOptions{})
}

// newWorldWith is newWorld with options.
func newWorldWith(t *testing.T, o worldOptions) *world {
	t.Helper()
	w := &world{t: t, root: t, dir: t.TempDir(), nodes: map[string]*node{}, runID: randomHex(3)}
	w.dbURL = pgtest.NewDatabase(t)
	w.mailDir = filepath.Join(w.dir, "mail")
	w.fieldbus = testenv.BrokerURL()
	w.adminPass = "Admin-" + randomHex(10)
	w.apiBase = "http://" + testenv.FreeAddr(t)
	w.mqttAddr = testenv.FreeAddr(t)
	keyDir := filepath.Join(w.dir, "keys")
	w.env = []string{
		"DATABASE_URL=" + w.dbURL,
		"KLUIS_HTTP_ADDR=" + strings.TrimPrefix(w.apiBase, "http://"),
		"MQTT_URL=", // the embedded broker
		"KLUIS_MQTT_ADDR=" + w.mqttAddr,
		"KLUIS_KEY_DIR=" + keyDir,
		"KLUIS_MAIL_URL=drop:" + w.mailDir,
		"KLUIS_SLIP_DIR=" + filepath.Join(w.dir, "slips"),
		"KLUIS_ADMIN_USER=admin",
		"KLUIS_ADMIN_PASSWORD=" + w.adminPass,
		"KLUIS_INSECURE_FAST_HASH=1",
		"KLUIS_PUBLIC_URL=http://kluis.example",
	}
	w.startBackend()
	pub := w.cli(nil, "pubkey")
	w.pubKey = filepath.Join(w.dir, "qr.pub")
	if err := os.WriteFile(w.pubKey, []byte(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	w.setupBackendData()
	w.startSim(o.lockerOnly)
	w.startNode(lockerID, "locker")
	if !o.lockerOnly {
		w.startNode(autoID, "automaton")
	}
	for _, n := range w.nodes {
		w.waitConnected(n)
	}
	return w
}

// startBackend starts kluis-backend (again, after a kill: same database,
// keys and ports) and waits until it is ready.
func (w *world) startBackend() {
	t := w.t
	t.Helper()
	w.backend = startProc(t, w.root, w.dir, "kluis-backend", "kluis-backend",
		[]string{"serve", "-housekeep-every", "1s", "-pickup-period", fmt.Sprintf("%s=%s", expiryKind, expiryPeriod), "-code-sync-every", "2s", "-open-timeout", "10s", "-audit-verify-every", "0"}, w.env, nil)
	testenv.MustPoll(t, 60*time.Second, "kluis-backend ready", func(ctx context.Context) (bool, string, error) {
		if !w.backend.Running() {
			t.Fatalf("kluis-backend exited:\n%s", w.backend.Tail(3000))
		}
		err := doJSON(ctx, http.MethodGet, w.apiBase+"/readyz", "", nil, nil)
		return err == nil, "", err
	})
}

// cli runs a kluis-backend subcommand and returns its stdout.
func (w *world) cli(env []string, args ...string) string {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "kluis-backend"), args...)
	cmd.Env = append(append([]string{"PATH=" + os.Getenv("PATH")}, w.env...), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		w.t.Fatalf("kluis-backend %s: %v: %s", args[0], err, errb.String())
	}
	return out.String()
}

func (w *world) setupBackendData() {
	t := w.t
	ctx := context.Background()
	var err error
	if w.admin, err = login(ctx, w.apiBase, "admin", w.adminPass); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.admin.Do(ctx, http.MethodPost, "/api/v1/sites", map[string]string{"id": siteID, "name": "Stadhuis (system test)",
		"time_zone": "Europe/Brussels", "address": "Grote Markt 54, 8500 Kortrijk"}, nil))
	for _, d := range []struct {
		id, kind string
		n        int
	}{{lockerID, "locker", lockerDoors}, {autoID, "automaton", autoSlots}} {
		var comps []map[string]any
		for i := 0; i < d.n; i++ {
			// On an automaton the backend's channel is the carousel slot.
			comps = append(comps, map[string]any{"number": i + 1, "board": 0, "channel": i, "size": "M"})
		}
		must(w.admin.Do(ctx, http.MethodPost, "/api/v1/devices", map[string]any{"id": d.id, "site_id": siteID,
			"kind": d.kind, "name": d.id, "compartments": comps}, nil))
	}
	pass := "Staff-" + randomHex(8)
	var u struct {
		ID int64 `json:"id"`
	}
	must(w.admin.Do(ctx, http.MethodPost, "/api/v1/users", map[string]string{"username": "an.balie", "password": pass, "role": "staff"}, &u))
	w.staff, err = login(ctx, w.apiBase, "an.balie", pass)
	must(err)
	w.staffPIN = "48291357"
	must(w.admin.Do(ctx, http.MethodPatch, fmt.Sprintf("/api/v1/users/%d", u.ID), map[string]string{"kiosk_pin": w.staffPIN}, nil))
	// A technician with a kiosk PIN of their own: test-opens are theirs.
	var tech struct {
		ID int64 `json:"id"`
	}
	must(w.admin.Do(ctx, http.MethodPost, "/api/v1/users", map[string]string{"username": "piet.techniek",
		"password": "Tech-" + randomHex(8), "role": "technician"}, &tech))
	w.techPIN = "73194628"
	must(w.admin.Do(ctx, http.MethodPatch, fmt.Sprintf("/api/v1/users/%d", tech.ID), map[string]string{"kiosk_pin": w.techPIN}, nil))
}

// startSim starts kluis-sim fleet with the locker and (unless lockerOnly)
// the automaton.
func (w *world) startSim(lockerOnly bool) {
	topic := "kluis-systest-" + w.runID
	var b strings.Builder
	fmt.Fprintf(&b, "seed: 20261122\nhttp: 127.0.0.1:0\nbroker: %s\ndevices:\n", w.fieldbus)
	fmt.Fprintf(&b, "  - id: %s\n    kind: locker\n    hardware: kluis\n    boards: 1\n    channels: %d\n    link: %s\n",
		lockerID, lockerDoors, filepath.Join(w.dir, "tty-locker"))
	if !lockerOnly {
		fmt.Fprintf(&b, "  - id: %s\n    kind: automaton\n    hardware: tasmota\n    topic: %s\n    boards: 1\n    slots: %d\n    move_time: 300ms\n",
			autoID, topic, autoSlots)
	}
	w.startFleet(b.String())
}

// startFleet starts kluis-sim fleet with the configuration fleet and reads
// its ready line.
func (w *world) startFleet(fleet string) {
	t := w.t
	path := filepath.Join(w.dir, "fleet.yaml")
	if err := os.WriteFile(path, []byte(fleet), 0o600); err != nil {
		t.Fatal(err)
	}
	lw := procrun.NewLineWriter(`{"control"`)
	p := startProc(t, w.root, w.dir, "kluis-sim", "kluis-sim", []string{"fleet", "--config", path}, nil, lw)
	var line string
	select {
	case line = <-lw.C:
	case <-time.After(30 * time.Second):
		t.Fatalf("kluis-sim: no ready line:\n%s", p.Tail(3000))
	}
	var ready struct {
		Control string `json:"control"`
	}
	if err := json.Unmarshal([]byte(line), &ready); err != nil {
		t.Fatalf("kluis-sim ready line %q: %v", line, err)
	}
	w.sim = simclient.New(ready.Control, simclient.Options{})
	w.simProc = p
}

// startNode sets a new MQTT password for the device at the embedded broker
// (kluis-backend mqttpasswd) and starts its kluisd with it.
func (w *world) startNode(id, kind string) {
	pw := "mqtt-" + randomHex(16)
	w.cli([]string{"KLUIS_NEW_PASSWORD=" + pw}, "mqttpasswd", "-device", id)
	w.startNodeWithPassword(id, kind, pw)
}

// startNodeWithPassword writes a kluisd configuration that logs in to the
// broker at w.mqttAddr as the device with password pw, and starts it.
func (w *world) startNodeWithPassword(id, kind, pw string) {
	t := w.t
	n := &node{id: id, kind: kind, dir: filepath.Join(w.dir, id)}
	if err := os.MkdirAll(filepath.Join(n.dir, "journal"), 0o700); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(n.dir, "mqtt.password")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kioskAddr := testenv.FreeAddr(t)
	n.kiosk = &kioskclient.Client{Base: "http://" + kioskAddr, HTTP: httpc}
	n.metrics = testenv.FreeAddr(t)
	n.kluisd = daemonclient.New(n.metrics, daemonclient.Options{HTTP: httpc})
	var b strings.Builder
	fmt.Fprintf(&b, "device_id: %s\nsite: %s\nkind: %s\n", id, siteID, kind)
	// A client id unique to this run ("{device}.{suffix}" is what the
	// broker allows): the Tasmota driver's client on the shared field bus
	// derives its id from it, and two runs at once must not kick each
	// other off.
	scheme, ca := "tcp", ""
	if w.mqttCA != "" {
		scheme, ca = "ssl", "  ca_file: "+w.mqttCA+"\n"
	}
	fmt.Fprintf(&b, "mqtt:\n  url: %s://%s\n  username: %s\n  client_id: %s.%s\n  password_file: %s\n%s  resend_after: 2s\n  heartbeat_every: 5s\n",
		scheme, w.mqttAddr, id, id, w.runID, pwFile, ca)
	if kind == "automaton" {
		fmt.Fprintf(&b, "hardware:\n  driver: tasmota\n  hatch_channel: 0\n  tasmota:\n    broker: %s\n    modules:\n      - {topic: %s, relays: %d, board: 0}\n",
			w.fieldbus, "kluis-systest-"+w.runID, 1+autoSlots)
		b.WriteString("compartments:\n")
		for i := 0; i < autoSlots; i++ {
			fmt.Fprintf(&b, "  - {number: %d, board: 0, slot: %d}\n", i+1, i)
		}
	} else {
		// The simulated board is a race-built process on a pty: on a loaded
		// machine it can miss the production default's three 200 ms
		// attempts (TestDatabaseFailover saw the board offline and the kiosk
		// out of order); three 1 s attempts give it room. TestSystem's
		// "offline" step shows a board that really goes away is still
		// reported.
		fmt.Fprintf(&b, "hardware:\n  driver: kluis\n  serial: {port: %s, baud: 115200, timeout: 1s}\n", filepath.Join(w.dir, "tty-locker"))
		b.WriteString("compartments:\n")
		for i := 0; i < lockerDoors; i++ {
			fmt.Fprintf(&b, "  - {number: %d, board: 0, channel: %d}\n", i+1, i)
		}
	}
	fmt.Fprintf(&b, "pulse: 300ms\ntimeouts: {door_open_detect: 2s, door_left_open: 2s, grace: 10m, verify: 3s, present: 15s, open_retries: 1, board_unreachable: 2s}\n")
	fmt.Fprintf(&b, "lockout: {max_failures: %d, window: 10m, duration: %s}\n", lockoutAfter, lockoutLength)
	fmt.Fprintf(&b, "journal_dir: %s\nkiosk: {listen: %s, default_lang: en}\nmetrics_listen: %s\noffline: {public_key_file: %s}\n",
		filepath.Join(n.dir, "journal"), kioskAddr, n.metrics, w.pubKey)
	n.configPath = filepath.Join(n.dir, "kluisd.yaml")
	if err := os.WriteFile(n.configPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	w.nodes[id] = n
	w.startKluisd(n)
}

func (w *world) startKluisd(n *node) {
	n.proc = startProc(w.t, w.root, w.dir, "kluisd-"+n.id, "kluisd", []string{"--config", n.configPath}, nil, nil)
}

// waitConnected waits until n's kluisd is ready and connected.
func (w *world) waitConnected(n *node) {
	w.t.Helper()
	testenv.MustPoll(w.t, 60*time.Second, n.id+" ready and connected", func(ctx context.Context) (bool, string, error) {
		if !n.proc.Running() {
			w.t.Fatalf("kluisd %s exited:\n%s", n.id, n.proc.Tail(3000))
		}
		h, err := n.kluisd.Health(ctx)
		return h.Ready && h.MQTTConnected, fmt.Sprintf("%+v", h), err
	})
}

// doc is one citizen's document.
type doc struct {
	document
	kind, number, email, birth, label string
	device                            string
	comp                              compartment
	mail                              mailread.Mail
}

// board, channel and slot where the document is in the simulator: the
// compartment's channel on a locker, the hatch (channel 0) and a slot on
// the automaton.
func (d *doc) place() (board, ch, slot int) {
	if d.device == autoID {
		return d.comp.Board, 0, d.comp.Channel
	}
	return d.comp.Board, d.comp.Channel, -1
}

// register registers a document through the REST API as staff.
func (w *world) register(kind, device string) *doc {
	t := w.t
	t.Helper()
	w.docSeq++
	d := &doc{kind: kind, device: device, birth: time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 97*w.docSeq).Format(time.DateOnly)}
	d.number = fmt.Sprintf("591-%s-%02d", w.runID, w.docSeq)
	d.email = fmt.Sprintf("holder%02d.%s@example.org", w.docSeq, w.runID)
	d.label = kind + " " + d.number
	err := w.staff.Do(context.Background(), http.MethodPost, "/api/v1/documents", map[string]any{"kind": kind, "number": d.number,
		"holder_first_name": "Holder", "holder_last_name": fmt.Sprintf("Nr%d", w.docSeq), "holder_birth_date": d.birth,
		"language": "en", "email": d.email, "site_id": siteID}, &d.document)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != "registered" {
		t.Fatalf("registered document in state %s", d.State)
	}
	return d
}

// waitState waits until the backend shows the document in state.
func (w *world) waitState(d *doc, state string) {
	w.t.Helper()
	testenv.MustPoll(w.t, 30*time.Second, fmt.Sprintf("document %s %s in the backend", d.number, state), func(ctx context.Context) (bool, string, error) {
		got, err := w.staff.Document(ctx, d.ID)
		if err != nil {
			return false, "", err
		}
		d.document = got
		return got.State == state, got.State, nil
	})
}

// compOf finds the document's compartment through the API.
func (w *world) compOf(d *doc) {
	t := w.t
	t.Helper()
	ctx := context.Background()
	got, err := w.staff.Document(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.DeviceID != d.device || got.CompartmentID == 0 {
		t.Fatalf("document on %q compartment %d, want a compartment of %s", got.DeviceID, got.CompartmentID, d.device)
	}
	var dev struct {
		Compartments []compartment `json:"compartments"`
	}
	if err := w.staff.Do(ctx, http.MethodGet, "/api/v1/devices/"+d.device, nil, &dev); err != nil {
		t.Fatal(err)
	}
	for _, c := range dev.Compartments {
		if c.ID == got.CompartmentID {
			d.comp = c
			return
		}
	}
	t.Fatalf("compartment id %d not on %s", got.CompartmentID, d.device)
}

func (w *world) pulseCount(dev string) int {
	w.t.Helper()
	ps, err := w.sim.Pulses(context.Background(), dev)
	if err != nil {
		w.t.Fatal(err)
	}
	return len(ps)
}

// pulsesSince returns the pulses of dev after the first n.
func (w *world) pulsesSince(dev string, n int) []simulator.Pulse {
	w.t.Helper()
	ps, err := w.sim.Pulses(context.Background(), dev)
	if err != nil {
		w.t.Fatal(err)
	}
	if n > len(ps) {
		w.t.Fatalf("simulator forgot pulses: %d < %d", len(ps), n)
	}
	return ps[n:]
}

// exactlyOnePulse checks that the pulses since n are exactly one, at
// board/ch.
func (w *world) exactlyOnePulse(dev string, n, board, ch int) {
	w.t.Helper()
	got := w.pulsesSince(dev, n)
	if len(got) != 1 || got[0].Board != board || got[0].Channel != ch {
		w.t.Fatalf("pulses of %s: %+v, want exactly one at b%d/c%d", dev, got, board, ch)
	}
}

// noPulse checks that nothing was pulsed since n, after giving a wrong
// pulse a moment to show up, and that every door is shut.
func (w *world) noPulse(dev string, n int) {
	w.t.Helper()
	time.Sleep(700 * time.Millisecond)
	if got := w.pulsesSince(dev, n); len(got) > 0 {
		w.t.Fatalf("unexpected pulses of %s: %+v", dev, got)
	}
	w.allShut(dev)
}

func (w *world) allShut(dev string) {
	w.t.Helper()
	st, err := w.sim.State(context.Background(), dev)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, c := range st.Channels {
		if c.DoorOpen {
			w.t.Fatalf("%s: door b%d/c%d is open", dev, c.Board, c.Channel)
		}
	}
}

// waitDoor waits for the simulator's door to be open (or shut).
func (w *world) waitDoor(dev string, board, ch int, open bool) {
	w.t.Helper()
	testenv.MustPoll(w.t, 20*time.Second, fmt.Sprintf("door b%d/c%d of %s open=%t", board, ch, dev, open), func(ctx context.Context) (bool, string, error) {
		c, err := w.sim.Truth(ctx, dev, board, ch)
		return err == nil && c.DoorOpen == open, fmt.Sprintf("%+v", c), err
	})
}

// waitAtHatch waits until the automaton presents slot at the hatch.
func (w *world) waitAtHatch(dev string, board, slot int) {
	w.t.Helper()
	testenv.MustPoll(w.t, 20*time.Second, fmt.Sprintf("slot %d at the hatch", slot), func(ctx context.Context) (bool, string, error) {
		st, err := w.sim.State(ctx, dev)
		if err != nil {
			return false, "", err
		}
		for _, m := range st.Mechanisms {
			if m.Board == board {
				return m.AtHatch == slot && !m.Busy, fmt.Sprintf("%+v", m), nil
			}
		}
		return false, "no mechanism", nil
	})
}

// act runs a person's action in the simulator.
func (w *world) act(dev string, board, ch int, action string, q url.Values) simulator.ActionResult {
	w.t.Helper()
	out, err := w.sim.Channel(context.Background(), dev, board, ch, action, q)
	if err != nil {
		w.t.Fatalf("%s b%d/c%d %s: %v", dev, board, ch, action, err)
	}
	return out
}

// humanPause is how long a person takes to reach in or push a door shut.
const humanPause = 300 * time.Millisecond

// kioskPost posts to a kiosk and fails the test on a transport error.
func (w *world) kioskPost(n *node, path string, in any) engine.Screen {
	w.t.Helper()
	s, err := n.kiosk.Post(context.Background(), path, in)
	if err != nil {
		w.t.Fatalf("%s %s: %v", n.id, path, err)
	}
	return s
}

// waitScreen waits until the kiosk shows one of states.
func (w *world) waitScreen(n *node, states ...string) engine.Screen {
	w.t.Helper()
	var s engine.Screen
	testenv.MustPoll(w.t, 30*time.Second, n.id+" kiosk shows "+strings.Join(states, "|"), func(ctx context.Context) (bool, string, error) {
		var err error
		s, err = n.kiosk.Session(ctx)
		if err != nil {
			return false, "", err
		}
		for _, st := range states {
			if s.State == st {
				return true, s.State, nil
			}
		}
		return false, s.State + ": " + s.Message, nil
	})
	return s
}

// load logs staff in at the device's kiosk, scans the document number,
// puts the document in when the door (hatch) opens and closes it; then
// waits for the backend's notification and reads the e-mail.
func (w *world) load(d *doc) {
	t := w.t
	t.Helper()
	n := w.nodes[d.device]
	p0 := w.pulseCount(d.device)
	if s := w.kioskPost(n, "/kiosk/v1/staff/login", map[string]string{"pin": w.staffPIN}); s.State != "staff" {
		t.Fatalf("staff login at %s: %s (%s)", n.id, s.State, s.Message)
	}
	s := w.kioskPost(n, "/kiosk/v1/staff/load", map[string]string{"document_number": d.number})
	if s.State != "loading" && s.State != "presenting" {
		t.Fatalf("staff load at %s: %s (%s)", n.id, s.State, s.Message)
	}
	w.compOf(d)
	board, ch, slot := d.place()
	if slot >= 0 {
		w.waitAtHatch(d.device, board, slot)
	}
	w.waitDoor(d.device, board, ch, true)
	time.Sleep(humanPause)
	w.act(d.device, board, ch, "put", url.Values{"label": {d.label}})
	time.Sleep(humanPause)
	w.act(d.device, board, ch, "close", nil)
	w.waitScreen(n, "loaded")
	w.exactlyOnePulse(d.device, p0, board, ch)
	w.waitState(d, "notified")
	if a := d.ActorOf("loaded"); a != "device:"+d.device {
		t.Fatalf("loaded by %q, want the kluisd report (device:%s)", a, d.device)
	}
	w.kioskPost(n, "/kiosk/v1/staff/logout", nil)
	w.readMail(d)
}

// readMail waits for the document's ready message with QR and PIN.
func (w *world) readMail(d *doc) {
	testenv.MustPoll(w.t, 20*time.Second, "ready e-mail to "+d.email, func(context.Context) (bool, string, error) {
		ms, err := mailread.ReadDir(w.mailDir)
		if err != nil {
			return false, "", err
		}
		for _, m := range ms {
			if m.To == d.email && m.QR != "" && m.PIN != "" {
				d.mail = m
				return true, m.File, nil
			}
		}
		return false, fmt.Sprintf("%d messages", len(ms)), nil
	})
}

// pickup enters a code at the kiosk and expects the door (hatch) to open.
func (w *world) pickupOpens(d *doc, req map[string]string) {
	t := w.t
	t.Helper()
	n := w.nodes[d.device]
	s := w.kioskPost(n, "/kiosk/v1/pickup", req)
	if s.State != "open" && s.State != "presenting" {
		t.Fatalf("pickup of %s at %s: kiosk shows %s (%s)", d.number, n.id, s.State, s.Message)
	}
	board, ch, slot := d.place()
	if slot >= 0 {
		w.waitAtHatch(d.device, board, slot)
	}
	w.waitDoor(d.device, board, ch, true)
}

// takeAndClose takes the document out and shuts the door.
func (w *world) takeAndClose(d *doc) {
	t := w.t
	t.Helper()
	board, ch, _ := d.place()
	time.Sleep(humanPause)
	item := w.act(d.device, board, ch, "take", nil)
	if got := item.Item; got != d.label {
		t.Fatalf("took %q, want %q", got, d.label)
	}
	time.Sleep(humanPause)
	w.act(d.device, board, ch, "close", nil)
}

// collect is a whole pickup: code, door opens, document taken, door shut,
// exactly one pulse, collected by the device in the backend.
func (w *world) collect(d *doc, req map[string]string) {
	t := w.t
	t.Helper()
	p0 := w.pulseCount(d.device)
	w.pickupOpens(d, req)
	w.takeAndClose(d)
	w.waitScreen(w.nodes[d.device], "done")
	board, ch, _ := d.place()
	w.exactlyOnePulse(d.device, p0, board, ch)
	w.waitState(d, "collected")
	if a := d.ActorOf("collected"); a != "device:"+d.device {
		t.Fatalf("collected by %q, want device:%s", a, d.device)
	}
	c, err := w.sim.Truth(context.Background(), d.device, board, ch)
	if err != nil || c.DoorOpen || c.Item != "" {
		t.Fatalf("after the pickup the simulator shows %+v (%v)", c, err)
	}
}

// waitAudit waits for an audit record of the device with action and,
// when alarm is not empty, that alarm kind.
func (w *world) waitAudit(device, action, alarm string) {
	w.t.Helper()
	testenv.MustPoll(w.t, 30*time.Second, fmt.Sprintf("audit %s %s %s", device, action, alarm), func(ctx context.Context) (bool, string, error) {
		recs, err := w.admin.Audit(ctx, apiclient.AuditQuery{Subject: "device:" + device, Max: maxAudit})
		if err != nil {
			return false, "", err
		}
		for _, r := range recs {
			if r.Action == action && (alarm == "" || r.Details["alarm"] == alarm) {
				return true, "", nil
			}
		}
		return false, fmt.Sprintf("%d records", len(recs)), nil
	})
}

// waitMetricAbove waits until a kluisd metric exceeds v.
func (w *world) waitMetricAbove(n *node, name, label string, v float64) {
	w.t.Helper()
	testenv.MustPoll(w.t, 20*time.Second, fmt.Sprintf("%s%s > %v", name, label, v), func(ctx context.Context) (bool, string, error) {
		got, err := n.kluisd.Metric(ctx, name, label)
		return got > v, fmt.Sprint(got), err
	})
}

// waitExpired waits for the document's real deadline and for the
// backend's housekeeping to expire it.
func (w *world) waitExpired(d *doc) {
	w.t.Helper()
	wait := 30 * time.Second
	if d.Deadline != nil {
		wait += max(time.Until(*d.Deadline), 0)
	}
	testenv.MustPoll(w.t, wait, fmt.Sprintf("document %s expired by the backend", d.number), func(ctx context.Context) (bool, string, error) {
		got, err := w.staff.Document(ctx, d.ID)
		if err != nil {
			return false, "", err
		}
		d.document = got
		return got.State == "expired", got.State, nil
	})
}

// killBackend kills the backend, and with it the embedded broker, with
// SIGKILL, and waits until every kluisd sees the link down.
func (w *world) killBackend() {
	w.backend.Kill()
	for _, n := range w.nodes {
		testenv.MustPoll(w.t, 30*time.Second, n.id+" sees the broker gone", func(ctx context.Context) (bool, string, error) {
			h, err := n.kluisd.Health(ctx)
			return err == nil && !h.MQTTConnected, fmt.Sprintf("%+v", h), err
		})
	}
}

// restartBackend starts the backend again and waits for every kluisd.
func (w *world) restartBackend() {
	w.startBackend()
	for _, n := range w.nodes {
		w.waitConnected(n)
	}
}

// setStraight puts the world back after a failed step, so that the steps
// that do not build on it start as they would have: the backend and every
// kluisd running and connected, staff logged out at every kiosk, the
// simulator's device faults cleared, no stuck lock or broken sensor, every
// door shut.
func (w *world) setStraight() {
	w.t.Helper()
	ctx := context.Background()
	if !w.backend.Running() {
		w.restartBackend()
	}
	for id, n := range w.nodes {
		if !n.proc.Running() {
			w.startKluisd(n)
		}
		w.waitConnected(n)
		_, _ = n.kiosk.Post(ctx, "/kiosk/v1/staff/logout", nil)
		if _, err := w.sim.SetFaults(ctx, id, simulator.Faults{}); err != nil {
			w.t.Fatalf("set the world straight: %v", err)
		}
		st, err := w.sim.State(ctx, id)
		if err != nil {
			w.t.Fatalf("set the world straight: %v", err)
		}
		for _, c := range st.Channels {
			if c.Stuck {
				w.act(id, c.Board, c.Channel, "stuck", url.Values{"on": {"false"}})
			}
			if c.SensorBroken {
				w.act(id, c.Board, c.Channel, "sensor", url.Values{"broken": {"false"}})
			}
			if c.DoorOpen {
				w.act(id, c.Board, c.Channel, "close", nil)
			}
		}
	}
}

// waitBacklogEmpty waits until the kluisd has every event acknowledged.
func (w *world) waitBacklogEmpty(n *node) {
	w.t.Helper()
	testenv.MustPoll(w.t, 30*time.Second, n.id+" backlog empty", func(ctx context.Context) (bool, string, error) {
		h, err := n.kluisd.Health(ctx)
		return err == nil && h.Backlog == 0 && h.MQTTConnected, fmt.Sprintf("%+v", h), err
	})
}

// inOfflineCache reports whether kluisd's offline cache file holds the
// document.
func (n *node) inOfflineCache(docID string) bool {
	b, err := os.ReadFile(filepath.Join(n.dir, "journal", "offline-cache.json"))
	return err == nil && strings.Contains(string(b), `"`+docID+`"`)
}
