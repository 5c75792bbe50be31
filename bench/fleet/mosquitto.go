package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sys/unix"

	"kluis/backend/broker/mosquittotest"
	"kluis/backend/codes"
	"kluis/bench"
	"kluis/deploy/dev/testenv"
	"kluis/deploy/mosquitto"
)

// backendUser is the backend's user in deploy/mosquitto's ACL.
const backendUser = "kluis-backend"

// runMosquitto is the fleet on a private Mosquitto (deploy/mosquitto's
// configuration and ACL, every device its own user and password) with the
// backend connected to it as a client. The reconnect storm is a Mosquitto
// crash (SIGKILL) and restart: every device and the backend come back.
func runMosquitto(ctx context.Context, env bench.Env, o options, cmd string) (bench.Report, error) {
	say := func(format string, a ...any) { fmt.Fprintf(env.Out, "fleet: "+format+"\n", a...) }
	rep := bench.Report{Name: "fleet", Command: cmd, Params: map[string]any{
		"devices": o.devices, "per_worker": o.perWorker, "heartbeat": o.heartbeat.String(), "measure": o.measure.String(),
		"broker":        "mosquitto (deploy/mosquitto/mosquitto.conf and acl, a private process on a free port; the backend is its client)",
		"mqtt_password": "one per device, mosquitto_passwd -U (PBKDF2-SHA512, its default 101 iterations)"}}
	var loads []string // the machine's load average at each phase's end
	load := func(phase string) { loads = append(loads, phase+" "+bench.LoadAvg()) }
	load("start")
	dbURL, drop, err := bench.TempDatabase(ctx, env.AdminURL, "fleet")
	if err != nil {
		return rep, err
	}
	defer drop()
	keys, err := codes.GenerateKeys()
	if err != nil {
		return rep, err
	}

	// The broker: one user per device, the backend's user, the raised
	// descriptor limit (one per connection).
	pwKey, backendPW := make([]byte, 32), make([]byte, 24)
	_, _ = rand.Read(pwKey)
	_, _ = rand.Read(backendPW)
	users := make(map[string]string, o.devices+1)
	users[backendUser] = hex.EncodeToString(backendPW)
	users[sysUser] = hex.EncodeToString(pwKey[:12])
	for i := range o.devices {
		users[deviceID(i)] = devicePassword(pwKey, deviceID(i))
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return rep, err
	}
	if lim.Max < uint64(o.devices)+64 {
		return rep, fmt.Errorf("fleet: %d devices need %d descriptors in Mosquitto; the hard limit is %d", o.devices, o.devices+64, lim.Max)
	}
	t0 := time.Now()
	mosq, err := mosquittotest.Launch("", mosquittotest.Options{Config: mosquitto.Config(), ACL: mosquitto.ACL() + "\n# kluis-bench: Mosquitto's own counters\nuser " + sysUser + "\ntopic read $SYS/#\n", Users: users, NoFile: lim.Max, Nice: o.nice})
	if err != nil {
		return rep, err
	}
	defer mosq.Close()
	say("mosquitto on %s (pid %d, %d users hashed and started in %s, open-file limit %d)", mosq.Addr(), mosq.Pid(), len(users),
		time.Since(t0).Round(time.Millisecond), lim.Max)
	rep.Params["mosquitto_nofile"] = lim.Max
	rep.Params["mosquitto_nice"] = o.nice

	httpAddr, err := testenv.PickAddr()
	if err != nil {
		return rep, err
	}
	r := &rig{env: env, say: say, conf: backendConf{DatabaseURL: dbURL, Signing: keys.Signing, PIN: keys.PIN,
		HTTPAddr: httpAddr, MQTTURL: mosq.URL(), MQTTUsername: backendUser, MQTTPassword: users[backendUser]}}
	defer r.stopAll()
	if err := r.startBackend(ctx); err != nil {
		return rep, err
	}
	sys, err := watchDropped(mosq.URL(), users[sysUser])
	if err != nil {
		return rep, err
	}
	defer sys.close()
	if r.pool, err = pgxpool.New(ctx, dbURL); err != nil {
		return rep, err
	}
	defer r.pool.Close()
	time.Sleep(3 * time.Second)
	idle, mosqIdle := r.heldRSS(), bench.ProcRSS(mosq.Pid())
	say("idle: backend %.1f MB, mosquitto %.1f MB", idle/1e6, mosqIdle/1e6)

	// The fleet connects.
	dir, err := os.MkdirTemp("/dev/shm", "kluis-bench-fleet-")
	if err != nil {
		if dir, err = os.MkdirTemp("", "kluis-bench-fleet-"); err != nil {
			return rep, err
		}
	}
	defer os.RemoveAll(dir)
	t0 = time.Now()
	if err := r.startFleet(ctx, o, 0, devicesConf{URL: mosq.URL(), PasswordKey: pwKey, Heartbeat: o.heartbeat, Rate: o.rate, Dir: dir}); err != nil {
		return rep, err
	}
	say("fleet connected: %d devices in %s", o.devices, time.Since(t0).Round(time.Second))
	load("fleet connected")

	// Steady state.
	time.Sleep(o.heartbeat)
	sent0, err := r.beatsSent()
	if err != nil {
		return rep, err
	}
	recv0 := r.beatsRecorded()
	cpu0, mcpu0, w0 := r.backendCPU(), bench.ProcCPU(mosq.Pid()), time.Now()
	time.Sleep(o.measure)
	sent1, err := r.beatsSent()
	if err != nil {
		return rep, err
	}
	recv1 := r.beatsRecorded()
	window := time.Since(w0).Seconds()
	cores := (r.backendCPU() - cpu0) / window
	mcores := (bench.ProcCPU(mosq.Pid()) - mcpu0).Seconds() / window
	rawRSS := r.backendRSS()
	rss, mrss := r.heldRSS(), bench.ProcRSS(mosq.Pid())
	perDevice := (rss - idle) / float64(o.devices) / 1024
	mPerDevice := (mrss - mosqIdle) / float64(o.devices) / 1024
	sent, recorded := float64(sent1-sent0), recv1-recv0
	stale := r.stale(ctx, o)
	dead := r.deadTuples(ctx)
	load("steady window")
	say("steady: backend %.2f cores, RSS %.0f MB (%.1f KB/device over idle); mosquitto %.2f cores, RSS %.0f MB (%.1f KB/device); heartbeats %.0f sent / %.0f recorded, %d devices without a recent heartbeat",
		cores, rss/1e6, perDevice, mcores, mrss/1e6, mPerDevice, sent, recorded, stale)

	// Reconnect storm: Mosquitto crashes and restarts on the same port.
	steadyDropped := sys.value()
	t0 = time.Now()
	mosq.Kill()
	crashLog := len(mosq.Log())
	if err := mosq.Run(); err != nil {
		return rep, err
	}
	stormErr := r.waitFresh(ctx, o.devices, t0, 10*time.Minute)
	storm := time.Since(t0)
	say("storm: %d devices back in %s, err %v", o.devices, storm.Round(time.Millisecond), stormErr)
	load("storm")

	// The whole fleet disconnects.
	t0 = time.Now()
	r.stopWorkers()
	offErr := r.waitOnline(ctx, 0, 5*time.Minute)
	offline := time.Since(t0)
	online := r.online(ctx)
	time.Sleep(2 * time.Second) // the gauge is recounted within a second
	gauge := r.metric("kluis_devicelink_devices_online", "")
	say("disconnect: online %d (gauge %.0f) after %s, err %v", online, gauge, offline.Round(time.Millisecond), offErr)
	load("disconnect")
	if o.mosqLog != "" {
		if err := os.WriteFile(o.mosqLog, []byte(mosq.Log()), 0o644); err != nil {
			say("mosquitto log not kept: %v", err)
		}
	}
	// Mosquitto warns "Outgoing messages are being dropped for client
	// ..." when a client's queue (max_queued_messages) overflows.
	var drops []string
	for _, line := range strings.Split(mosq.Log(), "\n") {
		if strings.Contains(line, "being dropped") {
			drops = append(drops, line)
		}
	}

	rep.Figures = []bench.Figure{
		{Name: fmt.Sprintf("heartbeats recorded of sent, %d devices, %s", o.devices, o.measure), Value: recorded, Floor: sent, Goal: 1,
			Notes: fmt.Sprintf("devices without a heartbeat in the last interval: %d; the backend's ok+coalesced against the devices' sends in the same window", stale)},
		{Name: "backend memory per connected device", Unit: "KB", Value: perDevice, Floor: GoalKBPerDevice, LowerIsBetter: true, Goal: 1,
			Notes: fmt.Sprintf("RSS %.0f MB with the fleet, %.0f MB idle, both after returning freed memory to the OS (%.0f MB before); the floor is the goal", rss/1e6, idle/1e6, rawRSS/1e6)},
		{Name: "backend CPU (Mosquitto's client)", Unit: "cores", Value: cores, Floor: GoalCores, LowerIsBetter: true, Goal: 1,
			Notes: fmt.Sprintf("%.0f heartbeats/s; the floor is the goal", sent/o.measure.Seconds())},
		{Name: "Mosquitto memory per connected device", Unit: "KB", Value: mPerDevice, Floor: GoalKBPerDevice, LowerIsBetter: true,
			Notes: fmt.Sprintf("RSS %.0f MB with the fleet, %.1f MB with the backend alone; floor: the backend's goal, for comparison", mrss/1e6, mosqIdle/1e6)},
		{Name: "Mosquitto CPU", Unit: "cores", Value: mcores, Floor: GoalCores, LowerIsBetter: true,
			Notes: "the same window; floor: the backend's goal, for comparison"},
		{Name: "whole-fleet reconnect after a Mosquitto crash and restart", Unit: "s", Value: storm.Seconds(), Floor: GoalStorm.Seconds(), LowerIsBetter: true, Goal: 1,
			Notes: fmt.Sprintf("from the SIGKILL until every device's new online presence is in the database (%.0f devices/s); the floor is the goal", float64(o.devices)/storm.Seconds())},
		{Name: "devices recorded offline after the fleet disconnected", Value: float64(o.devices - online), Floor: float64(o.devices), Goal: 1,
			Notes: fmt.Sprintf("online count %d in the database, gauge %.0f, %.1f s after the disconnect", online, gauge, offline.Seconds())},
	}
	time.Sleep(11 * time.Second) // $SYS is published every 10 s
	rep.Notes = append(rep.Notes, "dead tuples after the run: "+dead,
		fmt.Sprintf("Mosquitto's $SYS/broker/publish/messages/dropped (messages it dropped for a client whose queue was full): %s when the steady window ended, %s at the end of the restarted broker", steadyDropped, sys.value()),
		fmt.Sprintf("Mosquitto's log: %d warnings of dropped messages %q", len(drops), drops[:min(len(drops), 3)]))
	if all := mosq.Log(); len(all) >= crashLog {
		rep.Notes = append(rep.Notes, "Mosquitto's log before the crash: "+mosquittoLog(all[:crashLog]).String(),
			"Mosquitto's log after the restart (the storm and the disconnect): "+mosquittoLog(all[crashLog:]).String())
	}
	rep.Notes = append(rep.Notes, "load average (1, 5, 15 min) at the end of each phase: "+strings.Join(loads, "; "))
	if stormErr != nil {
		rep.Notes = append(rep.Notes, "storm: "+stormErr.Error())
	}
	if offErr != nil {
		rep.Notes = append(rep.Notes, "disconnect: "+offErr.Error())
	}
	return rep, nil
}

