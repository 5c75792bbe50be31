package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"kluis/backend/api/apiclient"
	"kluis/backend/broker"
	"kluis/controller/daemon/daemonclient"
	"kluis/controller/kiosk/kioskclient"
	"kluis/controller/layoutgrid"
	"kluis/deploy/dev/cutproxy"
	"kluis/deploy/dev/testenv"
	"kluis/simulator"
	"kluis/simulator/simclient"
)

// deviceSpec is one simulated device of the demo fleet with its kluisd.
type deviceSpec struct {
	ID       string
	Name     string
	Kind     string // locker or automaton
	Hardware string // kluis, kerong-cu16, tasmota
	Boards   int
	Channels int // lockers
	Slots    int // automatons
	// Layout is a locker's front as people see it: the same in kluisd's
	// layout: section (the kiosk screen's drawing) and in the backend's
	// device record (the console's map). Compartments drawn larger than
	// one cell are size L, the others M. Automatons have none.
	Layout *layoutgrid.Layout
}

// fleet is the demo's city hall: a 24-door Kluis-protocol bank, a 16-door
// Kerong bank and a small automaton behind a Tasmota relay module. Each
// bank has its touchscreen at eye level, two cells wide, and a row of
// large compartments for parcels at the bottom, two cells high and
// numbered last; the other compartments are numbered column by column,
// top to bottom, as the layout fills them.
var fleet = []deviceSpec{
	{ID: "kortrijk-hall-a", Name: "Hal A", Kind: "locker", Hardware: "kluis", Boards: 1, Channels: 24,
		Layout: bank(4, 8, 3, 21)},
	{ID: "kortrijk-hall-b", Name: "Hal B", Kind: "locker", Hardware: "kerong-cu16", Boards: 1, Channels: 16,
		Layout: bank(4, 6, 2, 13)},
	{ID: "kortrijk-automaton", Name: "Automaat", Kind: "automaton", Hardware: "tasmota", Boards: 1, Slots: 8},
}

// bank is the layout of a locker bank of columns by rows cells: the
// screen in the middle two columns from screenRow, two rows high; one large
// compartment per column in the bottom two rows, numbered from firstLarge
// left to right; the compartments before firstLarge fill the other cells.
func bank(columns, rows, screenRow, firstLarge int) *layoutgrid.Layout {
	l := &layoutgrid.Layout{Columns: columns, Rows: rows,
		Screen: &layoutgrid.Place{Column: (columns-2)/2 + 1, Row: screenRow, Width: 2, Height: 2}}
	for c := 1; c <= columns; c++ {
		l.Places = append(l.Places, layoutgrid.Place{Number: firstLarge + c - 1, Column: c, Row: rows - 1, Height: 2})
	}
	return l
}

const siteID = "kortrijk-stadhuis"

// Heights of the demo's fronts: a locker bank stands on a plinth and is
// this tall; the automaton hands everything out at its hatch.
const (
	plinthCM = 20
	bankCM   = 200
	hatchCM  = 95
)

// compartments lists a device's compartments as the backend and kluisd
// number them: lockers by channel, automatons by slot (the backend's
// channel is the slot). A locker's compartments drawn larger than a cell
// are L, the others M, and each is as high above the floor as its place
// in the layout (its middle); an automaton's every fourth slot is L, all
// at the hatch's height.
func (d deviceSpec) compartments() []compartment {
	n := d.Channels
	if d.Kind == "automaton" {
		n = d.Slots
	}
	numbers := make([]int, n)
	for i := range numbers {
		numbers[i] = i + 1
	}
	var places map[int]layoutgrid.Place
	rowCM := 0
	if d.Layout != nil {
		l, err := layoutgrid.Resolve(d.Layout, numbers)
		if err != nil {
			panic(fmt.Sprintf("the demo's layout of %s: %v", d.ID, err)) // fleet is fixed: TestFleetLayoutsAgree
		}
		places = map[int]layoutgrid.Place{}
		for _, p := range l.Places {
			places[p.Number] = p
		}
		rowCM = (bankCM - plinthCM) / l.Rows
	}
	out := make([]compartment, 0, n)
	for i := 0; i < n; i++ {
		c := compartment{Number: i + 1, Board: 0, Channel: i, Size: "M", HeightCM: hatchCM}
		if p, ok := places[c.Number]; ok {
			if p.Width > 1 || p.Height > 1 {
				c.Size = "L"
			}
			rows := d.Layout.Rows
			below := rows - (p.Row + p.Height - 1) // whole rows under it
			c.HeightCM = plinthCM + below*rowCM + p.Height*rowCM/2
		} else if i%4 == 3 {
			c.Size = "L"
		}
		out = append(out, c)
	}
	return out
}

