package fleet

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"kluis/backend/auth"
	"kluis/backend/codes"
	"kluis/backend/server"
	"kluis/controller/journal"
	"kluis/controller/link"
	"kluis/controller/wire"
	"kluis/hardware"
)

// The child processes' role and configuration (JSON) come in these
// environment variables.
const (
	roleEnv = "KLUIS_BENCH_FLEET_ROLE"
	confEnv = "KLUIS_BENCH_FLEET_CONF"
)

// backendConf configures the backend child.
type backendConf struct {
	DatabaseURL string `json:"db"`
	Signing     []byte `json:"signing"`
	PIN         []byte `json:"pin"`
	MQTTAddr    string `json:"mqtt"`
	HTTPAddr    string `json:"http"`
	// MQTTURL, MQTTUsername, MQTTPassword: an external broker (Mosquitto)
	// instead of the embedded one.
	MQTTURL      string `json:"mqtt_url,omitempty"`
	MQTTUsername string `json:"mqtt_user,omitempty"`
	MQTTPassword string `json:"mqtt_password,omitempty"`
	// Profile, when set, is a file for a CPU profile of the backend from
	// its start until SIGUSR2.
	Profile string `json:"profile,omitempty"`
}

// devicesConf configures a devices child.
type devicesConf struct {
	URL      string `json:"url"`
	Password string `json:"password"`
	// PasswordKey, when set, gives every device a password of its own
	// (devicePassword) instead of Password.
	PasswordKey []byte        `json:"password_key,omitempty"`
	From        int           `json:"from"`
	To          int           `json:"to"`
	Heartbeat   time.Duration `json:"heartbeat"`
	Rate        int           `json:"rate"` // connects started per second
	Dir         string        `json:"dir"`
	// Profile, when set, is a file for a CPU profile of this worker from
	// its start until the parent says "profile-stop".
	Profile string `json:"profile,omitempty"`
}

// stat is a devices child's answer to "stat".
type stat struct {
	Started   int   `json:"started"`
	Connected int   `json:"connected"`
	Beats     int64 `json:"beats"`
	Done      bool  `json:"done,omitempty"`
}

// stages is a devices child's answer to "stages": where one device's first
// connect spends its time, in this worker.
type stages struct {
	// Devices started so far; StartLoop is the time from the first start
	// to the last (paced at Rate: at best Devices/Rate).
	Devices   int           `json:"devices"`
	StartLoop time.Duration `json:"start_loop"`
	// Open and New are the total times of journal.Open and link.New.
	Open time.Duration `json:"open"`
	New  time.Duration `json:"new"`
	// Connect holds the times from link.Run to the link's first
	// connection (CONNECT, CONNACK, SUBSCRIBE, SUBACK and its presence
	// published) at the 50th, 90th and 100th percentile, of Connected
	// devices.
	Connected int              `json:"connected"`
	Connect   [3]time.Duration `json:"connect"`
}

// deviceID names device i.
func deviceID(i int) string { return fmt.Sprintf("fleet-%05d", i) }

// devicePassword is device id's own MQTT password under key.
func devicePassword(key []byte, id string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// runRole runs this process as a child and returns its exit code.
func runRole(role string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var err error
	switch role {
	case "backend":
		err = runBackend(ctx)
	case "devices":
		err = runDevices(ctx)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "fleet %s: %v\n", role, err)
		return 1
	}
	return 0
}

func runBackend(ctx context.Context) error {
	var c backendConf
	if err := json.Unmarshal([]byte(os.Getenv(confEnv)), &c); err != nil {
		return err
	}
	if c.Profile != "" {
		stop, err := profile(c.Profile)
		if err != nil {
			return err
		}
		defer stop()
		usr2 := make(chan os.Signal, 1)
		signal.Notify(usr2, syscall.SIGUSR2)
		go func() { <-usr2; stop() }()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.New(server.Options{DatabaseURL: c.DatabaseURL,
		Keys:     codes.Keys{Signing: ed25519.PrivateKey(c.Signing), PIN: c.PIN},
		HTTPAddr: c.HTTPAddr, MQTTAddr: c.MQTTAddr, MQTTURL: c.MQTTURL, MQTTUsername: c.MQTTUsername, MQTTPassword: c.MQTTPassword, SlipDir: filepath.Join(os.TempDir(), "kluis-bench-fleet-slips"),
		AdminPassword: "bench-admin-password", Console: io.Discard, Logger: log,
		// The bench needs a few HTTP connections; the embedded broker gets
		// the rest of the open-file limit (server.PlanDescriptors): 19,301
		// of a 20,000 limit, room for 19,000 devices, where the default
		// HTTP cap (4,096) would leave it 15,269.
		HTTPMaxConnections: 64,
		PasswordParams:     auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1},
		// MQTTParams: production cost (what a reconnect storm is about).
		CodeSyncEvery: server.Disabled, RearmUnfollowed: server.Disabled, HousekeepEvery: server.Disabled,
		AuditEvery: server.Disabled})
	if err != nil {
		return err
	}
	// SIGUSR1: give freed memory back to the OS, so that the parent reads
	// the memory really held (RSS without garbage not yet returned).
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			debug.FreeOSMemory()
		}
	}()
	return srv.Run(ctx)
}

