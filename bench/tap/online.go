package tap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"kluis/backend/api/apiclient"
	"kluis/backend/auth"
	"kluis/backend/broker/mosquittotest"
	"kluis/backend/codes"
	"kluis/backend/server"
	"kluis/bench"
	"kluis/controller/daemon/daemonclient"
	"kluis/controller/engine"
	"kluis/controller/kiosk/kioskclient"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
	"kluis/deploy/mosquitto"
)

// The online rig's MQTT users besides the device: the backend (deploy/
// mosquitto's ACL) and the two ends of the floor's round trip, which may
// use bench/rtt/# only.
const (
	backendUser = "kluis-backend"
	rttA, rttB  = "bench-rtt-a", "bench-rtt-b"
	rttReq      = "bench/rtt/req"
	rttRes      = "bench/rtt/res"
)

// doc is a document loaded in one of the online device's compartments.
type doc struct {
	id, kind string
	comp     codes.Compartment
}

// online is kluisd as a process of its own (built from ./cmd/kluisd) with
// the simulator's board on a pty, kluis-backend in-process with a
// throw-away database, and Mosquitto between them (deploy/mosquitto's
// configuration and ACL, a private process on a free port).
type online struct {
	*board
	dir      string
	drop     func()
	mosq     *mosquittotest.Process
	stopSrv  func() error
	pool     *pgxpool.Pool
	codes    *codes.Service
	docs     []doc
	kluisd   *exec.Cmd
	exited   chan error
	kiosk    *kioskclient.Client
	health   *daemonclient.Client
	a, b     paho.Client
	answers  chan struct{}
	started  time.Duration // exec to the first ready /healthz
	notified time.Duration // exec to READY=1 (sd_notify)
	readyRSS float64
	// pubKey is the backend's public key (base64), kluisd's
	// offline.public_key_file: it acts on no answer without it.
	pubKey string
}

// startOnline starts the online rig; its board runs under ctx.
func startOnline(ctx context.Context, env bench.Env, o options) (_ *online, err error) {
	r := &online{answers: make(chan struct{}, 1)}
	defer func() {
		if err != nil {
			r.stop()
		}
	}()
	if r.dir, err = os.MkdirTemp(o.dir, "kluis-bench-tap-online-"); err != nil {
		return r, fmt.Errorf("tap: %w", err)
	}
	// kluisd, the production build as make dist makes it (no race
	// detector, static: the start and the resident memory measured are the
	// shipped binary's).
	bin := filepath.Join(r.dir, "bin")
	if err := buildShipped(ctx, filepath.Join(bin, "kluisd")); err != nil {
		return r, err
	}
	dbURL, drop, err := bench.TempDatabase(ctx, env.AdminURL, "tap")
	if err != nil {
		return r, err
	}
	r.drop = drop
	keys, err := codes.GenerateKeys()
	if err != nil {
		return r, err
	}
	r.pubKey = keys.PublicBase64()
	secret := func() string {
		b := make([]byte, 18)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}
	users := map[string]string{backendUser: secret(), device: secret(), rttA: secret(), rttB: secret()}
	acl := mosquitto.ACL() + fmt.Sprintf("\n# kluis-bench tap: the floor's round trip\nuser %s\ntopic readwrite bench/rtt/#\nuser %s\ntopic readwrite bench/rtt/#\n", rttA, rttB)
	if r.mosq, err = mosquittotest.Launch(r.dir, mosquittotest.Options{Config: mosquitto.Config(), ACL: acl, Users: users}); err != nil {
		return r, err
	}

	// The backend, in-process: what kluisd's verification reaches.
	adminPW := secret()
	srv, stop, err := bench.StartBackend(ctx, server.Options{DatabaseURL: dbURL, Keys: keys,
		HTTPAddr: "127.0.0.1:0", MQTTURL: r.mosq.URL(), MQTTUsername: backendUser, MQTTPassword: users[backendUser],
		SlipDir: filepath.Join(r.dir, "slips"), AdminPassword: adminPW, Console: io.Discard,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
		PasswordParams: auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1},
		// Far above the default per-device budgets (docs/performance.md).
		DeviceVerifyBudget: bench.Unthrottled(), DeviceEventBudget: bench.Unthrottled(),
		DeviceAlarmBudget: bench.Unthrottled(), DeviceResultBudget: bench.Unthrottled(),
		// No code bundles for kluisd: every tap is verified online.
		CodeSyncEvery: server.Disabled, RearmUnfollowed: server.Disabled, HousekeepEvery: server.Disabled, AuditEvery: server.Disabled})
	if err != nil {
		return r, err
	}
	r.stopSrv = stop
	if r.pool, err = pgxpool.New(ctx, dbURL); err != nil {
		return r, err
	}
	if r.codes, err = codes.New(codes.Options{Pool: r.pool, Keys: keys, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		return r, err
	}
	api := "http://" + srv.HTTPAddr()
	sess, err := apiclient.Login(ctx, &http.Client{Timeout: 30 * time.Second}, api, server.DefaultAdminUser, adminPW)
	if err != nil {
		return r, fmt.Errorf("tap: admin %w", err)
	}
	if err := r.loadDocuments(ctx, api, sess.Token); err != nil {
		return r, err
	}
	if _, err := r.pool.Exec(ctx, `CREATE TABLE bench_floor_audit (LIKE audit_pending INCLUDING ALL)`); err != nil {
		return r, fmt.Errorf("tap: floor table: %w", err)
	}

	// The floor's round trip: A publishes, B answers, both QoS 1 like a
	// verification's request and answer; A subscribes to the answer as
	// kluisd does (wire.Kind.SubscribeQoS: 0).
	if r.b, err = connect(r.mosq.URL(), rttB, users[rttB], rttReq, 1, func(c paho.Client, m paho.Message) {
		c.Publish(rttRes, 1, false, m.Payload())
	}); err != nil {
		return r, err
	}
	if r.a, err = connect(r.mosq.URL(), rttA, users[rttA], rttRes, wire.KindVerifyRes.SubscribeQoS(), func(paho.Client, paho.Message) {
		select {
		case r.answers <- struct{}{}:
		default:
		}
	}); err != nil {
		return r, err
	}

	// The board and kluisd.
	if r.board, err = openBoard(ctx, device); err != nil {
		return r, err
	}
	labels := make(map[int]string, len(r.docs))
	for _, d := range r.docs {
		labels[d.comp.Channel] = d.id
	}
	if err := r.load(labels); err != nil {
		return r, err
	}
	if err := r.startKluisd(ctx, filepath.Join(bin, "kluisd"), users[device], o.baud); err != nil {
		return r, err
	}
	return r, nil
}

