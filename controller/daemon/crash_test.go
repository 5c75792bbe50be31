package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"kluis/controller/config"
	"kluis/controller/daemon/daemontest"
	"kluis/controller/journal"
	"kluis/controller/wire"
	"kluis/hardware"
)

const childEnv = "KLUIS_CRASH_CHILD"

func brokerURL() string {
	if u := os.Getenv("MQTT_URL"); u != "" {
		return u
	}
	return "tcp://127.0.0.1:1883"
}

// TestCrashChild is not a test: it is kluisd itself, run as a child process
// by TestKillNineNoLostEventsNoDoublePulse on the SimFile driver.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		t.Skip("runs only as the child of the crash test")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(b, config.ParseOptions{AllowTestDrivers: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err = Run(ctx, Options{Config: cfg, Logger: log, Software: "crash-test", HeartbeatEvery: time.Second,
		OpenDriver: func(ctx context.Context, cfg *config.Config, _ *slog.Logger, _ prometheus.Registerer) (hardware.Driver, error) {
			d, err := daemontest.Open(cfg.Hardware.SimFile, len(cfg.Hardware.Boards), hardware.MaxChannels)
			if d != nil {
				d.Latency = 30 * time.Millisecond
			}
			return d, err
		}})
	if err != nil {
		t.Fatal(err)
	}
}

// backend is the test's stand-in for kluis-backend on the real broker.
type backend struct {
	c         mqtt.Client
	dev       string
	mu        sync.Mutex
	events    map[string]wire.Event
	completed map[string]bool
	results   []wire.CommandResult
	// silent: verify requests go unanswered (backend down, broker up).
	silent bool
	// verifyFn, when set, answers verify requests.
	verifyFn func(*wire.VerifyRequest) *wire.VerifyResponse
}

func newBackend(t *testing.T, dev string) *backend {
	b := &backend{dev: dev, events: map[string]wire.Event{}, completed: map[string]bool{}}
	subscribed := make(chan error, 4)
	// (Re)subscribe on every connection: a clean session loses them.
	b.c = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(brokerURL()).SetClientID("crash-backend-" + dev).SetCleanSession(true).
		SetOnConnectHandler(func(c mqtt.Client) {
			sub := c.Subscribe(wire.Root+"/"+dev+"/#", 1, b.onMessage)
			sub.WaitTimeout(10 * time.Second)
			select {
			case subscribed <- sub.Error():
			default:
			}
		}))
	tok := b.c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	select {
	case err := <-subscribed:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("test backend did not subscribe")
	}
	t.Cleanup(func() {
		b.c.Publish(wire.Root+"/"+dev+"/presence", 1, true, []byte{}).WaitTimeout(2 * time.Second)
		b.c.Disconnect(100)
	})
	return b
}

func (b *backend) pub(k wire.Kind, m wire.Message) {
	p, err := wire.Encode(m)
	if err != nil {
		panic(err)
	}
	tp, _ := wire.TopicFor(b.dev, k)
	b.c.Publish(tp, 1, false, p)
}

func (b *backend) onMessage(_ mqtt.Client, msg mqtt.Message) {
	if len(msg.Payload()) == 0 {
		return
	}
	_, m, err := wire.Decode(msg.Topic(), msg.Payload())
	if err != nil {
		return
	}
	switch v := m.(type) {
	case *wire.Event:
		b.mu.Lock()
		b.events[v.ID] = *v // committed, idempotently by id
		if v.Kind == wire.EvPickupCompleted {
			b.completed[v.DocumentID] = true
		}
		b.mu.Unlock()
		go b.pub(wire.KindAck, &wire.Ack{IDs: []string{v.ID}})
	case *wire.CommandResult:
		b.mu.Lock()
		b.results = append(b.results, *v)
		b.mu.Unlock()
	case *wire.VerifyRequest:
		b.mu.Lock()
		silent, fn := b.silent, b.verifyFn
		b.mu.Unlock()
		if silent {
			return
		}
		if fn != nil {
			go b.pub(wire.KindVerifyRes, fn(v))
			return
		}
		doc := strings.TrimPrefix(v.Token, "K1.")
		n, err := strconv.Atoi(strings.TrimPrefix(doc, "doc-"))
		res := &wire.VerifyResponse{ID: v.ID, Result: wire.VerifyWrongCode}
		b.mu.Lock()
		done := b.completed[doc]
		b.mu.Unlock()
		switch {
		case err != nil || n < 1 || n > 3*hardware.MaxChannels:
		case done:
			res.Result = wire.VerifyAlreadyCollected
		default:
			res = &wire.VerifyResponse{ID: v.ID, Result: wire.VerifyOK, DocumentID: doc,
				Addr: &wire.Address{Board: (n - 1) / hardware.MaxChannels, Channel: (n - 1) % hardware.MaxChannels}}
		}
		go b.pub(wire.KindVerifyRes, res)
	}
}

func (b *backend) isCompleted(doc string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.completed[doc]
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// lockedBuffer collects a child's stderr safely.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type child struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan error
}

