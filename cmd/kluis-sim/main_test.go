package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kluis/simulator/simcli"
)

// buildSim builds kluis-sim into a temporary directory once per test binary.
var buildOnce struct {
	sync.Once
	path string
	err  error
	out  []byte
}

func buildSim(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kluis-sim-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "kluis-sim")
		cmd := exec.Command("go", "build", "-o", buildOnce.path, ".")
		buildOnce.out, buildOnce.err = cmd.CombinedOutput()
	})
	if buildOnce.err != nil {
		t.Fatalf("go build: %v\n%s", buildOnce.err, buildOnce.out)
	}
	return buildOnce.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildOnce.path != "" {
		os.RemoveAll(filepath.Dir(buildOnce.path))
	}
	os.Exit(code)
}

type ready struct {
	Control string `json:"control"`
	Devices []struct {
		ID, Link, Path string
		Topics         []string
	} `json:"devices"`
}

// startSim runs the binary and waits for its ready line.
func startSim(t *testing.T, args ...string) ready {
	t.Helper()
	bin := buildSim(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("kluis-sim exited before ready: %s", stderr.String())
		}
		var r ready
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("ready line %q: %v", l, err)
		}
		return r
	case <-time.After(20 * time.Second):
		t.Fatalf("kluis-sim not ready in 20s: %s", stderr.String())
	}
	return ready{}
}

// pyXfer is an independent program: it opens the serial link raw, writes
// each hex frame and reads back up to want bytes (or 3 s of silence),
// printing the reply in hex, one line per frame.
const pyXfer = `
import os, sys, tty, select, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
tty.setraw(fd)
for arg in sys.argv[2:]:
    frame, want = arg.split(':')
    want = int(want)
    if frame.startswith('sleep'):
        time.sleep(float(frame[5:]))
        print('')
        continue
    os.write(fd, bytes.fromhex(frame))
    out = b''
    end = time.time() + 3
    while len(out) < want and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            out += os.read(fd, 64)
    print(out.hex())
    sys.stdout.flush()
`

func pyRun(t *testing.T, link string, frames ...string) []string {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatalf("python3 is needed for this test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "python3", append([]string{"-c", pyXfer, link}, frames...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n")
}

func TestKerongFramesFromAnIndependentProgram(t *testing.T) {
	link := filepath.Join(t.TempDir(), "tty")
	r := startSim(t, "serial", "--protocol", "kerong-cu16", "--link", link, "--boards", "2", "--channels", "16", "--http", "127.0.0.1:0")
	if r.Devices[0].Link != link || !strings.HasPrefix(r.Devices[0].Path, "/dev/pts/") {
		t.Fatalf("endpoint %+v", r.Devices[0])
	}
	got := pyRun(t, link,
		"0200310336:5",   // unlock board 0 lock 1 (ADDR 00): status frame, door still shut
		"sleep0.5:0",     // the door springs open after the mechanical delay
		"0200300335:9",   // status of board 0: L1-8 bit 0 set (door 1 open)
		"0210300345:9",   // status of board 1: all shut, nothing present
		"0200310337:5",   // bad sum: no reply
		"0240310376:5",   // board 4 does not exist: no reply
		"ff0002003103:0", // garbage then a frame cut short...
		"36:5",           // ...completed: still one valid unlock frame, answered
		"0203310339:5",   // unlock board 0 lock 4 (ADDR 03)
		"sleep0.5:0",
		"0200300335:9", // locks 1 and 4 open: 0x09
	)
	want := []string{
		"0200310003" + "36",
		"",
		"0200350100000003" + "3b",
		"0210350000000003" + "4a",
		"",
		"",
		"",
		"0200310103" + "37", // lock 1 is open by now: status 01
		"0203310003" + "39",
		"",
		"0200350900000003" + "43",
	}
	if len(got) != len(want) {
		t.Fatalf("replies %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("reply %d = %q, want %q", i, got[i], want[i])
		}
	}
	// the true state through the control API: two pulses, both asked for
	out := ctl(t, r.Control, "pulses", "sim")
	var pulses []struct{ Board, Channel int }
	if err := json.Unmarshal(out, &pulses); err != nil {
		t.Fatalf("pulses %s: %v", out, err)
	}
	if fmt.Sprint(pulses) != "[{0 0} {0 0} {0 3}]" {
		t.Fatalf("pulses %v, want lock 1 twice (the resynced frame was a second valid unlock) and lock 4", pulses)
	}
	// what the boards heard: 7 valid frames (one for absent board 4), the
	// frame with a bad sum, one garbage run
	var line struct {
		Frames, Garbage, Ignored int
		BadFrames                int `json:"bad_frames"`
	}
	if out := ctl(t, r.Control, "line", "sim"); json.Unmarshal(out, &line) != nil ||
		line.Frames != 7 || line.Garbage != 1 || line.BadFrames != 1 || line.Ignored != 1 {
		t.Fatalf("line %s", out)
	}
}

func ctl(t *testing.T, addr string, args ...string) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := simcli.Ctl(context.Background(), append([]string{"--addr", addr}, args...), simcli.Env{Stdout: &out, Stderr: &out}); err != nil {
		t.Fatalf("ctl %v: %v: %s", args, err, out.String())
	}
	return out.Bytes()
}

func TestFleetSubcommandAndCtl(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fleet.yaml")
	yaml := fmt.Sprintf(`seed: 5
http: 127.0.0.1:0
devices:
  - id: bank
    hardware: kerong-cu16
    link: %s
    channels: 4
    items:
      - {board: 0, channel: 1, label: "ID card"}
`, filepath.Join(dir, "tty"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startSim(t, "fleet", "--config", cfg)
	if len(r.Devices) != 1 || r.Devices[0].ID != "bank" {
		t.Fatalf("ready %+v", r)
	}
	var st struct {
		Channels []struct {
			Channel  int
			Item     string
			DoorOpen bool `json:"door_open"`
		}
	}
	if err := json.Unmarshal(ctl(t, r.Control, "state", "bank"), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Channels) != 4 || st.Channels[1].Item != "ID card" {
		t.Fatalf("state %+v", st)
	}
	ctl(t, r.Control, "channel", "bank", "1", "force")
	out := ctl(t, r.Control, "channel", "bank", "1", "take")
	if !strings.Contains(string(out), `"item": "ID card"`) {
		t.Fatalf("take: %s", out)
	}
	var buf bytes.Buffer
	env := simcli.Env{Stdout: &buf, Stderr: &buf}
	if err := simcli.Ctl(context.Background(), []string{"--addr", r.Control, "channel", "bank", "1", "take"}, env); err == nil {
		t.Fatal("a second take succeeded")
	}
	if err := simcli.Ctl(context.Background(), []string{"--addr", r.Control, "channel", "bank"}, env); err == nil {
		t.Fatal("ctl with missing arguments succeeded")
	}
}
