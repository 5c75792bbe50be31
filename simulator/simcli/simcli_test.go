package simcli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kluis/deploy/dev/testenv"
)

// start runs Main(args) in the background until the test ends, and
// returns its ready line.
func start(t *testing.T, args ...string) Ready {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr testenv.SyncBuffer
	code := make(chan int, 1)
	go func() {
		code <- Main(ctx, args, Env{Stdout: pw, Stderr: &stderr})
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		go io.Copy(io.Discard, pr)
		select {
		case c := <-code:
			if c != 0 {
				t.Errorf("kluis-sim %v ended with %d: %s", args, c, stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Errorf("kluis-sim %v did not stop", args)
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("kluis-sim %v ended before ready: %s", args, stderr.String())
		}
		var r Ready
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("ready line %q: %v", l, err)
		}
		return r
	case <-time.After(20 * time.Second):
		t.Fatalf("kluis-sim %v not ready: %s", args, stderr.String())
	}
	return Ready{}
}

// ctl runs `ctl --addr addr args...` and returns its output; err is the
// command's error.
func ctl(addr string, args ...string) (string, error) {
	var out bytes.Buffer
	err := Ctl(context.Background(), append([]string{"--addr", addr}, args...), Env{Stdout: &out, Stderr: &out})
	return out.String(), err
}

func mustCtl(t *testing.T, addr string, args ...string) string {
	t.Helper()
	out, err := ctl(addr, args...)
	if err != nil {
		t.Fatalf("ctl %v: %v\n%s", args, err, out)
	}
	return out
}

func TestUsageAndBadInput(t *testing.T) {
	ctx := context.Background()
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		c := Main(ctx, args, Env{Stdout: &out, Stderr: &errb})
		return c, out.String(), errb.String()
	}
	if c, _, e := run(); c != 2 || !strings.Contains(e, "usage:") {
		t.Fatalf("no subcommand: %d %q", c, e)
	}
	if c, o, _ := run("help"); c != 0 || !strings.Contains(o, "kluis-sim fleet") {
		t.Fatalf("help: %d %q", c, o)
	}
	if c, _, e := run("serial", "-h"); c != 0 || !strings.Contains(e, "-kerong-open-bit") {
		t.Fatalf("serial -h: %d %q", c, e)
	}
	for _, args := range [][]string{
		{"nope"},
		{"serial", "--kerong-open-bit", "2"},
		{"serial", "--boards", "many"},
		{"fleet", "--config", filepath.Join(t.TempDir(), "absent.yaml")},
		{"serial", "--link", filepath.Join(t.TempDir(), "tty"), "--http", "192.0.2.1:80"}, // not loopback
	} {
		if c, _, e := run(args...); c != 1 || !strings.HasPrefix(e, "kluis-sim: ") && !strings.Contains(e, "invalid value") {
			t.Errorf("%v: exit %d, stderr %q", args, c, e)
		}
	}
}

func TestSerialFlagsMakeTheDevice(t *testing.T) {
	link := filepath.Join(t.TempDir(), "tty")
	r := start(t, "serial", "--protocol", "kerong-cu16", "--link", link, "--id", "bank", "--boards", "2", "--channels", "4",
		"--busy", "0.25", "--corrupt", "0.01", "--http", "127.0.0.1:0")
	if len(r.Devices) != 1 || r.Devices[0].ID != "bank" || r.Devices[0].Link != link || !strings.HasPrefix(r.Devices[0].Path, "/dev/pts/") {
		t.Fatalf("ready %+v", r)
	}
	var devs []struct {
		ID, Hardware     string
		Boards, Channels int
	}
	if err := json.Unmarshal([]byte(mustCtl(t, r.Control, "devices")), &devs); err != nil || len(devs) != 1 ||
		devs[0].Hardware != "kerong-cu16" || devs[0].Boards != 2 || devs[0].Channels != 4 {
		t.Fatalf("devices %+v %v", devs, err)
	}
	var f struct {
		Line struct{ Corrupt float64 }
		Busy float64 `json:"busy_prob"`
	}
	if err := json.Unmarshal([]byte(mustCtl(t, r.Control, "faults", "bank")), &f); err != nil || f.Busy != 0.25 || f.Line.Corrupt != 0.01 {
		t.Fatalf("faults %+v %v", f, err)
	}
}