// deviceRequest is the body of POST /api/v1/devices for d.
func (d deviceSpec) deviceRequest() map[string]any {
	var comps []map[string]any
	for _, c := range d.compartments() {
		comps = append(comps, map[string]any{"number": c.Number, "board": c.Board, "channel": c.Channel, "size": c.Size,
			"height_cm": c.HeightCM})
	}
	req := map[string]any{"id": d.ID, "site_id": siteID, "kind": d.Kind, "name": d.Name, "compartments": comps}
	if d.Layout != nil {
		req["layout"] = d.Layout
	}
	return req
}

// layoutYAML is d's layout: section for kluisd.yaml ("" without one).
func (d deviceSpec) layoutYAML() string {
	l := d.Layout
	if l == nil {
		return ""
	}
	place := func(p layoutgrid.Place) string {
		var b strings.Builder
		b.WriteString("{")
		if p.Number != 0 {
			fmt.Fprintf(&b, "number: %d, ", p.Number)
		}
		fmt.Fprintf(&b, "column: %d, row: %d", p.Column, p.Row)
		if p.Width != 0 {
			fmt.Fprintf(&b, ", width: %d", p.Width)
		}
		if p.Height != 0 {
			fmt.Fprintf(&b, ", height: %d", p.Height)
		}
		return b.String() + "}"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "layout:                 # the same as the backend's device record\n  columns: %d\n  rows: %d\n", l.Columns, l.Rows)
	if l.Screen != nil {
		fmt.Fprintf(&b, "  screen: %s\n", place(*l.Screen))
	}
	if len(l.Places) > 0 {
		b.WriteString("  places:\n")
		for _, p := range l.Places {
			fmt.Fprintf(&b, "    - %s\n", place(p))
		}
	}
	return b.String()
}

// node is one running device: its kluisd and how to reach it.
type node struct {
	spec       deviceSpec
	dir        string
	configPath string
	kiosk      *kioskclient.Client
	kioskAddr  string
	metrics    string               // host:port
	kluisd     *daemonclient.Client // its health and metrics at metrics
	proxy      *cutproxy.Proxy
	ready      bool
	err        error
}

// demo holds everything the night needs.
type demo struct {
	log     *slog.Logger
	tl      *timeline
	p       *procs
	getenv  func(string) string
	root    string // ./var/demo
	run     string // ./var/demo/run (fresh every start)
	bin     string
	mailDir string
	keyDir  string

	dbURL      string
	apiBase    string
	brokerAddr string // where devices connect (embedded broker or MQTT_URL host)
	fieldbus   string // MQTT URL of the Tasmota relay modules
	fieldSrv   *broker.Broker

	sim   *simclient.Client
	nodes map[string]*node
	order []string

	admin, staff, tech api
	// people are the demo's users, for signing in to the staff console.
	people     []person
	staffPIN   string
	kioskStaff bool // kiosk staff login works: load through kiosks
}