// connect connects user to url and subscribes topic at qos with fn.
func connect(url, user, password, topic string, qos byte, fn paho.MessageHandler) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker(url).SetClientID(user).SetUsername(user).SetPassword(password).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(20 * time.Second).SetOrderMatters(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("tap: MQTT %s: connect: %v", user, tok.Error())
	}
	if tok := c.Subscribe(topic, qos, fn); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		c.Disconnect(0)
		return nil, fmt.Errorf("tap: MQTT %s: subscribe: %v", user, tok.Error())
	}
	return c, nil
}

// loadDocuments makes the device with one compartment per channel over
// the API and loads a document into each (identity cards, whose PIN needs
// the date of birth, and driving licences, whose PIN does not, mixed).
func (r *online) loadDocuments(ctx context.Context, api, token string) error {
	call := func(method, path string, in, out any) error {
		return apiclient.DoJSON(ctx, &http.Client{Timeout: 30 * time.Second}, method, api+path, token, in, out)
	}
	if err := call("POST", "/api/v1/sites", map[string]any{"id": "bench", "name": "Bench"}, nil); err != nil {
		return fmt.Errorf("tap: site: %w", err)
	}
	var cs []map[string]any
	for c := 0; c < comps; c++ {
		cs = append(cs, map[string]any{"number": c + 1, "board": 0, "channel": c, "size": "M", "height_cm": 100})
	}
	if err := call("POST", "/api/v1/devices", map[string]any{"id": device, "site_id": "bench", "kind": "locker", "compartments": cs}, nil); err != nil {
		return fmt.Errorf("tap: device: %w", err)
	}
	for i := 0; i < comps; i++ {
		kind := "eid"
		if i%2 == 1 {
			kind = "driving_licence"
		}
		var d struct {
			ID string `json:"id"`
		}
		if err := call("POST", "/api/v1/documents", map[string]any{"kind": kind, "number": fmt.Sprintf("TAP%06d", i+1),
			"holder_first_name": "Bench", "holder_last_name": "Holder", "holder_birth_date": "1980-01-02", "language": "nl",
			"site_id": "bench", "no_contact": true}, &d); err != nil {
			return fmt.Errorf("tap: document %d: %w", i+1, err)
		}
		for _, step := range []struct {
			name string
			body any
		}{{"reserve", map[string]string{"device_id": device}}, {"load", nil}} {
			if err := call("POST", "/api/v1/documents/"+d.ID+"/"+step.name, step.body, nil); err != nil {
				return fmt.Errorf("tap: %s document %d: %w", step.name, i+1, err)
			}
		}
		x := doc{id: d.ID}
		if err := r.pool.QueryRow(ctx, `SELECT document_kind, compartment_id, compartment_number, board, channel
			FROM codes WHERE document_id = $1::uuid LIMIT 1`, d.ID).
			Scan(&x.kind, &x.comp.ID, &x.comp.Number, &x.comp.Board, &x.comp.Channel); err != nil {
			return fmt.Errorf("tap: the loaded document's code: %w", err)
		}
		r.docs = append(r.docs, x)
	}
	return nil
}