func startChild(t *testing.T, cfgPath, kiosk string) *child {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+cfgPath)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	cmd.Stdout = io.Discard
	require.NoError(t, cmd.Start())
	c := &child{cmd: cmd, stderr: stderr, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + kiosk + "/kiosk/v1/diagnostics")
		if err == nil {
			var d struct {
				Ready bool `json:"ready"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&d)
			resp.Body.Close()
			if d.Ready {
				return c
			}
		}
		select {
		case err := <-c.done:
			t.Fatalf("kluisd exited at start-up: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("kluisd not ready\n%s", stderr.String())
	return nil
}

func pickup(kiosk, doc string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post("http://"+kiosk+"/kiosk/v1/pickup", "application/json", strings.NewReader(`{"qr":"K1.`+doc+`"}`))
	if err == nil {
		resp.Body.Close()
	}
}

// kluisd as a real process, killed with SIGKILL at seeded random moments
// during pickups and restarted: afterwards no channel was pulsed twice and
// the backend has every pickup.
func TestKillNineNoLostEventsNoDoublePulse(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("child")
	}
	// Each round starts one or two pickups and kills kluisd at a random
	// moment; documents run out slower than rounds.
	kills, docs := 4, 8
	if os.Getenv("KLUIS_LONG") == "1" {
		kills, docs = 100, 3*hardware.MaxChannels
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KLUIS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (KLUIS_SEED to replay)", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	dir := t.TempDir()
	dev := fmt.Sprintf("crash-%d", time.Now().UnixNano())
	kiosk := freePort(t)
	cfgPath := filepath.Join(dir, "kluisd.yaml")
	var comps strings.Builder
	for i := 1; i <= docs; i++ {
		fmt.Fprintf(&comps, "  - {number: %d, board: %d, channel: %d}\n", i, (i-1)/hardware.MaxChannels, (i-1)%hardware.MaxChannels)
	}
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
device_id: %s
site: crash
kind: locker
mqtt: {url: %s}
hardware: {driver: simfile, simfile: %s}
journal_dir: %s
kiosk: {listen: "%s"}
metrics_listen: "off"
timeouts: {door_open_detect: 2s, verify: 2s, resume_window: 60s}
compartments:
%s`, dev, brokerURL(), filepath.Join(dir, "board.sim"), filepath.Join(dir, "journal"), kiosk, comps.String())), 0o600))
	be := newBackend(t, dev)

	pending := func() []string {
		var out []string
		for i := 1; i <= docs; i++ {
			d := fmt.Sprintf("doc-%d", i)
			if !be.isCompleted(d) {
				out = append(out, d)
			}
		}
		return out
	}
	for k := 0; k < kills; k++ {
		c := startChild(t, cfgPath, kiosk)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		order := pending()
		if len(order) > 2 {
			order = order[:1+rng.IntN(2)]
		}
		go func(order []string) {
			defer wg.Done()
			for _, d := range order {
				select {
				case <-stop:
					return
				default:
				}
				pickup(kiosk, d)
			}
		}(order)
		time.Sleep(time.Duration(rng.IntN(120)) * time.Millisecond)
		require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
		close(stop)
		<-c.done
		wg.Wait()
	}
	// Final run: finish what is left, let the outbox drain, stop cleanly.
	c := startChild(t, cfgPath, kiosk)
	deadline := time.Now().Add(60 * time.Second)
	for len(pending()) > 0 && time.Now().Before(deadline) {
		for _, d := range pending() {
			pickup(kiosk, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.Empty(t, pending(), "every document collected\n%s", c.stderr.String())
	var backlog int
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + kiosk + "/kiosk/v1/diagnostics")
		require.NoError(t, err)
		var d struct {
			Backlog int `json:"backlog"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&d))
		resp.Body.Close()
		if backlog = d.Backlog; backlog == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.Zero(t, backlog, "outbox drained")
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-c.done:
		require.NoError(t, err, c.stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("kluisd did not stop on SIGTERM")
	}

	// Zero double pulses: every channel pulsed at most once (duplicates of
	// the same command id are ignored by the board).
	recs, err := daemontest.ReadFile(filepath.Join(dir, "board.sim"))
	require.NoError(t, err)
	pulses := map[hardware.Address]int{}
	dups := 0
	for _, r := range recs {
		switch {
		case r.T == "pulse" && r.Dup:
			dups++
		case r.T == "pulse":
			pulses[hardware.Address{Board: r.B, Channel: r.C}]++
		}
	}
	t.Logf("%d kills, %d pulses, %d re-sent command ids ignored by the board", kills, len(pulses), dups)
	for a, n := range pulses {
		require.Equal(t, 1, n, "channel %s pulsed %d times", a, n)
	}
	require.Len(t, pulses, docs)
	// Zero lost events: the backend has a pickup_completed per document,
	// and nothing is left unacknowledged in the journal.
	be.mu.Lock()
	require.Len(t, be.completed, docs)
	alarms := map[string]int{}
	for _, e := range be.events {
		if e.Kind == wire.EvAlarm {
			alarms[string(e.Alarm)+": "+e.Detail]++
		}
	}
	be.mu.Unlock()
	t.Logf("alarms: %v", alarms)
	j, _, _, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), DeviceID: dev})
	require.NoError(t, err)
	defer j.Close()
	require.Zero(t, j.OutboxLen())
	require.Empty(t, j.Unfinished())
}