// build compiles the binaries into var/demo/bin.
func (d *demo) build(ctx context.Context) error {
	goBin := d.getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	for _, name := range []string{"kluis-backend", "kluis-sim", "kluisd"} {
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", filepath.Join(d.bin, name), "./cmd/"+name)
		cmd.Dir = filepath.Dir(filepath.Dir(d.root)) // the module root
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("go build ./cmd/%s: %w\n%s", name, err, tail(string(out), 2000))
		}
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// database returns the URL to use: DATABASE_URL as given, or a fresh
// kluis_demo database on the local PostgreSQL.
func (d *demo) database(ctx context.Context) (string, string, error) {
	if u := d.getenv("DATABASE_URL"); u != "" {
		return u, "DATABASE_URL as given", nil
	}
	const adminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, adminURL)
	if err != nil {
		return "", "", fmt.Errorf("connect to PostgreSQL on 127.0.0.1:5432 (run deploy/dev/ensure-services.sh postgres, or set DATABASE_URL): %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(cctx, "DROP DATABASE IF EXISTS kluis_demo WITH (FORCE)"); err != nil {
		return "", "", fmt.Errorf("drop kluis_demo: %w", err)
	}
	if _, err := conn.Exec(cctx, "CREATE DATABASE kluis_demo"); err != nil {
		return "", "", fmt.Errorf("create kluis_demo: %w", err)
	}
	return "postgres://postgres@127.0.0.1:5432/kluis_demo?sslmode=disable", "fresh database kluis_demo on 127.0.0.1:5432", nil
}

// simBase is the simulator's control API URL ("" before it started).
func (d *demo) simBase() string {
	if d.sim == nil {
		return ""
	}
	return d.sim.Base()
}

// startBackend starts kluis-backend with the embedded broker (or MQTT_URL)
// and waits until it is ready.
func (d *demo) startBackend(ctx context.Context, adminPass string) error {
	httpAddr, err := testenv.PickAddr()
	if err != nil {
		return err
	}
	env := []string{
		"DATABASE_URL=" + d.dbURL,
		"KLUIS_HTTP_ADDR=" + httpAddr,
		"KLUIS_KEY_DIR=" + d.keyDir,
		"KLUIS_MAIL_URL=drop:" + d.mailDir,
		"KLUIS_SLIP_DIR=" + filepath.Join(d.run, "slips"),
		"KLUIS_ADMIN_USER=admin",
		"KLUIS_ADMIN_PASSWORD=" + adminPass,
		"KLUIS_INSECURE_FAST_HASH=1", // argon2id at test cost: the demo makes users and devices at start
		"KLUIS_LOG_LEVEL=info",
	}
	if u := d.getenv("MQTT_URL"); u != "" {
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" {
			return fmt.Errorf("MQTT_URL %q is not a URL like tcp://host:1883", u)
		}
		d.brokerAddr = pu.Host
		env = append(env, "MQTT_URL="+u)
	} else {
		if d.brokerAddr, err = testenv.PickAddr(); err != nil {
			return err
		}
		env = append(env, "MQTT_URL=", "KLUIS_MQTT_ADDR="+d.brokerAddr)
	}
	d.apiBase = "http://" + httpAddr
	if _, err := d.p.start("kluis-backend", filepath.Join(d.bin, "kluis-backend"),
		[]string{"serve", "-housekeep-every", "2s", "-open-timeout", "10s",
			"-pickup-period", fmt.Sprintf("%s=%s", expiryKind, expiryPeriod)}, env); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := d.waitReady(wctx, "kluis-backend", d.apiBase+"/readyz"); err != nil {
		return err
	}
	return nil
}

// waitReady waits for url to answer 200 while proc runs.
func (d *demo) waitReady(ctx context.Context, proc, u string) error {
	errc := make(chan error, 1)
	go func() { errc <- waitHTTP(ctx, u) }()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case err := <-errc:
			if err != nil {
				return fmt.Errorf("%s: %w\n--- last lines of %s.log ---\n%s", proc, err, proc, d.p.tail(proc, 3000))
			}
			return nil
		case <-t.C:
			if !d.p.running(proc) {
				return fmt.Errorf("%s exited during start-up\n--- last lines of %s.log ---\n%s", proc, proc, d.p.tail(proc, 3000))
			}
		}
	}
}

// cli runs a kluis-backend subcommand and returns its stdout.
func (d *demo) cli(ctx context.Context, env []string, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, filepath.Join(d.bin, "kluis-backend"), args...)
	cmd.Env = append(os.Environ(), append([]string{"DATABASE_URL=" + d.dbURL, "KLUIS_INSECURE_FAST_HASH=1"}, env...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kluis-backend %s: %w: %s", args[0], err, tail(errb.String(), 1000))
	}
	return out.String(), nil
}