// startKluisd starts kluisd and waits for its READY=1 (sd_notify) and its
// MQTT connection.
func (r *online) startKluisd(ctx context.Context, bin, password string, baud int) error {
	pwFile := filepath.Join(r.dir, "mqtt.pw")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	var addrs [2]string
	for i := range addrs {
		a, err := testenv.PickAddr()
		if err != nil {
			return err
		}
		addrs[i] = a
	}
	pubFile := filepath.Join(r.dir, "signing.pub")
	if err := os.WriteFile(pubFile, []byte(r.pubKey+"\n"), 0o600); err != nil {
		return err
	}
	journal := filepath.Join(r.dir, "journal")
	// kluisd's outbox unpaced, as the backend's budgets are unthrottled:
	// the kiosk taps without pause, far above the default pace.
	y := r.yaml(device, fmt.Sprintf("{url: %s, username: %s, password_file: %s, pace: {window: 1000, rate: 1e6, burst: 1000000}}",
		r.mosq.URL(), device, pwFile), baud, journal,
		fmt.Sprintf("kiosk: {listen: %q}\nmetrics_listen: %q\noffline: {public_key_file: %q}\n", addrs[0], addrs[1], pubFile))
	conf := filepath.Join(r.dir, "kluisd.yaml")
	if err := os.WriteFile(conf, []byte(y), 0o600); err != nil {
		return err
	}
	sock := filepath.Join(r.dir, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("tap: notify socket: %w", err)
	}
	defer notify.Close() // after the reader below is done: Start waits for it
	logf, err := os.Create(filepath.Join(r.dir, "kluisd.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-config", conf)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	cmd.Stdout, cmd.Stderr = logf, logf
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("tap: kluisd: %w", err)
	}
	r.kluisd, r.exited = cmd, make(chan error, 1)
	go func() { r.exited <- cmd.Wait() }()
	// Started: the first /healthz that says ready (polled every 2 ms);
	// READY=1 is what systemd waits for.
	notified := make(chan time.Duration, 1)
	go func() {
		_ = notify.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 256)
		for {
			n, err := notify.Read(buf)
			if err != nil {
				notified <- 0
				return
			}
			if strings.Contains(string(buf[:n]), "READY=1") {
				notified <- time.Since(t0)
				return
			}
		}
	}()
	r.health = daemonclient.New(addrs[1], daemonclient.Options{HTTP: &http.Client{Timeout: 2 * time.Second}})
	for {
		if h, err := r.health.Health(ctx); err == nil && h.Ready {
			break
		}
		if time.Since(t0) > 30*time.Second {
			return fmt.Errorf("tap: kluisd not ready within 30 s\n%s", r.kluisdLog())
		}
		time.Sleep(2 * time.Millisecond)
	}
	r.started = time.Since(t0)
	r.readyRSS = bench.ProcRSS(cmd.Process.Pid)
	if r.notified = <-notified; r.notified == 0 {
		return fmt.Errorf("tap: kluisd sent no READY=1 within 30 s\n%s", r.kluisdLog())
	}
	r.kiosk = kioskclient.New("http://" + addrs[0])
	if _, err := testenv.Poll(ctx, 30*time.Second, "kluisd connected to the broker", func(ctx context.Context) (bool, string, error) {
		h, err := r.health.Health(ctx)
		return err == nil && h.Ready && h.MQTTConnected, fmt.Sprintf("%+v %v", h, err), nil
	}); err != nil {
		return fmt.Errorf("tap: %w\n%s", err, r.kluisdLog())
	}
	return nil
}

