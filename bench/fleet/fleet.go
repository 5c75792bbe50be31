package fleet

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"kluis/backend/codes"
	"kluis/backend/server"
	"kluis/bench"
	"kluis/controller/daemon/daemonclient"
	"kluis/controller/pickupcode"
	"kluis/deploy/dev/testenv"
)

// Goals (issue 14).
const (
	GoalKBPerDevice = 25.0
	GoalCores       = 1.0
	GoalStorm       = 2 * time.Minute
)

type options struct {
	devices, perWorker, cold, rate int
	heartbeat, measure             time.Duration
	broker                         string
	nice                           int
	mosqLog                        string
	profile                        string
}

// The brokers the fleet can run on.
const (
	brokerEmbedded  = "embedded"
	brokerMosquitto = "mosquitto"
)

func parse(args []string) (options, string, error) {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	n := fs.Int("devices", 19000, "simulated devices")
	per := fs.Int("per-worker", 5000, "devices per child process (each holds 2 files per device; the limit is 20,000 a process)")
	cold := fs.Int("cold", 100, "devices whose first login verifies argon2id at production cost (the cold connect rate)")
	rate := fs.Int("rate", 400, "connects started per second per worker")
	hb := fs.Duration("heartbeat", 30*time.Second, "heartbeat interval of every device")
	measure := fs.Duration("measure", 2*time.Minute, "steady-state measuring time")
	brk := fs.String("broker", brokerEmbedded, "embedded: the backend's own broker; mosquitto: a private Mosquitto with deploy/mosquitto's configuration, the backend its client (-cold does not apply)")
	nice := fs.Int("mosquitto-nice", 0, "with -broker mosquitto: Mosquitto's niceness (-20..19; it serves every client from one thread)")
	mosqLog := fs.String("mosquitto-log", "", "with -broker mosquitto: keep a copy of Mosquitto's log (both runs, before and after the crash) in this file")
	prof := fs.String("profile", "", "directory for CPU profiles of the first connect (embedded broker): first-connect-backend.pprof and first-connect-devices-N.pprof, from each child's start until the whole fleet is recorded online")
	if err := fs.Parse(args); err != nil {
		return options{}, "", err
	}
	o := options{devices: *n, perWorker: *per, cold: *cold, rate: *rate, heartbeat: *hb, measure: *measure, broker: *brk, nice: *nice, mosqLog: *mosqLog, profile: *prof}
	if o.broker == brokerMosquitto {
		o.cold = 0
	}
	if o.devices < 1 || o.perWorker < 1 || o.perWorker > 9000 || o.cold < 0 || o.cold > o.devices || o.rate < 1 ||
		o.heartbeat < time.Second || o.measure < o.heartbeat || (o.broker != brokerEmbedded && o.broker != brokerMosquitto) {
		return options{}, "", errors.New("fleet: want -devices >= 1, 1 <= -per-worker <= 9000, 0 <= -cold <= -devices, -rate >= 1, -heartbeat >= 1s, -measure >= -heartbeat, -broker embedded or mosquitto")
	}
	cmd := fmt.Sprintf("go run ./cmd/kluis-bench fleet -devices %d -per-worker %d -cold %d -rate %d -heartbeat %s -measure %s",
		o.devices, o.perWorker, o.cold, o.rate, o.heartbeat, o.measure)
	if o.broker == brokerMosquitto {
		cmd = fmt.Sprintf("go run ./cmd/kluis-bench fleet -broker mosquitto -devices %d -per-worker %d -rate %d -heartbeat %s -measure %s",
			o.devices, o.perWorker, o.rate, o.heartbeat, o.measure)
		if o.nice != 0 {
			cmd += fmt.Sprintf(" -mosquitto-nice %d", o.nice)
		}
	}
	return o, cmd, nil
}

// password is every simulated device's MQTT password (one argon2id hash
// for all keeps the setup short; each device still logs in as itself).
const password = "fleet-bench-device-password"