// startFieldbus starts the MQTT broker the Tasmota relay modules and the
// automaton's kluisd share (the device's local network). With MQTT_URL
// the given broker is used instead.
func (d *demo) startFieldbus() error {
	if u := d.getenv("MQTT_URL"); u != "" {
		d.fieldbus = u
		return nil
	}
	// The field bus is the device's own local network: every module and
	// kluisd on it may use every topic (the backend role's ACL).
	srv, err := broker.New(broker.Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		Credentials: func(context.Context, string, string) (string, broker.Role, bool) { return "", broker.RoleBackend, true }})
	if err != nil {
		return fmt.Errorf("fieldbus broker: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("fieldbus broker: %w", err)
	}
	d.fieldSrv = srv
	d.fieldbus = "tcp://" + srv.Addr()
	return nil
}

// writeFleet writes the simulator's fleet file.
func (d *demo) writeFleet() (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated by kluis-demo: the simulated city hall.\nseed: 20261121\nhttp: 127.0.0.1:0\nbroker: %s\ndevices:\n", d.fieldbus)
	for _, s := range fleet {
		fmt.Fprintf(&b, "  - id: %s\n    kind: %s\n    hardware: %s\n    boards: %d\n", s.ID, s.Kind, s.Hardware, s.Boards)
		switch s.Hardware {
		case "tasmota":
			fmt.Fprintf(&b, "    topic: %s\n", s.ID)
		default:
			fmt.Fprintf(&b, "    link: %s\n", filepath.Join(d.run, "tty-"+s.ID))
		}
		if s.Kind == "automaton" {
			fmt.Fprintf(&b, "    slots: %d\n    move_time: 1s\n", s.Slots)
		} else {
			fmt.Fprintf(&b, "    channels: %d\n", s.Channels)
		}
	}
	path := filepath.Join(d.run, "fleet.yaml")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// startSim starts kluis-sim fleet and reads its ready line.
func (d *demo) startSim(ctx context.Context) error {
	path, err := d.writeFleet()
	if err != nil {
		return err
	}
	if _, err := d.p.start("kluis-sim", filepath.Join(d.bin, "kluis-sim"), []string{"fleet", "--config", path}, nil); err != nil {
		return err
	}
	var ready struct {
		Control string               `json:"control"`
		Devices []simulator.Endpoint `json:"devices"`
	}
	_, err = testenv.Poll(ctx, 30*time.Second, "kluis-sim ready line", func(context.Context) (bool, string, error) {
		if !d.p.running("kluis-sim") {
			return false, "", errors.New("kluis-sim exited")
		}
		f, err := os.Open(filepath.Join(d.p.dir, "kluis-sim.log"))
		if err != nil {
			return false, "", err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), `{"control"`) {
				return json.Unmarshal(sc.Bytes(), &ready) == nil, "", nil
			}
		}
		return false, "", nil
	})
	if err != nil {
		return fmt.Errorf("%w\n--- last lines of kluis-sim.log ---\n%s", err, d.p.tail("kluis-sim", 3000))
	}
	d.sim = simclient.New(ready.Control, simclient.Options{HTTP: httpc})
	return nil
}