// sysUser reads Mosquitto's $SYS counters.
const sysUser = "bench-sys"

// dropped follows Mosquitto's count of dropped messages (it starts at 0
// again when Mosquitto restarts).
type dropped struct {
	c    paho.Client
	mu   sync.Mutex
	last string
}

func watchDropped(url, password string) (*dropped, error) {
	d := &dropped{last: "unknown"}
	const topic = "$SYS/broker/publish/messages/dropped"
	o := paho.NewClientOptions().AddBroker(url).SetClientID(sysUser).SetUsername(sysUser).SetPassword(password).
		SetProtocolVersion(4).SetAutoReconnect(true).SetConnectRetry(true).SetMaxReconnectInterval(time.Second).
		SetOnConnectHandler(func(c paho.Client) {
			c.Subscribe(topic, 0, func(_ paho.Client, m paho.Message) {
				d.mu.Lock()
				d.last = string(m.Payload())
				d.mu.Unlock()
			})
		})
	d.c = paho.NewClient(o)
	if tok := d.c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("fleet: $SYS reader: %v", tok.Error())
	}
	return d, nil
}

func (d *dropped) value() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

func (d *dropped) close() { d.c.Disconnect(100) }

// stale counts the devices whose last heartbeat in the database is older
// than one interval (and 10 s).
func (r *rig) stale(ctx context.Context, o options) int {
	var n int
	if err := r.pool.QueryRow(ctx, `SELECT count(*) FROM device_presence p LEFT JOIN device_diagnostics d USING (device_id)
		WHERE p.device_id LIKE 'fleet-%' AND (p.last_heartbeat_at IS NULL OR p.last_heartbeat_at < now() - $1::interval OR d.at IS NULL)`,
		fmt.Sprintf("%d milliseconds", (o.heartbeat+10*time.Second).Milliseconds())).Scan(&n); err != nil {
		return -1
	}
	return n
}

// waitFresh waits until every device is connected and the database holds
// an online presence of each sent after since.
func (r *rig) waitFresh(ctx context.Context, n int, since time.Time, limit time.Duration) error {
	return r.waitFor(ctx, limit, 200*time.Millisecond, func() (waitState, error) {
		c, err := r.connected()
		if err != nil {
			return waitState{}, err
		}
		var fresh int
		_ = r.pool.QueryRow(ctx, `SELECT count(*) FROM device_presence WHERE state = 'online' AND device_id LIKE 'fleet-%'
			AND changed_at >= $1`, since).Scan(&fresh)
		return waitState{done: c >= n && fresh == n,
			progress: fmt.Sprintf("storm: %d connected, %d presences since the crash recorded", c, fresh),
			failure:  fmt.Sprintf("after %s %d of %d devices connected, %d presences since the crash recorded", limit, c, n, fresh)}, nil
	})
}
