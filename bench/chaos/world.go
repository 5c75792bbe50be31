package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"kluis/backend/api/apiclient"
	"kluis/backend/broker/mosquittotest"
	"kluis/backend/pgtest"
	"kluis/backend/pgtest/pgpair"
	"kluis/controller/daemon/daemonclient"
	"kluis/controller/kiosk/kioskclient"
	"kluis/deploy/dev/cutproxy"
	"kluis/deploy/dev/procrun"
	"kluis/deploy/dev/testenv"
	"kluis/simulator/simclient"
)

// Hardware names of kluis-sim and kluisd.
const (
	HWKluis   = "kluis"
	HWKerong  = "kerong-cu16"
	HWTasmota = "tasmota"
)

// DeviceSpec is one simulated device with its kluisd.
type DeviceSpec struct {
	ID       string
	Kind     string // locker or automaton
	Hardware string // HWKluis, HWKerong or HWTasmota
	Channels int    // lockers
	Slots    int    // automatons
}

// Serial reports whether the device's boards are on a serial line.
func (d DeviceSpec) Serial() bool { return d.Hardware != HWTasmota }

// Compartments is the number of compartments (slots on an automaton).
func (d DeviceSpec) Compartments() int {
	if d.Kind == "automaton" {
		return d.Slots
	}
	return d.Channels
}

// DefaultFleet is every driver: perDriver lockers on the Kluis protocol, on
// Kerong CU16 and on Tasmota, and perDriver Tasmota automatons.
func DefaultFleet(perDriver int) []DeviceSpec {
	var out []DeviceSpec
	for i := 1; i <= perDriver; i++ {
		out = append(out,
			DeviceSpec{ID: fmt.Sprintf("kb%d", i), Kind: "locker", Hardware: HWKluis, Channels: 6},
			DeviceSpec{ID: fmt.Sprintf("kr%d", i), Kind: "locker", Hardware: HWKerong, Channels: 6},
			DeviceSpec{ID: fmt.Sprintf("tl%d", i), Kind: "locker", Hardware: HWTasmota, Channels: 4},
			DeviceSpec{ID: fmt.Sprintf("ta%d", i), Kind: "automaton", Hardware: HWTasmota, Slots: 4},
		)
	}
	return out
}

// Broker modes of a world (Options.Broker).
const (
	// BrokerMosquittoTLS is the production shape: a private Mosquitto with
	// deploy/mosquitto's configuration and ACL and its TLS listener
	// enabled (a CA and a broker certificate made for the run); every
	// kluisd and every backend connects over TLS, trusting that CA only.
	BrokerMosquittoTLS = "mosquitto-tls"
	// BrokerMosquitto is the same Mosquitto over plain MQTT.
	BrokerMosquitto = "mosquitto"
	// BrokerEmbedded is kluis-backend's own broker (backend/broker), in
	// the one backend process, speaking TLS only (-mqtt-tls-cert with the
	// run's certificate); each device's password is set through the admin
	// API as production provisions it. A broker kill is a backend kill.
	BrokerEmbedded = "embedded"
)

// BrokerModes lists the broker modes.
func BrokerModes() []string { return []string{BrokerMosquittoTLS, BrokerMosquitto, BrokerEmbedded} }

