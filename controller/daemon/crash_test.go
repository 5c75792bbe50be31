package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
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

	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/controller/config"
	"kluis/controller/daemon/daemontest"
	"kluis/controller/journal"
	"kluis/controller/pickupcode"
	"kluis/controller/promtext"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

const childEnv = "KLUIS_CRASH_CHILD"

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
		OpenDriver: func(ctx context.Context, cfg *config.Config, _ *slog.Logger, _ promtext.Registerer) (hardware.Driver, error) {
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

type child struct {
	cmd    *exec.Cmd
	stderr *testenv.SyncBuffer
	done   chan error
}

// startChild runs kluisd (TestCrashChild) on cfgPath and waits until its
// /healthz on metrics says ready.
func startChild(t *testing.T, cfgPath, metrics string) *child {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+cfgPath)
	stderr := &testenv.SyncBuffer{}
	cmd.Stderr = stderr
	cmd.Stdout = io.Discard
	require.NoError(t, cmd.Start())
	c := &child{cmd: cmd, stderr: stderr, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if health(metrics).Ready {
			return c
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

// stopChild stops kluisd with SIGTERM and requires a clean exit.
func stopChild(t *testing.T, c *child) {
	t.Helper()
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-c.done:
		require.NoError(t, err, c.stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("kluisd did not stop on SIGTERM")
	}
}

// simPulses counts the pulses (re-sent command ids left out) the SimFile
// board at path carried out, by address.
func simPulses(t *testing.T, path string) map[hardware.Address]int {
	t.Helper()
	recs, err := daemontest.ReadFile(path)
	require.NoError(t, err)
	out := map[hardware.Address]int{}
	for _, r := range recs {
		if r.T == "pulse" && !r.Dup {
			out[hardware.Address{Board: r.B, Channel: r.C}]++
		}
	}
	return out
}

func pickup(kiosk, token string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post("http://"+kiosk+"/kiosk/v1/pickup", "application/json", strings.NewReader(`{"qr":"`+token+`"}`))
	if err == nil {
		resp.Body.Close()
	}
}

// kluisd as a real process, killed with SIGKILL at seeded random moments
// during pickups and restarted, against the real backend (in-process, on
// its embedded broker): afterwards no channel was pulsed twice and the
// backend has collected every document. A code the backend accepted just
// before a kill, and which kluisd never acted on, is given back by the
// backend's follow-up sweep (-rearm-unfollowed-after, short here).
func TestKillNineNoLostEventsNoDoublePulse(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("child")
	}
	// Each round starts one or two pickups and kills kluisd at a random
	// moment; documents run out slower than rounds.
	kills, docs := 4, 8
	if os.Getenv("KLUIS_LONG") == "1" {
		// The most codes a device may have at once.
		kills, docs = 100, pickupcode.MaxActiveCodesPerDevice
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KLUIS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (KLUIS_SEED to replay)", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	dir := t.TempDir()
	dev := fmt.Sprintf("crash-%d", time.Now().UnixNano())
	kiosk, metrics := testenv.FreeAddr(t), testenv.FreeAddr(t)
	var addrs []wire.Address
	var comps strings.Builder
	for i := 1; i <= docs; i++ {
		a := wire.Address{Board: (i - 1) % 3, Channel: (i - 1) / 3} // over three boards
		addrs = append(addrs, a)
		fmt.Fprintf(&comps, "  - {number: %d, board: %d, channel: %d}\n", i, a.Board, a.Channel)
	}
	be := startRealBackend(t, dev, "locker", numbered(addrs...), server.Options{RearmUnfollowed: 3 * time.Second})
	ids, tokens := be.loadDocuments(docs)
	cfgPath := filepath.Join(dir, "kluisd.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
device_id: %s
site: crash
kind: locker
mqtt: %s
hardware: {driver: simfile, simfile: %s}
journal_dir: %s
kiosk: {listen: "%s"}
metrics_listen: "%s"
offline: %s
timeouts: {door_open_detect: 2s, verify: 2s, resume_window: 60s}
compartments:
%s`, dev, be.mqttConfig(), filepath.Join(dir, "board.sim"), filepath.Join(dir, "journal"), kiosk, metrics, be.offlineConfig(), comps.String())), 0o600))

	pending := func() []string {
		var out []string
		for _, id := range ids {
			if be.state(id) != "collected" {
				out = append(out, id)
			}
		}
		return out
	}
	for k := 0; k < kills; k++ {
		c := startChild(t, cfgPath, metrics)
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
				pickup(kiosk, tokens[d])
			}
		}(order)
		time.Sleep(time.Duration(rng.IntN(120)) * time.Millisecond)
		require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
		close(stop)
		<-c.done
		wg.Wait()
	}
	// Final run: finish what is left, let the outbox drain, stop cleanly.
	c := startChild(t, cfgPath, metrics)
	deadline := time.Now().Add(90 * time.Second)
	for len(pending()) > 0 && time.Now().Before(deadline) {
		for _, d := range pending() {
			pickup(kiosk, tokens[d])
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.Empty(t, pending(), "every document collected\n%s\n%s", c.stderr.String(), be.Log)
	var backlog int
	for time.Now().Before(deadline) {
		h := health(metrics)
		if backlog = h.Backlog; !h.Ready {
			backlog = -1 // not answering: nothing drained yet
		} else if backlog == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.Zero(t, backlog, "outbox drained")
	stopChild(t, c)

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
	// Zero lost events: the backend collected every document (above) from
	// the device's pickup events, and nothing is left unacknowledged in the
	// journal.
	for _, id := range ids {
		require.Equal(t, 1, be.auditActions("document:" + id)["document.collect"], "document %s collected once", id)
	}
	t.Logf("device audit: %v", be.auditActions("device:"+dev))
	j, _, _, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), DeviceID: dev})
	require.NoError(t, err)
	defer j.Close()
	require.Zero(t, j.OutboxLen())
	require.Empty(t, j.Unfinished())
}