// Run measures; see the package doc. In a child process (roleEnv set) it
// runs the child's role and exits.
func Run(ctx context.Context, env bench.Env, args []string) (bench.Report, error) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	o, cmd, err := parse(args)
	if err != nil {
		return bench.Report{}, err
	}
	if o.broker == brokerMosquitto {
		return runMosquitto(ctx, env, o, cmd)
	}
	if env.Out == nil {
		env.Out = io.Discard
	}
	say := func(format string, a ...any) { fmt.Fprintf(env.Out, "fleet: "+format+"\n", a...) }
	dbURL, drop, err := bench.TempDatabase(ctx, env.AdminURL, "fleet")
	if err != nil {
		return bench.Report{}, err
	}
	defer drop()
	keys, err := codes.GenerateKeys()
	if err != nil {
		return bench.Report{}, err
	}
	var addrs [2]string
	for i := range addrs {
		if addrs[i], err = testenv.PickAddr(); err != nil {
			return bench.Report{}, err
		}
	}
	r := &rig{env: env, say: say, conf: backendConf{DatabaseURL: dbURL, Signing: keys.Signing, PIN: keys.PIN,
		MQTTAddr: addrs[0], HTTPAddr: addrs[1]}}
	defer r.stopAll()
	rep := bench.Report{Name: "fleet", Command: cmd, Params: map[string]any{
		"devices": o.devices, "per_worker": o.perWorker, "cold": o.cold, "heartbeat": o.heartbeat.String(),
		"measure": o.measure.String(), "broker": "embedded (backend/broker, its own MQTT 3.1.1 server)", "mqtt_password": "argon2id " + fmt.Sprint(pickupcode.DefaultArgonParams)}}

	// The backend, idle.
	if o.profile != "" {
		r.conf.Profile = filepath.Join(o.profile, "first-connect-backend.pprof")
	}
	if err := r.startBackend(ctx); err != nil {
		return rep, err
	}
	r.conf.Profile = "" // not after the restart
	if r.pool, err = pgxpool.New(ctx, dbURL); err != nil {
		return rep, err
	}
	defer r.pool.Close()
	if err := r.credentials(ctx, o, server.DeriveKey(keys, "mqtt credential checks")); err != nil {
		return rep, err
	}
	time.Sleep(3 * time.Second)
	idle := r.heldRSS()
	say("backend idle: %.1f MB", idle/1e6)

	// 1. Cold connects.
	dir, err := os.MkdirTemp("/dev/shm", "kluis-bench-fleet-")
	if err != nil {
		dir, err = os.MkdirTemp("", "kluis-bench-fleet-")
		if err != nil {
			return rep, err
		}
	}
	defer os.RemoveAll(dir)
	url := "tcp://" + r.conf.MQTTAddr
	coldRate := 0.0
	if o.cold > 0 {
		t0 := time.Now()
		if err := r.startWorker(ctx, devicesConf{URL: url, Password: password, From: 0, To: o.cold,
			Heartbeat: o.heartbeat, Rate: 1000, Dir: dir}); err != nil {
			return rep, err
		}
		if err := r.waitConnected(ctx, o.cold, 10*time.Minute); err != nil {
			return rep, err
		}
		coldRate = float64(o.cold) / time.Since(t0).Seconds()
		say("cold connects: %d in %s (%.1f/s)", o.cold, time.Since(t0).Round(time.Millisecond), coldRate)
	}

	// 2. The rest of the fleet.
	t0 := time.Now()
	cpuBackend0 := r.backendCPU()
	checks0 := r.checks()
	r.profile = o.profile
	if err := r.startFleet(ctx, o, o.cold, devicesConf{URL: url, Password: password, Heartbeat: o.heartbeat, Rate: o.rate, Dir: dir}); err != nil {
		return rep, err
	}
	first := time.Since(t0)
	cpuBackend, cpuWorkers := r.backendCPU()-cpuBackend0, r.workersCPU()
	say("fleet connected: %d devices in %s", o.devices, first.Round(time.Second))
	firstNote, err := r.firstConnect(o, first, cpuBackend, cpuWorkers, checks0)
	if err != nil {
		return rep, err
	}
	say("%s", firstNote)
	rep.Notes = append(rep.Notes, firstNote)

	// 3. Steady state.
	time.Sleep(o.heartbeat) // every device has had its first heartbeat interval
	sent0, err := r.beatsSent()
	if err != nil {
		return rep, err
	}
	recv0 := r.beatsRecorded()
	cpu0, w0 := r.backendCPU(), time.Now()
	time.Sleep(o.measure)
	sent1, err := r.beatsSent()
	if err != nil {
		return rep, err
	}
	recv1 := r.beatsRecorded()
	cores := (r.backendCPU() - cpu0) / time.Since(w0).Seconds()
	rawRSS := r.backendRSS()
	rss := r.heldRSS()
	perDevice := (rss - idle) / float64(o.devices) / 1024
	sent, recorded := float64(sent1-sent0), recv1-recv0
	stale := r.stale(ctx, o)
	dead := r.deadTuples(ctx)
	say("steady: %.2f cores, RSS %.0f MB (%.1f KB/device over idle), heartbeats %0.f sent / %.0f recorded, %d devices without a recent heartbeat, dead tuples %s",
		cores, rss/1e6, perDevice, sent, recorded, stale, dead)

	// 4. Reconnect storm: the backend (and its broker) restarts.
	presence0 := r.metric("kluis_devicelink_messages_total", `kind="presence"`)
	_ = presence0
	if err := r.stopBackend(); err != nil {
		return rep, err
	}
	t0 = time.Now()
	if err := r.startBackend(ctx); err != nil {
		return rep, err
	}
	stormErr := r.waitStorm(ctx, o.devices, 10*time.Minute)
	storm := time.Since(t0)
	remembered := r.metric("kluis_mqtt_credential_checks_total", `result="remembered"`)
	verified := r.metric("kluis_mqtt_credential_checks_total", `result="verified"`)
	pendRefused := r.metric("kluis_broker_pending_refused_total", "")
	pendExtended := r.metric("kluis_broker_pending_extended_total", "")
	say("storm: %d devices back in %s (checks remembered %.0f, verified %.0f; closed by the per-address cap on connections without CONNECT %.0f, graces extended %.0f), err %v",
		o.devices, storm.Round(time.Millisecond), remembered, verified, pendRefused, pendExtended, stormErr)

	// 5. The whole fleet disconnects.
	t0 = time.Now()
	r.stopWorkers()
	offErr := r.waitOnline(ctx, 0, 5*time.Minute)
	offline := time.Since(t0)
	var online int
	_ = r.pool.QueryRow(ctx, `SELECT count(*) FROM device_presence WHERE state = 'online'`).Scan(&online)
	time.Sleep(2 * time.Second) // the gauge is recounted within a second
	gauge := r.metric("kluis_devicelink_devices_online", "")
	say("disconnect: online %d (gauge %.0f) after %s, err %v", online, gauge, offline.Round(time.Millisecond), offErr)

	rep.Figures = []bench.Figure{
		{Name: fmt.Sprintf("heartbeats recorded of sent, %d devices, %s", o.devices, o.measure), Unit: "", Value: recorded, Floor: sent, Goal: 1,
			Notes: fmt.Sprintf("devices without a heartbeat in the last interval: %d; counted as the backend's ok+coalesced against the devices' sends in the same window", stale)},
		{Name: "backend memory per connected device", Unit: "KB", Value: perDevice, Floor: GoalKBPerDevice, LowerIsBetter: true, Goal: 1,
			Notes: fmt.Sprintf("RSS %.0f MB with the fleet, %.0f MB idle, both after returning freed memory to the OS (%.0f MB before); the floor is the goal", rss/1e6, idle/1e6, rawRSS/1e6)},
		{Name: "backend CPU (embedded broker included)", Unit: "cores", Value: cores, Floor: GoalCores, LowerIsBetter: true, Goal: 1,
			Notes: fmt.Sprintf("%.0f heartbeats/s; the floor is the goal", sent/o.measure.Seconds())},
		{Name: "whole-fleet reconnect after a backend restart", Unit: "s", Value: storm.Seconds(), Floor: GoalStorm.Seconds(), LowerIsBetter: true, Goal: 1,
			Notes: fmt.Sprintf("%.0f connects/s; credential checks remembered %.0f, verified (argon2id) %.0f; connections closed by the broker's per-address cap on connections without CONNECT %.0f, graces extended because the broker was behind %.0f; the floor is the goal",
				float64(o.devices)/storm.Seconds(), remembered, verified, pendRefused, pendExtended)},
		{Name: "devices recorded offline after the fleet disconnected", Unit: "", Value: float64(o.devices - online), Floor: float64(o.devices), Goal: 1,
			Notes: fmt.Sprintf("online count %d in the database, gauge %.0f, %.1f s after the disconnect", online, gauge, offline.Seconds())},
	}
	if coldRate > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("cold connects (argon2id at production cost, nothing remembered): %.1f/s, so %d devices would need %.0f s",
			coldRate, o.devices, float64(o.devices)/coldRate))
	}
	rep.Notes = append(rep.Notes, "dead tuples after the run: "+dead)
	if stormErr != nil {
		rep.Notes = append(rep.Notes, "storm: "+stormErr.Error())
	}
	if offErr != nil {
		rep.Notes = append(rep.Notes, "disconnect: "+offErr.Error())
	}
	return rep, nil
}