// Options configure Start.
type Options struct {
	// BinDir holds kluis-backend, kluis-sim and kluisd (Build).
	BinDir string
	// Broker is the broker mode: BrokerMosquittoTLS (default),
	// BrokerMosquitto or BrokerEmbedded (one backend only).
	Broker string
	// Seed seeds the simulator's faults.
	Seed uint64
	// Devices is the fleet; default DefaultFleet(1).
	Devices []DeviceSpec
	// Backends is how many kluis-backend processes run on the one
	// database and broker; default 1.
	Backends int
	// BackendArgs are extra serve flags of every backend.
	BackendArgs []string
	// BackendMQTTUser names backend i's user at Mosquitto; default
	// "kluis-backend", then "kluis-backend-2", ... (deploy/mosquitto/acl;
	// a user the ACL does not name gets the backend's rights). Users named
	// here are added to the password file.
	BackendMQTTUser func(i int) string
	// Fieldbus is the MQTT URL of the Tasmota modules; default MQTT_URL
	// or tcp://127.0.0.1:1883.
	Fieldbus string
	// ExpiryKind gets the short exact pickup period ExpiryPeriod.
	ExpiryKind   string
	ExpiryPeriod time.Duration
	// Failover puts the database on a private PostgreSQL primary and
	// synchronous standby (backend/pgtest/pgpair) instead of the system
	// PostgreSQL, the backends given both hosts (target_session_attrs=
	// read-write): the db_failover fault needs it.
	Failover bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Backend is one kluis-backend process.
type Backend struct {
	Index   int
	APIBase string
	Proc    *procrun.Proc
}

// Node is one device: its simulator twin and its kluisd.
type Node struct {
	Spec       DeviceSpec
	Dir        string
	JournalDir string
	ConfigPath string
	Kiosk      *kioskclient.Client
	Metrics    string               // host:port
	Kluisd     *daemonclient.Client // health and metrics at Metrics
	Proxy      *cutproxy.Proxy
	Proc       *procrun.Proc
	// Mounted is true when JournalDir is a small tmpfs of its own (the
	// full-disk fault needs it).
	Mounted bool
}

// World is a running installation.
type World struct {
	T     testing.TB
	Opts  Options
	Dir   string
	RunID string
	DBURL string
	DB    *pgxpool.Pool
	// Pair is the database's primary and standby with Options.Failover
	// (nil otherwise).
	Pair *pgpair.Pair
	// Mosq is the Mosquitto of the Mosquitto modes (nil with the
	// embedded broker).
	Mosq *mosquittotest.Process
	// BrokerAddr is where every kluisd's cut proxy connects: Mosquitto's
	// TLS or plain listener, or the embedded broker.
	BrokerAddr string
	// CAFile is the run's CA when the devices' link is TLS (kluisd's
	// mqtt.ca_file, the backend's MQTT_CA_FILE); empty for plain MQTT.
	CAFile   string
	Backends []*Backend
	Sim      *simclient.Client
	SimProc  *procrun.Proc
	Nodes    []*Node
	Mail     *SMTPGateway
	SMS      *SMSGateway
	MailDir  string
	PubKey   string // file with the QR public key

	Admin, Staff API
	StaffPIN     string
	TechPIN      string
	adminPass    string
	backendEnv   []string
	mqttPass     map[string]string
	byID         map[string]*Node

	logMu sync.Mutex
}

// Logf writes a progress line.
func (w *World) Logf(format string, args ...any) {
	if w.Opts.Log == nil {
		return
	}
	w.logMu.Lock()
	defer w.logMu.Unlock()
	fmt.Fprintf(w.Opts.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// Node returns the device's node.
func (w *World) Node(id string) *Node { return w.byID[id] }

// SiteID is the one site of the world.
const SiteID = "chaos-site"

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Start starts everything and waits until every kluisd is connected. The
// processes, mounts and gateways end with t.
func Start(ctx context.Context, t testing.TB, o Options) (*World, error) {
	if len(o.Devices) == 0 {
		o.Devices = DefaultFleet(1)
	}
	if o.Backends <= 0 {
		o.Backends = 1
	}
	switch o.Broker {
	case "":
		o.Broker = BrokerMosquittoTLS
	case BrokerMosquittoTLS, BrokerMosquitto:
	case BrokerEmbedded:
		if o.Backends > 1 {
			// Each replica would be a broker of its own: a device reaches
			// one of them only.
			return nil, fmt.Errorf("chaos: the embedded broker runs with one backend, not %d", o.Backends)
		}
	default:
		return nil, fmt.Errorf("chaos: broker %q: want one of %s", o.Broker, strings.Join(BrokerModes(), ", "))
	}
	if o.BackendMQTTUser == nil {
		// deploy/mosquitto/acl: kluis-backend, and a user of its own for
		// every further replica (Mosquitto takes the user name as client id).
		o.BackendMQTTUser = func(i int) string {
			if i == 0 {
				return "kluis-backend"
			}
			return fmt.Sprintf("kluis-backend-%d", i+1)
		}
	}
	if o.Fieldbus == "" {
		o.Fieldbus = testenv.BrokerURL()
	}
	if o.ExpiryKind == "" {
		o.ExpiryKind, o.ExpiryPeriod = "residence_card", 15*time.Second
	}
	dir := t.TempDir()
	if keep := os.Getenv("CHAOS_KEEP"); keep != "" {
		// A replay keeps the processes' logs, journals and mail for reading.
		dir = filepath.Join(keep, fmt.Sprintf("run-%d", time.Now().Unix()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("chaos: CHAOS_KEEP: %w", err)
		}
		t.Logf("CHAOS_KEEP: logs in %s", dir)
	}
	w := &World{T: t, Opts: o, Dir: dir, RunID: randomHex(3), mqttPass: map[string]string{}, byID: map[string]*Node{}}
	if o.Failover {
		w.Pair = pgpair.Start(t)
		w.Pair.CreateDatabase("kluis")
		w.DBURL = w.Pair.URL("kluis")
	} else {
		w.DBURL = pgtest.NewDatabase(t)
	}
	w.MailDir = filepath.Join(w.Dir, "mail")
	var err error
	if w.Mail, err = NewSMTPGateway(w.MailDir); err != nil {
		return nil, err
	}
	t.Cleanup(func() { w.Mail.Close() })
	if w.SMS, err = NewSMSGateway(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { w.SMS.Close() })

	// The broker: Mosquitto (deploy/mosquitto's configuration and ACL,
	// one user per device and per backend user), or the backend's own.
	var certs *mosquittotest.Certs
	if o.Broker != BrokerMosquitto {
		certs = mosquittotest.NewCerts(t)
		w.CAFile = certs.CAFile
	}
	if o.Broker != BrokerEmbedded {
		if err := w.startMosquitto(certs); err != nil {
			return nil, err
		}
	}
	w.adminPass = "Admin-" + randomHex(10)
	keyDir := filepath.Join(w.Dir, "keys")
	w.backendEnv = []string{
		"DATABASE_URL=" + w.DBURL,
		"KLUIS_KEY_DIR=" + keyDir,
		"KLUIS_MAIL_URL=" + w.Mail.URL(),
		"KLUIS_SMS_URL=" + w.SMS.URL(),
		"KLUIS_SMS_TOKEN=chaos-sms-token",
		"KLUIS_SLIP_DIR=" + filepath.Join(w.Dir, "slips"),
		"KLUIS_ADMIN_USER=admin",
		"KLUIS_ADMIN_PASSWORD=" + w.adminPass,
		"KLUIS_INSECURE_FAST_HASH=1",
		"KLUIS_PUBLIC_URL=http://kluis.example",
	}
	switch o.Broker {
	case BrokerEmbedded:
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		w.BrokerAddr = fmt.Sprintf("127.0.0.1:%d", port)
		w.backendEnv = append(w.backendEnv, "MQTT_URL=", "KLUIS_MQTT_ADDR="+w.BrokerAddr,
			"KLUIS_MQTT_TLS_CERT="+certs.CertFile, "KLUIS_MQTT_TLS_KEY="+certs.KeyFile)
	case BrokerMosquittoTLS:
		w.BrokerAddr = w.Mosq.TLSAddr()
		w.backendEnv = append(w.backendEnv, "MQTT_URL="+w.Mosq.TLSURL(), "MQTT_CA_FILE="+w.CAFile)
	default:
		w.BrokerAddr = w.Mosq.Addr()
		w.backendEnv = append(w.backendEnv, "MQTT_URL="+w.Mosq.URL())
	}
	for i := 0; i < o.Backends; i++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		env := append(append([]string(nil), w.backendEnv...), fmt.Sprintf("KLUIS_HTTP_ADDR=127.0.0.1:%d", port))
		if w.Mosq != nil {
			u := o.BackendMQTTUser(i)
			env = append(env, "MQTT_USERNAME="+u, "MQTT_PASSWORD="+w.mqttPass[u])
		}
		args := []string{"serve", "-housekeep-every", "1s", "-pickup-period", fmt.Sprintf("%s=%s", o.ExpiryKind, o.ExpiryPeriod),
			"-code-sync-every", "2s", "-open-timeout", "10s", "-audit-verify-every", "0", "-rearm-unfollowed-after", "6s", "-redeliver-after", "3s", "-redeliver-max", "6s"}
		args = append(args, o.BackendArgs...)
		b := &Backend{Index: i, APIBase: fmt.Sprintf("http://127.0.0.1:%d", port),
			Proc: procrun.New(w.Dir, fmt.Sprintf("kluis-backend-%d", i), filepath.Join(o.BinDir, "kluis-backend"), args, env, nil)}
		w.Backends = append(w.Backends, b)
		t.Cleanup(func() { b.Proc.Stop(10 * time.Second) })
		// The first one migrates the database alone.
		if err := w.StartBackend(ctx, i); err != nil {
			return nil, err
		}
	}
	if w.DB, err = pgxpool.New(ctx, w.DBURL); err != nil {
		return nil, err
	}
	t.Cleanup(w.DB.Close)
	pub, err := w.cli(ctx, "pubkey")
	if err != nil {
		return nil, err
	}
	w.PubKey = filepath.Join(w.Dir, "qr.pub")
	if err := os.WriteFile(w.PubKey, []byte(pub), 0o600); err != nil {
		return nil, err
	}
	if err := w.setupBackendData(ctx); err != nil {
		return nil, err
	}
	if o.Broker == BrokerEmbedded {
		// Each device's password at the embedded broker, as an admin sets
		// it (kluisctl devices mqtt-password).
		for _, d := range o.Devices {
			var pw struct {
				Password string `json:"password"`
			}
			if err := w.Admin.Do(ctx, http.MethodPost, "/api/v1/devices/"+d.ID+"/mqtt-password", nil, &pw); err != nil {
				return nil, fmt.Errorf("device %s: mqtt password: %w", d.ID, err)
			}
			w.mqttPass[d.ID] = pw.Password
		}
	}
	if err := w.startSim(ctx); err != nil {
		return nil, err
	}
	for _, d := range o.Devices {
		if err := w.startNode(d); err != nil {
			return nil, err
		}
	}
	for _, n := range w.Nodes {
		if err := w.WaitConnected(ctx, n); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// StartBackend starts backend i (again, after a kill: same database, keys
// and ports) and waits until it is ready.
func (w *World) StartBackend(ctx context.Context, i int) error {
	b := w.Backends[i]
	if err := b.Proc.Start(); err != nil {
		return err
	}
	return waitFor(ctx, 60*time.Second, b.Proc.Name+" ready", func(ctx context.Context) (bool, string, error) {
		if !b.Proc.Running() {
			return false, "", fmt.Errorf("%s exited:\n%s", b.Proc.Name, b.Proc.Tail(3000))
		}
		err := apiclient.DoJSON(ctx, httpc, http.MethodGet, b.APIBase+"/readyz", "", nil, nil)
		return err == nil, "", err
	})
}

// startMosquitto starts a private Mosquitto with deploy/mosquitto's
// configuration and ACL, every backend user and device in its password
// file, and its TLS listener enabled with certs when certs is not nil.
func (w *World) startMosquitto(certs *mosquittotest.Certs) error {
	o := w.Opts
	root, err := procrun.ModuleRoot()
	if err != nil {
		return err
	}
	conf, err := os.ReadFile(filepath.Join(root, "deploy", "mosquitto", "mosquitto.conf"))
	if err != nil {
		return err
	}
	acl, err := os.ReadFile(filepath.Join(root, "deploy", "mosquitto", "acl"))
	if err != nil {
		return err
	}
	aclText := string(acl)
	for i := 0; i < o.Backends; i++ {
		u := o.BackendMQTTUser(i)
		if w.mqttPass[u] == "" {
			w.mqttPass[u] = "backend-" + randomHex(12)
		}
		if !strings.Contains(aclText, "\nuser "+u+"\n") {
			// The shipped ACL has the block commented out.
			block := "user " + u + "\ntopic readwrite #\n"
			if c := "#user " + u + "\n#topic readwrite #\n"; strings.Contains(aclText, c) {
				aclText = strings.Replace(aclText, c, block, 1)
			} else {
				aclText = block + "\n" + aclText
			}
		}
	}
	for _, d := range o.Devices {
		w.mqttPass[d.ID] = "device-" + randomHex(12)
	}
	mo := mosquittotest.Options{Config: string(conf), ACL: aclText, Users: w.mqttPass}
	if certs != nil {
		// The shipped TLS listener, uncommented as deploy/mosquitto's
		// README tells an operator to.
		mo.Config, mo.TLS = mosquittotest.EnableTLS(mo.Config), certs
	}
	w.Mosq = mosquittotest.Start(w.T, mo)
	return nil
}

// KillBroker kills the broker with SIGKILL: Mosquitto, or with the
// embedded broker the backend process that runs it.
func (w *World) KillBroker() {
	if w.Mosq == nil {
		w.Backends[0].Proc.Kill()
		return
	}
	w.Mosq.Kill()
}

// StartBroker starts the broker again after KillBroker and waits until it
// listens (the backend until it is ready). Call it on the test's
// goroutine: Mosquitto's start fails the test.
func (w *World) StartBroker(ctx context.Context) error {
	if w.Mosq == nil {
		return w.StartBackend(ctx, 0)
	}
	w.Mosq.Start()
	return nil
}

// LiveBackend returns a running backend (the first), for API calls.
func (w *World) LiveBackend() *Backend {
	for _, b := range w.Backends {
		if b.Proc.Running() {
			return b
		}
	}
	return w.Backends[0]
}

// cli runs a kluis-backend subcommand and returns its stdout.
func (w *World) cli(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(w.Opts.BinDir, "kluis-backend"), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, w.backendEnv...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kluis-backend %s: %w: %s", args[0], err, errb.String())
	}
	return out.String(), nil
}

var httpc = &http.Client{Timeout: 20 * time.Second}

// API is the backend's REST API as one user; it follows the live backend.
type API struct {
	w     *World
	token string
}

// Do calls the REST API at a live backend.
func (a API) Do(ctx context.Context, method, path string, in, out any) error {
	return apiclient.DoJSON(ctx, httpc, method, a.w.LiveBackend().APIBase+path, a.token, in, out)
}

func (w *World) login(ctx context.Context, user, pass string) (API, error) {
	s, err := apiclient.Login(ctx, httpc, w.LiveBackend().APIBase, user, pass)
	if err != nil {
		return API{}, err
	}
	return API{w: w, token: s.Token}, nil
}

func (w *World) setupBackendData(ctx context.Context) error {
	var err error
	if w.Admin, err = w.login(ctx, "admin", w.adminPass); err != nil {
		return err
	}
	if err := w.Admin.Do(ctx, http.MethodPost, "/api/v1/sites", map[string]string{"id": SiteID, "name": "Stadhuis (chaos)",
		"time_zone": "Europe/Brussels", "address": "Grote Markt 54, 8500 Kortrijk"}, nil); err != nil {
		return err
	}
	for _, d := range w.Opts.Devices {
		var comps []map[string]any
		for i := 0; i < d.Compartments(); i++ {
			comps = append(comps, map[string]any{"number": i + 1, "board": 0, "channel": i, "size": "M"})
		}
		if err := w.Admin.Do(ctx, http.MethodPost, "/api/v1/devices", map[string]any{"id": d.ID, "site_id": SiteID,
			"kind": d.Kind, "name": d.ID, "compartments": comps}, nil); err != nil {
			return fmt.Errorf("device %s: %w", d.ID, err)
		}
	}
	pass := "Staff-" + randomHex(8)
	var u struct {
		ID int64 `json:"id"`
	}
	if err := w.Admin.Do(ctx, http.MethodPost, "/api/v1/users", map[string]string{"username": "an.balie", "password": pass, "role": "staff"}, &u); err != nil {
		return err
	}
	if w.Staff, err = w.login(ctx, "an.balie", pass); err != nil {
		return err
	}
	w.StaffPIN = "48291357"
	if err := w.Admin.Do(ctx, http.MethodPatch, fmt.Sprintf("/api/v1/users/%d", u.ID), map[string]string{"kiosk_pin": w.StaffPIN}, nil); err != nil {
		return err
	}
	var tech struct {
		ID int64 `json:"id"`
	}
	if err := w.Admin.Do(ctx, http.MethodPost, "/api/v1/users", map[string]string{"username": "piet.techniek",
		"password": "Tech-" + randomHex(8), "role": "technician"}, &tech); err != nil {
		return err
	}
	w.TechPIN = "73194628"
	return w.Admin.Do(ctx, http.MethodPatch, fmt.Sprintf("/api/v1/users/%d", tech.ID), map[string]string{"kiosk_pin": w.TechPIN}, nil)
}

// topic is the Tasmota topic of a device's module in this run.
func (w *World) topic(d DeviceSpec) string { return "chaos-" + w.RunID + "-" + d.ID }

func (w *World) tty(d DeviceSpec) string { return filepath.Join(w.Dir, "tty-"+d.ID) }

func (w *World) startSim(ctx context.Context) error {
	var b strings.Builder
	fmt.Fprintf(&b, "seed: %d\nhttp: 127.0.0.1:0\nbroker: %s\ndevices:\n", w.Opts.Seed, w.Opts.Fieldbus)
	for _, d := range w.Opts.Devices {
		fmt.Fprintf(&b, "  - id: %s\n    kind: %s\n    hardware: %s\n    boards: 1\n", d.ID, d.Kind, d.Hardware)
		if d.Serial() {
			fmt.Fprintf(&b, "    link: %s\n", w.tty(d))
		} else {
			fmt.Fprintf(&b, "    topic: %s\n", w.topic(d))
		}
		if d.Kind == "automaton" {
			fmt.Fprintf(&b, "    slots: %d\n    move_time: 300ms\n", d.Slots)
		} else {
			fmt.Fprintf(&b, "    channels: %d\n", d.Channels)
		}
	}
	path := filepath.Join(w.Dir, "fleet.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return err
	}
	lw := procrun.NewLineWriter(`{"control"`)
	w.SimProc = procrun.New(w.Dir, "kluis-sim", filepath.Join(w.Opts.BinDir, "kluis-sim"), []string{"fleet", "--config", path}, nil, lw)
	if err := w.SimProc.Start(); err != nil {
		return err
	}
	w.T.Cleanup(func() { w.SimProc.Stop(10 * time.Second) })
	var line string
	select {
	case line = <-lw.C:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("kluis-sim: no ready line:\n%s", w.SimProc.Tail(3000))
	case <-ctx.Done():
		return ctx.Err()
	}
	var ready struct {
		Control string `json:"control"`
	}
	if err := json.Unmarshal([]byte(line), &ready); err != nil {
		return fmt.Errorf("kluis-sim ready line %q: %w", line, err)
	}
	w.Sim = simclient.New(ready.Control, simclient.Options{HTTP: httpc})
	return nil
}

// journalMountSize is the size of each device's journal tmpfs.
const journalMountSize = "16m"

// startNode writes the device's kluisd configuration and starts it behind
// its own cut proxy to the broker.
func (w *World) startNode(d DeviceSpec) error {
	n := &Node{Spec: d, Dir: filepath.Join(w.Dir, d.ID)}
	n.JournalDir = filepath.Join(n.Dir, "journal")
	if err := os.MkdirAll(n.JournalDir, 0o700); err != nil {
		return err
	}
	// A small file system of its own for the journal, so that the disk can
	// be filled (needs root; without it the full-disk fault is skipped).
	if os.Geteuid() == 0 {
		if err := syscall.Mount("tmpfs", n.JournalDir, "tmpfs", 0, "size="+journalMountSize+",mode=0700"); err == nil {
			n.Mounted = true
			dir := n.JournalDir
			w.T.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
		}
	}
	pwFile := filepath.Join(n.Dir, "mqtt.password")
	if err := os.WriteFile(pwFile, []byte(w.mqttPass[d.ID]+"\n"), 0o600); err != nil {
		return err
	}
	var err error
	if n.Proxy, err = cutproxy.New(context.Background(), w.BrokerAddr, nil); err != nil {
		return err
	}
	w.T.Cleanup(func() { n.Proxy.Close() })
	kp, err := FreePort()
	if err != nil {
		return err
	}
	mp, err := FreePort()
	if err != nil {
		return err
	}
	n.Kiosk = &kioskclient.Client{Base: fmt.Sprintf("http://127.0.0.1:%d", kp), HTTP: httpc}
	n.Metrics = fmt.Sprintf("127.0.0.1:%d", mp)
	n.Kluisd = daemonclient.New(n.Metrics, daemonclient.Options{HTTP: httpc})
	var b strings.Builder
	fmt.Fprintf(&b, "device_id: %s\nsite: %s\nkind: %s\n", d.ID, SiteID, d.Kind)
	// A client id unique to this run: the Tasmota driver's client on the
	// shared field bus derives its id from it, and two runs at once (make
	// test elsewhere) must not kick each other off.
	// Over TLS the proxy passes the handshake through: kluisd checks the
	// broker's certificate (made for 127.0.0.1) against the run's CA only.
	scheme, ca := "tcp", ""
	if w.CAFile != "" {
		scheme, ca = "ssl", "  ca_file: "+w.CAFile+"\n"
	}
	fmt.Fprintf(&b, "mqtt:\n  url: %s://%s\n  username: %s\n  client_id: %s.%s\n  password_file: %s\n%s  resend_after: 2s\n  heartbeat_every: 5s\n",
		scheme, n.Proxy.Addr(), d.ID, d.ID, w.RunID, pwFile, ca)
	fmt.Fprintf(&b, "hardware:\n  driver: %s\n", d.Hardware)
	switch {
	case d.Hardware == HWTasmota && d.Kind == "automaton":
		fmt.Fprintf(&b, "  hatch_channel: 0\n  tasmota:\n    broker: %s\n    modules:\n      - {topic: %s, relays: %d, board: 0}\n", w.Opts.Fieldbus, w.topic(d), 1+d.Slots)
	case d.Hardware == HWTasmota:
		fmt.Fprintf(&b, "  tasmota:\n    broker: %s\n    modules:\n      - {topic: %s, relays: %d, board: 0}\n", w.Opts.Fieldbus, w.topic(d), d.Channels)
	case d.Hardware == HWKerong:
		fmt.Fprintf(&b, "  serial: {port: %s, baud: 19200}\n", w.tty(d))
	default:
		fmt.Fprintf(&b, "  serial: {port: %s, baud: 115200}\n", w.tty(d))
	}
	b.WriteString("compartments:\n")
	for i := 0; i < d.Compartments(); i++ {
		if d.Kind == "automaton" {
			fmt.Fprintf(&b, "  - {number: %d, board: 0, slot: %d}\n", i+1, i)
		} else {
			fmt.Fprintf(&b, "  - {number: %d, board: 0, channel: %d}\n", i+1, i)
		}
	}
	fmt.Fprintf(&b, "pulse: 300ms\ntimeouts: {door_open_detect: 2s, door_left_open: 2s, grace: 10m, verify: 3s, present: 15s, open_retries: 1, board_unreachable: 2s}\n")
	fmt.Fprintf(&b, "lockout: {max_failures: 50, window: 1m, duration: 10s}\n")
	fmt.Fprintf(&b, "journal_dir: %s\nkiosk: {listen: 127.0.0.1:%d, default_lang: en}\nmetrics_listen: %s\noffline: {public_key_file: %s}\n",
		n.JournalDir, kp, n.Metrics, w.PubKey)
	n.ConfigPath = filepath.Join(n.Dir, "kluisd.yaml")
	if err := os.WriteFile(n.ConfigPath, []byte(b.String()), 0o600); err != nil {
		return err
	}
	n.Proc = procrun.New(w.Dir, "kluisd-"+d.ID, filepath.Join(w.Opts.BinDir, "kluisd"), []string{"--config", n.ConfigPath}, nil, nil)
	w.T.Cleanup(func() { n.Proc.Stop(10 * time.Second) })
	w.Nodes = append(w.Nodes, n)
	w.byID[d.ID] = n
	return n.Proc.Start()
}

// WaitConnected waits until n's kluisd is ready and connected.
func (w *World) WaitConnected(ctx context.Context, n *Node) error {
	return waitFor(ctx, 60*time.Second, n.Spec.ID+" ready and connected", func(ctx context.Context) (bool, string, error) {
		if !n.Proc.Running() {
			return false, "", fmt.Errorf("kluisd %s exited:\n%s", n.Spec.ID, n.Proc.Tail(3000))
		}
		h, err := n.Kluisd.Health(ctx)
		return h.Ready && h.MQTTConnected, fmt.Sprintf("%+v", h), err
	})
}

// WaitBacklogEmpty waits until n's kluisd has every event acknowledged.
func (w *World) WaitBacklogEmpty(ctx context.Context, n *Node, timeout time.Duration) error {
	return waitFor(ctx, timeout, n.Spec.ID+" backlog empty", func(ctx context.Context) (bool, string, error) {
		h, err := n.Kluisd.Health(ctx)
		return err == nil && h.Backlog == 0 && h.MQTTConnected, fmt.Sprintf("%+v", h), err
	})
}