// setupBackendData creates the site, the devices with their compartments
// and the users through the API.
func (d *demo) setupBackendData(ctx context.Context, adminPass string) error {
	var err error
	d.admin, err = login(ctx, d.apiBase, "admin", adminPass)
	adminName := "admin"
	if err != nil {
		// A DATABASE_URL with an earlier admin: make a demo admin with the CLI.
		name := "demo-admin-" + randomHex(3)
		if _, cerr := d.cli(ctx, []string{"KLUIS_NEW_PASSWORD=" + adminPass}, "useradd", "-username", name, "-role", "admin"); cerr != nil {
			return fmt.Errorf("admin login: %v; useradd: %w", err, cerr)
		}
		if d.admin, err = login(ctx, d.apiBase, name, adminPass); err != nil {
			return err
		}
		adminName = name
	}
	exists := func(err error) error {
		if apiclient.StatusOf(err) == http.StatusConflict {
			return nil
		}
		return err
	}
	if err := exists(d.admin.Do(ctx, http.MethodPost, "/api/v1/sites", map[string]string{"id": siteID, "name": "Stadhuis Kortrijk",
		"time_zone": "Europe/Brussels", "address": "Grote Markt 54, 8500 Kortrijk"}, nil)); err != nil {
		return fmt.Errorf("create site: %w", err)
	}
	for _, s := range fleet {
		err := d.admin.Do(ctx, http.MethodPost, "/api/v1/devices", s.deviceRequest(), nil)
		if apiclient.StatusOf(err) == http.StatusConflict && s.Layout != nil {
			// A DATABASE_URL with the device from an earlier run: its
			// layout as kluisd's, when its compartments allow it.
			if perr := d.admin.Do(ctx, http.MethodPatch, "/api/v1/devices/"+s.ID, map[string]any{"layout": s.Layout}, nil); perr != nil {
				d.log.Warn("the existing device keeps its layout", "device", s.ID, "err", perr)
			}
		}
		if err := exists(err); err != nil {
			return fmt.Errorf("create device %s: %w", s.ID, err)
		}
	}
	suffix := randomHex(2)
	pass := "Demo-" + randomHex(8)
	mk := func(name, role string) (api, int64, error) {
		var u struct {
			ID int64 `json:"id"`
		}
		if err := d.admin.Do(ctx, http.MethodPost, "/api/v1/users", map[string]string{"username": name, "password": pass, "role": role}, &u); err != nil {
			return api{}, 0, fmt.Errorf("create user %s: %w", name, err)
		}
		a, err := login(ctx, d.apiBase, name, pass)
		return a, u.ID, err
	}
	var staffID int64
	if d.staff, staffID, err = mk("an.balie-"+suffix, "staff"); err != nil {
		return err
	}
	if d.tech, _, err = mk("tom.techniek-"+suffix, "technician"); err != nil {
		return err
	}
	d.people = []person{{"counter staff", "an.balie-" + suffix, pass}, {"technician", "tom.techniek-" + suffix, pass},
		{"admin", adminName, adminPass}}
	// The counter clerk's staff PIN for the kiosks (8-12 digits).
	d.staffPIN = fmt.Sprintf("%08d", 10000000+int(time.Now().UnixNano()%89999999))
	if err := d.admin.Do(ctx, http.MethodPatch, fmt.Sprintf("/api/v1/users/%d", staffID), map[string]string{"kiosk_pin": d.staffPIN}, nil); err != nil {
		d.log.Warn("staff kiosk PIN not set; loads go through the REST API", "err", err)
		d.staffPIN = ""
	}
	return nil
}

// startNodes writes one kluisd configuration per device, with its own MQTT
// credentials, and starts them.
func (d *demo) startNodes(ctx context.Context) {
	pub := filepath.Join(d.keyDir, "signing.pub")
	for _, s := range fleet {
		n := &node{spec: s, dir: filepath.Join(d.run, s.ID)}
		d.nodes[s.ID] = n
		d.order = append(d.order, s.ID)
		n.err = d.startNode(ctx, n, pub)
	}
}

func (d *demo) startNode(ctx context.Context, n *node, pub string) error {
	if err := os.MkdirAll(filepath.Join(n.dir, "journal"), 0o700); err != nil {
		return err
	}
	pw := "mqtt-" + randomHex(16)
	if _, err := d.cli(ctx, []string{"KLUIS_NEW_PASSWORD=" + pw}, "mqttpasswd", "-device", n.spec.ID); err != nil {
		return fmt.Errorf("MQTT credentials for %s: %w", n.spec.ID, err)
	}
	pwFile := filepath.Join(n.dir, "mqtt.password")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		return err
	}
	var err error
	n.proxy, err = cutproxy.New(ctx, d.brokerAddr, d.log.With("part", "proxy", "device", n.spec.ID))
	if err != nil {
		return err
	}
	if n.kioskAddr, err = testenv.PickAddr(); err != nil {
		return err
	}
	if n.metrics, err = testenv.PickAddr(); err != nil {
		return err
	}
	n.kiosk = kioskclient.New("http://" + n.kioskAddr)
	n.kluisd = daemonclient.New(n.metrics, daemonclient.Options{HTTP: httpc})
	n.configPath = filepath.Join(n.dir, "kluisd.yaml")
	if err := os.WriteFile(n.configPath, []byte(d.kluisdConfig(n, n.proxy.Addr(), pwFile, pub)), 0o600); err != nil {
		return err
	}
	name := "kluisd-" + n.spec.ID
	if _, err := d.p.start(name, filepath.Join(d.bin, "kluisd"), []string{"--config", n.configPath}, nil); err != nil {
		return err
	}
	return nil
}