// rig holds the children and the database.
type rig struct {
	env     bench.Env
	say     func(string, ...any)
	conf    backendConf
	pool    *pgxpool.Pool
	backend *exec.Cmd
	done    chan error
	workers []*worker
	// profile: the directory for the CPU profiles of the workers started
	// ("": none).
	profile string
}

type worker struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func child(role string, conf any) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	c := exec.Command(exe, "fleet")
	c.Env = append(os.Environ(), roleEnv+"="+role, confEnv+"="+string(b))
	c.Stderr = os.Stderr
	return c, nil
}

func (r *rig) startBackend(ctx context.Context) error {
	c, err := child("backend", r.conf)
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	r.backend, r.done = c, make(chan error, 1)
	go func() { r.done <- c.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-r.done:
			return fmt.Errorf("fleet: backend exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get("http://" + r.conf.HTTPAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return errors.New("fleet: backend not ready within 2 minutes")
}

func (r *rig) stopBackend() error {
	if r.backend == nil {
		return nil
	}
	_ = r.backend.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(60 * time.Second):
		_ = r.backend.Process.Kill()
		<-r.done
	}
	r.backend = nil
	return nil
}

// startFleet starts the workers of the devices from from up to o.devices
// (o.perWorker each, connecting as c says) and waits until every device of
// the fleet is connected and recorded online.
func (r *rig) startFleet(ctx context.Context, o options, from int, c devicesConf) error {
	for ; from < o.devices; from += o.perWorker {
		c.From, c.To = from, min(from+o.perWorker, o.devices)
		if err := r.startWorker(ctx, c); err != nil {
			return err
		}
	}
	if err := r.waitConnected(ctx, o.devices, 20*time.Minute); err != nil {
		return err
	}
	return r.waitOnline(ctx, o.devices, 5*time.Minute)
}

func (r *rig) startWorker(ctx context.Context, c devicesConf) error {
	if r.profile != "" {
		c.Profile = filepath.Join(r.profile, fmt.Sprintf("first-connect-devices-%d.pprof", len(r.workers)))
	}
	cmd, err := child("devices", c)
	if err != nil {
		return err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	r.workers = append(r.workers, &worker{cmd: cmd, in: in, out: sc})
	return nil
}

// stats asks every worker for its counters.
func (r *rig) stats() ([]stat, error) { return ask[stat](r, "stat") }

// ask sends every worker command and returns their answers.
func ask[T any](r *rig, command string) ([]T, error) {
	out := make([]T, 0, len(r.workers))
	for _, w := range r.workers {
		if _, err := io.WriteString(w.in, command+"\n"); err != nil {
			return nil, err
		}
	}
	for _, w := range r.workers {
		if !w.out.Scan() {
			return nil, fmt.Errorf("fleet: a worker stopped answering: %v", w.out.Err())
		}
		var s T
		if err := json.Unmarshal(w.out.Bytes(), &s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// workersCPU is the CPU time (user+system, seconds) of the workers.
func (r *rig) workersCPU() float64 {
	var t time.Duration
	for _, w := range r.workers {
		t += bench.ProcCPU(w.cmd.Process.Pid)
	}
	return t.Seconds()
}

// checkCounts are the backend's credential checks by result and its
// broker's per-address cap counters.
type checkCounts struct{ remembered, verified, refused, extended float64 }

func (r *rig) checks() checkCounts {
	return checkCounts{remembered: r.metric("kluis_mqtt_credential_checks_total", `result="remembered"`),
		verified: r.metric("kluis_mqtt_credential_checks_total", `result="verified"`),
		refused:  r.metric("kluis_broker_pending_refused_total", ""),
		extended: r.metric("kluis_broker_pending_extended_total", "")}
}

// firstConnect ends the first connect's profiles and says where its time
// went: the workers' start loop, journal.Open and link.New per device, the
// time from link.Run to connected, the CPU of the backend and of the
// workers, the credential checks.
func (r *rig) firstConnect(o options, took time.Duration, cpuBackend, cpuWorkers float64, checks0 checkCounts) (string, error) {
	ss, err := ask[stages](r, "stages")
	if err != nil {
		return "", err
	}
	if r.profile != "" {
		if _, err := ask[stat](r, "profile-stop"); err != nil {
			return "", err
		}
		_ = r.backend.Process.Signal(syscall.SIGUSR2)
		r.profile = ""
	}
	c := r.checks()
	var n, connected int
	var open, nw time.Duration
	var loop time.Duration
	var p50, p90, worst time.Duration
	for _, s := range ss {
		n += s.Devices
		connected += s.Connected
		open += s.Open
		nw += s.New
		loop = max(loop, s.StartLoop)
		p50, p90, worst = max(p50, s.Connect[0]), max(p90, s.Connect[1]), max(worst, s.Connect[2])
	}
	n = max(n, 1)
	devices := o.devices - o.cold
	return fmt.Sprintf("first connect: %d devices in %s (%.0f/s); the workers' start loops (paced at %d/s each, %d workers) took at most %s; "+
		"per device journal.Open %s, link.New %s; link.Run to connected (of %d) p50 %s, p90 %s, max %s (worst of the workers); "+
		"CPU in it: backend %.1f s (%.2f ms/device), workers %.1f s (%.2f ms/device); credential checks remembered %.0f, verified (argon2id) %.0f; "+
		"closed by the per-address cap %.0f, graces extended %.0f",
		devices, took.Round(time.Millisecond), float64(devices)/took.Seconds(), o.rate, len(ss), loop.Round(time.Millisecond),
		(open / time.Duration(n)).Round(time.Microsecond), (nw / time.Duration(n)).Round(time.Microsecond),
		connected, p50.Round(time.Millisecond), p90.Round(time.Millisecond), worst.Round(time.Millisecond),
		cpuBackend, cpuBackend*1000/float64(max(devices, 1)), cpuWorkers, cpuWorkers*1000/float64(max(devices, 1)),
		c.remembered-checks0.remembered, c.verified-checks0.verified, c.refused-checks0.refused, c.extended-checks0.extended), nil
}

func (r *rig) connected() (int, error) {
	ss, err := r.stats()
	n := 0
	for _, s := range ss {
		n += s.Connected
	}
	return n, err
}

func (r *rig) beatsSent() (int64, error) {
	ss, err := r.stats()
	var n int64
	for _, s := range ss {
		n += s.Beats
	}
	return n, err
}

func (r *rig) waitConnected(ctx context.Context, n int, limit time.Duration) error {
	return r.waitFor(ctx, limit, 200*time.Millisecond, func() (waitState, error) {
		c, err := r.connected()
		return waitState{done: c >= n, progress: fmt.Sprintf("%d of %d devices connected", c, n),
			failure: fmt.Sprintf("%d of %d devices connected after %s", c, n, limit)}, err
	})
}

// waitState is what one look of waitFor saw.
type waitState struct {
	done bool
	// progress is said every 10 s while waiting ("": nothing is said).
	progress string
	// failure is the error's text once the limit has passed.
	failure string
}

// waitFor looks with check every interval until check says done or fails,
// ctx ends or limit has passed (then it returns the last look's failure,
// after "fleet: ").
func (r *rig) waitFor(ctx context.Context, limit, interval time.Duration, check func() (waitState, error)) error {
	deadline := time.Now().Add(limit)
	last := time.Now()
	for {
		st, err := check()
		if err != nil {
			return err
		}
		if st.done {
			return nil
		}
		if st.progress != "" && time.Since(last) > 10*time.Second {
			r.say("%s", st.progress)
			last = time.Now()
		}
		if time.Now().After(deadline) {
			return errors.New("fleet: " + st.failure)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

func (r *rig) online(ctx context.Context) int {
	var n int
	_ = r.pool.QueryRow(ctx, `SELECT count(*) FROM device_presence WHERE state = 'online' AND device_id LIKE 'fleet-%'`).Scan(&n)
	return n
}

func (r *rig) waitOnline(ctx context.Context, n int, limit time.Duration) error {
	return r.waitFor(ctx, limit, 100*time.Millisecond, func() (waitState, error) {
		got := r.online(ctx)
		return waitState{done: got == n, failure: fmt.Sprintf("%d devices online after %s, want %d", got, limit, n)}, nil
	})
}

// waitStorm waits until every device is connected to the new backend and
// its presence recorded by it.
func (r *rig) waitStorm(ctx context.Context, n int, limit time.Duration) error {
	return r.waitFor(ctx, limit, 200*time.Millisecond, func() (waitState, error) {
		c, err := r.connected()
		if err != nil {
			return waitState{}, err
		}
		p := r.metric("kluis_devicelink_messages_total", `kind="presence",outcome="ok"`) +
			r.metric("kluis_devicelink_messages_total", `kind="presence",outcome="coalesced"`)
		return waitState{done: c >= n && int(p) >= n && r.online(ctx) == n,
			progress: fmt.Sprintf("storm: %d connected, %.0f presences recorded", c, p),
			failure:  fmt.Sprintf("after %s %d of %d devices connected, %.0f presences recorded", limit, c, n, p)}, nil
	})
}

func (r *rig) stopWorkers() {
	for _, w := range r.workers {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, w := range r.workers {
		done := make(chan struct{})
		go func() { _ = w.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = w.cmd.Process.Kill()
			<-done
		}
	}
	r.workers = nil
}

func (r *rig) stopAll() {
	r.stopWorkers()
	_ = r.stopBackend()
}

// credentials gives every simulated device its MQTT user and remembers a
// successful check for all but the cold ones.
func (r *rig) credentials(ctx context.Context, o options, checkKey []byte) error {
	phc, err := pickupcode.HashSecret(password, pickupcode.DefaultArgonParams)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	rows := make([][]any, 0, o.devices)
	for i := range o.devices {
		rows = append(rows, []any{deviceID(i), "device", phc, false, now, now})
	}
	if _, err := r.pool.CopyFrom(ctx, pgx.Identifier{"mqtt_credentials"},
		[]string{"username", "role", "password_hash", "disabled", "created_at", "updated_at"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("fleet: credentials: %w", err)
	}
	rows = rows[:0]
	for i := o.cold; i < o.devices; i++ {
		m := hmac.New(sha256.New, checkKey)
		m.Write([]byte(deviceID(i)))
		m.Write([]byte{0})
		m.Write([]byte(password))
		rows = append(rows, []any{deviceID(i), phc, m.Sum(nil), now})
	}
	if _, err := r.pool.CopyFrom(ctx, pgx.Identifier{"mqtt_credential_checks"},
		[]string{"username", "password_hash", "mac", "checked_at"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("fleet: remembered checks: %w", err)
	}
	return nil
}

// backendRSS is the backend's resident memory in bytes.
func (r *rig) backendRSS() float64 { return bench.ProcRSS(r.backend.Process.Pid) }

// heldRSS is backendRSS after the backend gave freed memory back to the OS.
func (r *rig) heldRSS() float64 {
	_ = r.backend.Process.Signal(syscall.SIGUSR1)
	time.Sleep(2 * time.Second)
	return r.backendRSS()
}

// backendCPU is the backend's user+system CPU time in seconds.
func (r *rig) backendCPU() float64 { return bench.ProcCPU(r.backend.Process.Pid).Seconds() }

// metric sums the samples of family whose labels contain match (0 when
// the backend does not answer).
func (r *rig) metric(family, match string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := daemonclient.Scrape(ctx, nil, "http://"+r.conf.HTTPAddr+"/metrics")
	if err != nil {
		return 0
	}
	return s.Sum(family, match)
}

func (r *rig) beatsRecorded() float64 {
	return r.metric("kluis_devicelink_messages_total", `kind="heartbeat",outcome="ok"`) +
		r.metric("kluis_devicelink_messages_total", `kind="heartbeat",outcome="coalesced"`)
}

func (r *rig) deadTuples(ctx context.Context) string {
	rows, err := r.pool.Query(ctx, `SELECT relname, n_live_tup, n_dead_tup, n_tup_hot_upd, n_tup_upd FROM pg_stat_user_tables
		WHERE relname IN ('device_presence', 'device_diagnostics') ORDER BY relname`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var parts []string
	for rows.Next() {
		var name string
		var live, dead, hot, upd int64
		if err := rows.Scan(&name, &live, &dead, &hot, &upd); err != nil {
			return err.Error()
		}
		parts = append(parts, fmt.Sprintf("%s live %d dead %d, %d of %d updates HOT", name, live, dead, hot, upd))
	}
	return strings.Join(parts, "; ")
}