// heartbeat is a device's heartbeat: two boards and 16 doors, about
// 1.4 KB like a real locker's.
func heartbeat(context.Context) wire.Heartbeat {
	h := wire.Heartbeat{OfflineCache: 40, CacheVersion: 7,
		Boards: []wire.BoardHealth{{Address: 0, Online: true, Firmware: "kb-2.1"}, {Address: 1, Online: true, Firmware: "kb-2.1"}}}
	for ch := range 16 {
		h.Doors = append(h.Doors, hardware.ChannelState{Addr: hardware.Address{Board: ch / 8, Channel: ch % 8}, Locked: true, ItemPresent: ch%3 == 0})
	}
	return h
}

// profile starts a CPU profile into file; stop ends it (once).
func profile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { pprof.StopCPUProfile(); f.Close() }) }, nil
}

func runDevices(ctx context.Context) error {
	var c devicesConf
	if err := json.Unmarshal([]byte(os.Getenv(confEnv)), &c); err != nil {
		return err
	}
	stopProfile := func() {}
	if c.Profile != "" {
		var err error
		if stopProfile, err = profile(c.Profile); err != nil {
			return err
		}
		defer stopProfile()
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var beats atomic.Int64
	var started atomic.Int64
	var mu sync.Mutex
	var links []*link.Link
	var runAt []time.Time           // when each of links started running
	var connectedIn []time.Duration // by index in links; 0 until first connected
	var st stages
	var wg sync.WaitGroup
	hb := func(ctx context.Context) wire.Heartbeat { beats.Add(1); return heartbeat(ctx) }
	go func() {
		every := time.Second / time.Duration(max(c.Rate, 1))
		first := time.Now()
		for i := c.From; i < c.To && ctx.Err() == nil; i++ {
			id := deviceID(i)
			t0 := time.Now()
			j, _, _, err := journal.Open(journal.Options{Dir: filepath.Join(c.Dir, id), DeviceID: id, Logger: quiet, Reserve: -1}) // no reserve: thousands of devices on one disk, no doors
			t1 := time.Now()
			if err != nil {
				fmt.Fprintf(os.Stderr, "journal %s: %v\n", id, err)
				continue
			}
			pw := c.Password
			if len(c.PasswordKey) > 0 {
				pw = devicePassword(c.PasswordKey, id)
			}
			l, err := link.New(link.Options{URL: c.URL, Username: id, Password: pw, DeviceID: id,
				Software: "kluisd bench", Journal: j, Heartbeat: hb, HeartbeatEvery: c.Heartbeat, Logger: quiet})
			t2 := time.Now()
			if err != nil {
				fmt.Fprintf(os.Stderr, "link %s: %v\n", id, err)
				continue
			}
			mu.Lock()
			links = append(links, l)
			runAt = append(runAt, t2)
			connectedIn = append(connectedIn, 0)
			st.Devices++
			st.StartLoop = t2.Sub(first)
			st.Open += t1.Sub(t0)
			st.New += t2.Sub(t1)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer j.Close()
				_ = l.Run(ctx)
			}()
			started.Add(1)
			time.Sleep(every)
		}
	}()
	// Every 20 ms: the devices connected for the first time since.
	go func() {
		next := 0 // links before next are all connected once
		for ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
			now := time.Now()
			mu.Lock()
			for i := next; i < len(links); i++ {
				if connectedIn[i] == 0 && links[i].Connected() {
					connectedIn[i] = now.Sub(runAt[i])
				}
			}
			for next < len(links) && connectedIn[next] != 0 {
				next++
			}
			mu.Unlock()
		}
	}()
	snapshot := func() stat {
		mu.Lock()
		defer mu.Unlock()
		s := stat{Started: int(started.Load()), Beats: beats.Load()}
		for _, l := range links {
			if l.Connected() {
				s.Connected++
			}
		}
		return s
	}
	stagesNow := func() stages {
		mu.Lock()
		defer mu.Unlock()
		s := st
		var in []time.Duration
		for _, d := range connectedIn {
			if d > 0 {
				in = append(in, d)
			}
		}
		slices.Sort(in)
		s.Connected = len(in)
		if len(in) > 0 {
			s.Connect = [3]time.Duration{in[len(in)/2], in[len(in)*9/10], in[len(in)-1]}
		}
		return s
	}
	out := json.NewEncoder(os.Stdout)
	var outMu sync.Mutex
	go func() {
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			var v any
			switch in.Text() {
			case "stages":
				v = stagesNow()
			case "profile-stop":
				stopProfile()
				v = stat{}
			default:
				v = snapshot()
			}
			outMu.Lock()
			_ = out.Encode(v)
			outMu.Unlock()
		}
	}()
	<-ctx.Done()
	wg.Wait() // every link says offline and disconnects
	s := snapshot()
	s.Done = true
	outMu.Lock()
	_ = out.Encode(s)
	outMu.Unlock()
	return nil
}