// kluisdConfig is n's kluisd.yaml: MQTT through its cut proxy at
// proxyAddr with the password in pwFile, its hardware, compartments and
// layout, the backend's public key pub.
func (d *demo) kluisdConfig(n *node, proxyAddr, pwFile, pub string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated by kluis-demo for %s.\ndevice_id: %s\nsite: %s\nkind: %s\n", n.spec.Name, n.spec.ID, siteID, n.spec.Kind)
	fmt.Fprintf(&b, "mqtt:\n  url: tcp://%s   # through the demo's cut proxy to the broker at %s\n  username: %s\n  password_file: %s\n",
		proxyAddr, d.brokerAddr, n.spec.ID, pwFile)
	fmt.Fprintf(&b, "hardware:\n  driver: %s\n", n.spec.Hardware)
	switch n.spec.Hardware {
	case "tasmota":
		relays := n.spec.Channels
		if n.spec.Kind == "automaton" {
			relays = 1 + n.spec.Slots // the hatch lock, then one trigger per slot
		}
		fmt.Fprintf(&b, "  tasmota:\n    broker: %s\n    modules:\n      - {topic: %s, relays: %d, board: 0}\n", d.fieldbus, n.spec.ID, relays)
	case "kerong-cu16":
		fmt.Fprintf(&b, "  serial:\n    port: %s\n    baud: 19200\n", filepath.Join(d.run, "tty-"+n.spec.ID))
	default:
		fmt.Fprintf(&b, "  serial:\n    port: %s\n    baud: 115200\n", filepath.Join(d.run, "tty-"+n.spec.ID))
	}
	b.WriteString("compartments:\n")
	for _, c := range n.spec.compartments() {
		if n.spec.Kind == "automaton" {
			fmt.Fprintf(&b, "  - {number: %d, board: %d, slot: %d}\n", c.Number, c.Board, c.Channel)
		} else {
			fmt.Fprintf(&b, "  - {number: %d, board: %d, channel: %d}\n", c.Number, c.Board, c.Channel)
		}
	}
	fmt.Fprintf(&b, "timeouts:\n  door_open_detect: 5s\n  door_left_open: 3s\n  present: 15s\n")
	// The screen names the machine as the citizen's e-mail does (the
	// backend's device name).
	fmt.Fprintf(&b, "journal_dir: %s\nkiosk:\n  listen: %s\n  default_lang: en\n  display_name: %q\nmetrics_listen: %s\noffline:\n  public_key_file: %s\n",
		filepath.Join(n.dir, "journal"), n.kioskAddr, n.spec.Name, n.metrics, pub)
	b.WriteString(n.spec.layoutYAML())
	return b.String()
}

// waitNode waits until a kluisd is ready and connected to the broker.
func (d *demo) waitNode(ctx context.Context, n *node) (string, error) {
	if n.err != nil {
		return "", n.err
	}
	name := "kluisd-" + n.spec.ID
	obs, err := testenv.Poll(ctx, 45*time.Second, name+" ready and connected", func(ctx context.Context) (bool, string, error) {
		if !d.p.running(name) {
			return false, "exited", errors.New(name + " exited")
		}
		h, err := n.kluisd.Health(ctx)
		if err != nil {
			return false, "", err
		}
		return h.Ready && h.MQTTConnected, fmt.Sprintf("ready=%t mqtt_connected=%t", h.Ready, h.MQTTConnected), nil
	})
	if err != nil {
		return obs, fmt.Errorf("%w\n--- last lines of %s.log ---\n%s", err, name, d.p.tail(name, 2500))
	}
	n.ready = true
	return obs, nil
}

// person is a demo user who can sign in to the staff console.
type person struct{ role, name, password string }