func TestCtlCommandsOnAFleet(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fleet.yaml")
	yaml := fmt.Sprintf(`seed: 5
http: 127.0.0.1:0
devices:
  - id: hall a
    hardware: kluis
    link: %s
    channels: 4
    items:
      - {board: 0, channel: 1, label: "ID card"}
  - id: auto
    kind: automaton
    hardware: kluis
    link: %s
    slots: 4
    move_time: 10ms
`, filepath.Join(dir, "a"), filepath.Join(dir, "b"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, "fleet", "--config", cfg)
	if len(r.Devices) != 2 || r.Control == "" {
		t.Fatalf("ready %+v", r)
	}
	a := r.Control
	if out := mustCtl(t, a, "state", "hall a"); !strings.Contains(out, `"item": "ID card"`) {
		t.Fatalf("state: %s", out)
	}
	mustCtl(t, a, "channel", "hall a", "1", "pulse", "ms=300")
	testenv.Eventually(t, "the pulsed door opens", func() bool {
		return strings.Contains(mustCtl(t, a, "state", "hall a"), `"door_open": true`)
	})
	if out := mustCtl(t, a, "channel", "hall a", "1", "take"); !strings.Contains(out, `"item": "ID card"`) {
		t.Fatalf("take: %s", out)
	}
	// a second take: the API's 409 answer is printed and is an error
	if out, err := ctl(a, "channel", "hall a", "1", "take"); err == nil || !strings.Contains(out, `"error"`) || !strings.Contains(err.Error(), "409") {
		t.Fatalf("a second take: %q %v", out, err)
	}
	if out := mustCtl(t, a, "pulses", "hall a"); !strings.Contains(out, `"channel": 1`) {
		t.Fatalf("pulses: %s", out)
	}
	if out := mustCtl(t, a, "queue", "hall a", "0"); !strings.Contains(out, `"door_opened"`) {
		t.Fatalf("queue: %s", out)
	}
	if out := mustCtl(t, a, "line", "hall a"); !strings.Contains(out, `"frames": 0`) {
		t.Fatalf("line: %s", out)
	}
	if out := mustCtl(t, a, "set-faults", "hall a", `{"line":{"corrupt":0.02}}`); !strings.Contains(out, `"corrupt": 0.02`) {
		t.Fatalf("set-faults: %s", out)
	}
	if _, err := ctl(a, "set-faults", "hall a", `{"colour":"red"}`); err == nil {
		t.Fatal("set-faults with an unknown field succeeded")
	}
	mustCtl(t, a, "board", "auto", "0", "present", "slot=2")
	if out := mustCtl(t, a, "presents", "auto"); !strings.Contains(out, `"slot": 2`) {
		t.Fatalf("presents: %s", out)
	}
	// the address from the environment
	var out bytes.Buffer
	env := Env{Stdout: &out, Stderr: &out, Getenv: func(k string) string {
		if k == "KLUIS_SIM_ADDR" {
			return a
		}
		return ""
	}}
	if err := Ctl(context.Background(), []string{"devices"}, env); err != nil || !strings.Contains(out.String(), `"hall a"`) {
		t.Fatalf("ctl with KLUIS_SIM_ADDR: %v %s", err, out.String())
	}
}

func TestCtlRequests(t *testing.T) {
	for _, c := range []struct {
		args         []string
		method, path string
	}{
		{[]string{"devices"}, http.MethodGet, "/v1/devices"},
		{[]string{"state", "a/b"}, http.MethodGet, "/v1/devices/a%2Fb/state"},
		{[]string{"queue", "a", "1"}, http.MethodGet, "/v1/devices/a/boards/1/queue"},
		{[]string{"set-faults", "a", "{}"}, http.MethodPost, "/v1/devices/a/faults"},
		{[]string{"channel", "a", "3", "stuck", "on=true", "board=1"}, http.MethodPost, "/v1/devices/a/channels/3/stuck?board=1&on=true"},
		{[]string{"board", "a", "0", "reboot"}, http.MethodPost, "/v1/devices/a/boards/0/reboot"},
	} {
		m, p, _, err := ctlRequest(c.args)
		if err != nil || m != c.method || p != c.path {
			t.Errorf("%v: %s %s %v, want %s %s", c.args, m, p, err, c.method, c.path)
		}
	}
	for _, args := range [][]string{nil, {"state"}, {"queue", "a"}, {"channel", "a", "1"}, {"channel", "a", "1", "take", "board"}, {"explode", "a"}} {
		if _, _, _, err := ctlRequest(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	// nobody listens
	if _, err := ctl("127.0.0.1:1", "devices"); err == nil {
		t.Error("ctl against a closed port succeeded")
	}
}