func (r *online) kluisdLog() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "kluisd.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// issue gives d a fresh code (the backend's own issuance; it revokes the
// document's earlier codes).
func (r *online) issue(ctx context.Context, d doc) (codes.Credentials, error) {
	var cr codes.Credentials
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		var err error
		cr, err = r.codes.Issue(ctx, tx, codes.IssueRequest{DocumentID: d.id, DocumentKind: d.kind, BirthDate: "1980-01-02",
			DeviceID: device, Compartment: d.comp, ExpiresAt: time.Now().Add(24 * time.Hour)})
		return err
	})
	if err != nil {
		return cr, fmt.Errorf("tap: issue a code: %w", err)
	}
	return cr, nil
}

// tap taps a fresh code of d at kluisd's kiosk API (a QR code, or the PIN
// with the date of birth when the document needs it).
func (r *online) tap(ctx context.Context, d doc, method wire.Method) (time.Duration, error) {
	cr, err := r.issue(ctx, d)
	if err != nil {
		return 0, err
	}
	req := map[string]string{"qr": cr.QRToken}
	if method == wire.MethodPIN {
		// With the date of birth at once, as the offline taps do (kluisd
		// asks for it whatever the document: it does not know the kind).
		req = map[string]string{"pin": cr.PIN, "birth_date": "1980-01-02"}
	}
	return r.board.tap(ctx, d.comp.Number,
		func(ctx context.Context) (engine.Screen, error) { return r.kiosk.Post(ctx, "/kiosk/v1/pickup", req) },
		func() bool {
			// The operation has ended and its events are acknowledged.
			h, err := r.health.Health(ctx)
			if err != nil || h.Backlog > 0 || h.Operations > 0 {
				time.Sleep(15 * time.Millisecond)
				return false
			}
			return true
		})
}

// rtt is one MQTT round trip on the same broker: A publishes (QoS 1), B
// answers (QoS 1), A receives the answer.
func (r *online) rtt(ctx context.Context) (time.Duration, error) {
	select {
	case <-r.answers: // a late answer of an earlier round trip
	default:
	}
	t0 := time.Now()
	r.a.Publish(rttReq, 1, false, []byte(`{"id":"bench-rtt","at":"2026-01-01T00:00:00Z","method":"qr","token":"x"}`))
	select {
	case <-r.answers:
		return time.Since(t0), nil
	case <-time.After(10 * time.Second):
		return 0, errors.New("tap: no MQTT round trip within 10 s")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// claim is the floor's claim transaction on the same database: a fresh
// code of d (issued untimed) is marked used and one audit record of the
// verification's shape goes in, in one transaction (BEGIN, UPDATE,
// INSERT, COMMIT: what a verification must write at the least).
func (r *online) claim(ctx context.Context, d doc) (time.Duration, error) {
	cr, err := r.issue(ctx, d)
	if err != nil {
		return 0, err
	}
	id, err := pickupcode.ParseCodeID(cr.CodeID)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	err = pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE codes SET used_at = now() WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return errors.New("the floor's code was not open")
		}
		_, err = tx.Exec(ctx, `INSERT INTO bench_floor_audit (at, actor, action, subject, details) VALUES (now(), $1, 'code.used', $2, $3)`,
			"device:"+device, "document:"+d.id, fmt.Sprintf(`{"device":%q,"method":"qr","reason":"ok","code_id":%q}`, device, cr.CodeID))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("tap: floor claim: %w", err)
	}
	return time.Since(t0), nil
}

// rss is kluisd's resident memory now.
func (r *online) rss() float64 {
	if r.kluisd == nil {
		return 0
	}
	return bench.ProcRSS(r.kluisd.Process.Pid)
}

func (r *online) stop() {
	if r.kluisd != nil {
		_ = r.kluisd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(15 * time.Second):
			_ = r.kluisd.Process.Kill()
			<-r.exited
		}
	}
	r.board.close()
	for _, c := range []paho.Client{r.a, r.b} {
		if c != nil {
			c.Disconnect(100)
		}
	}
	if r.pool != nil {
		r.pool.Close()
	}
	if r.stopSrv != nil {
		_ = r.stopSrv()
	}
	if r.mosq != nil {
		r.mosq.Close()
	}
	if r.drop != nil {
		r.drop()
	}
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}
