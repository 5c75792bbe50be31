package screen_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kluis/controller/config"
	"kluis/controller/engine"
	"kluis/controller/journal"
	"kluis/controller/kiosk"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
	"kluis/hardware/hardwaretest"
)

const device = "screen-test"

// backend answers the engine from tables, as the real one would over MQTT;
// a verify for a code in hold waits until it is released.
type backend struct {
	mu     sync.Mutex
	verify map[string]wire.VerifyResponse // by token, or pin+"/"+birth date
	staff  map[string]wire.StaffResponse  // by op+":"+badge, pin or document number
	down   bool
	hold   map[string]chan struct{}
}

func newBackend() *backend {
	return &backend{verify: map[string]wire.VerifyResponse{}, staff: map[string]wire.StaffResponse{}, hold: map[string]chan struct{}{}}
}

func (b *backend) Verify(ctx context.Context, req wire.VerifyRequest) (wire.VerifyResponse, error) {
	key := req.Token
	if req.Method == wire.MethodPIN {
		key = req.PIN + "/" + req.BirthDate
	}
	b.mu.Lock()
	h := b.hold[key]
	b.mu.Unlock()
	if h != nil {
		select {
		case <-h:
		case <-ctx.Done():
			return wire.VerifyResponse{}, engine.ErrBackendUnavailable
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return wire.VerifyResponse{}, engine.ErrBackendUnavailable
	}
	r, ok := b.verify[key]
	if !ok {
		r = wire.VerifyResponse{Result: wire.VerifyWrongCode}
	}
	r.ID = req.ID
	return r, nil
}

func (b *backend) Staff(ctx context.Context, req wire.StaffRequest) (wire.StaffResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return wire.StaffResponse{}, engine.ErrBackendUnavailable
	}
	key := string(req.Op) + ":" + req.Badge + req.PIN + req.DocumentNumber
	r, ok := b.staff[key]
	if !ok {
		if req.Op == wire.StaffLogout {
			r = wire.StaffResponse{Result: wire.StaffOK}
		} else {
			r = wire.StaffResponse{Result: wire.StaffDenied}
		}
	}
	r.ID, r.Op = req.ID, req.Op
	return r, nil
}

func (b *backend) set(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f()
}

// rig is a real engine on the fake driver behind the real kiosk server
// (API, event stream, screen), with the table backend.
type rig struct {
	t    testing.TB
	e    *engine.Engine
	f    *hardwaretest.Fake
	be   *backend
	cfg  *config.Config
	ks   *kiosk.Server
	srv  *httptest.Server
	base string
	// bases are more servers of the same kiosk on other loopback
	// addresses: a browser opens at most 6 connections to one host, and
	// every tab keeps one for its event stream.
	bases []string
	more  []*httptest.Server
	// openOnPulse makes a pulsed door spring open (as a real one does).
	mu          sync.Mutex
	openOnPulse bool
}

type rigOptions struct {
	kind  string
	extra string // YAML appended to the configuration
	// manualPresent leaves a carousel move unfinished until the test
	// calls f.CompletePresent.
	manualPresent bool
	// session is timeouts.session; default 30m (newRig).
	session string
	// leftOpen is timeouts.door_left_open; default 10m.
	leftOpen string
	// listen serves the kiosk on this address instead of a random one.
	listen string
	// diskFull: the journal's disk has no room for its reserve (from
	// the start, and it never gets any): no door of the device opens.
	diskFull bool
	// kiosk is YAML added to the kiosk's settings ("display_name: x").
	kiosk string
	// lockout is the lockout's settings; default 100 wrong PINs in 10m.
	lockout string
	// clock is the engine's and the kiosk's clock; default time.Now.
	clock func() time.Time
}

func newRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	if o.kind == "" {
		o.kind = config.KindLocker
	}
	if o.session == "" {
		// Longer than any test: a tab left waiting for its turn on a
		// loaded machine must not go back to the start screen (and its
		// default language) under the test's feet; the idle test sets 3s.
		o.session = "30m"
	}
	if o.leftOpen == "" {
		o.leftOpen = "10m"
	}
	if !strings.Contains(o.kiosk, "display_name:") {
		// A long name, as a city names its machines: every screen must
		// still fit with it.
		o.kiosk = "display_name: \"Stadhuis Kortrijk, automaat 2\"\n" + o.kiosk
	}
	if o.lockout == "" {
		o.lockout = "max_failures: 100, window: 10m, duration: 15m"
	}
	dir := journalDir(t)
	// door_open_detect is the engine's own timer: the "door did not open"
	// screens need it to run out, so it stays short; a pulsed door's event
	// must reach the engine before it does (the fake driver's Watch wakes,
	// the engine journals the event, then hands it to the operation). 1 s
	// once was not enough under load: 2 s, and the journal on tmpfs.
	y := fmt.Sprintf(`device_id: %s
site: test
kind: %s
mqtt: {url: tcp://127.0.0.1:1883}
hardware: {driver: simfile, simfile: /dev/null}
journal_dir: %s
timeouts: {door_open_detect: 2s, open_retries: 0, door_left_open: %s, verify: 60s, present: 60s, session: %s}
lockout: {%s}
kiosk:
  default_lang: nl
%s
`, device, o.kind, dir, o.leftOpen, o.session, o.lockout, indent(o.kiosk))
	boards := []hardware.BoardInfo{{Address: 0, Channels: 16}}
	if o.kind == config.KindAutomaton {
		y += "compartments:\n"
		for i := 0; i < 6; i++ {
			y += fmt.Sprintf("  - {number: %d, board: 0, slot: %d}\n", i+1, i)
		}
		boards = []hardware.BoardInfo{{Address: 0, Channels: 1, Slots: 6}}
	} else {
		y += "compartments:\n"
		for i := 0; i < 12; i++ {
			y += fmt.Sprintf("  - {number: %d, board: 0, channel: %d}\n", i+1, i)
		}
	}
	y += o.extra
	cfg, err := config.Parse([]byte(y), config.ParseOptions{AllowTestDrivers: true})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, be: newBackend(), cfg: cfg, openOnPulse: true}
	r.f = hardwaretest.New(hardwaretest.Options{Boards: boards, Caps: hardware.Capabilities{DoorSensor: true, ItemSensor: true},
		OnPulse: func(c hardwaretest.Call) {
			r.mu.Lock()
			open := r.openOnPulse
			r.mu.Unlock()
			if open {
				r.f.Inject(hardware.Event{Kind: hardware.DoorOpened, Addr: c.Addr})
			}
		},
		OnPresent: func(c hardwaretest.Call) {
			if o.manualPresent {
				return
			}
			go func() {
				time.Sleep(200 * time.Millisecond)
				r.arrive(c.Addr.Board, c.Slot)
			}()
		}})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	jo := journal.Options{Dir: dir, DeviceID: device}
	if o.diskFull {
		jo.Allocate = func(*os.File, int64) error { return syscall.ENOSPC }
	}
	j, recs, _, err := journal.Open(jo)
	if err != nil {
		t.Fatal(err)
	}
	r.e, err = engine.New(engine.Options{Config: cfg, Driver: r.f, Journal: j, Replay: recs, Backend: r.be, Logger: log, Clock: o.clock})
	if err != nil {
		t.Fatal(err)
	}
	r.ks, err = kiosk.New(kiosk.Options{Engine: r.e, Config: cfg, Logger: log, Clock: o.clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- r.e.Run(ctx) }()
	go func() { done <- r.ks.Run(ctx) }()
	r.srv = httptest.NewUnstartedServer(r.ks.Handler())
	if o.listen != "" {
		r.srv.Listener.Close()
		r.srv.Listener = listen(t, o.listen)
	}
	r.srv.Config.RegisterOnShutdown(r.ks.CloseStreams)
	r.srv.Start()
	r.base = r.srv.URL
	r.bases = []string{r.base}
	for i := 2; i <= 3; i++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:0", i))
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(r.ks.Handler())
		srv.Listener.Close()
		srv.Listener = l
		srv.Config.RegisterOnShutdown(r.ks.CloseStreams)
		srv.Start()
		r.more = append(r.more, srv)
		r.bases = append(r.bases, srv.URL)
	}
	t.Cleanup(func() {
		r.ks.CloseStreams()
		r.srv.Close()
		for _, s := range r.more {
			s.Close()
		}
		cancel()
		<-done
		<-done
		_ = j.Close()
	})
	r.waitFor("engine ready", r.e.Ready)
	return r
}

// indent indents YAML lines by two spaces.
func indent(y string) string {
	if y == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(strings.TrimSpace(y), "\n", "\n  ")
}

// journalDir is a directory for the rig's journal on tmpfs (/dev/shm)
// where there is one, else t.TempDir(): these tests are about the screen,
// not durability, and on a loaded machine's disk an fdatasync can take
// hundreds of milliseconds, inside the engine's door_open_detect.
func journalDir(t testing.TB) string { return testenv.TmpfsDir(t, "kluis-screen-rig-") }

// stopServer closes the kiosk's HTTP server (as when kluisd stops).
func (r *rig) stopServer() {
	r.ks.CloseStreams()
	r.srv.Close()
	for _, s := range r.more {
		s.Close()
	}
}

func (r *rig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	testenv.Eventually(r.t, what, cond)
}

// waitState waits until the engine's screen is state.
func (r *rig) waitState(state string) engine.Screen {
	r.t.Helper()
	var s engine.Screen
	r.waitFor("engine state "+state, func() bool { s = r.e.Screen(); return s.State == state })
	return s
}

func (r *rig) setOpenOnPulse(on bool) {
	r.mu.Lock()
	r.openOnPulse = on
	r.mu.Unlock()
}

// item sets whether compartment ch holds a document (door shut).
// arrive brings slot to board's hatch with its document in it: kluisd
// opens the hatch only when the item sensor there sees the document.
func (r *rig) arrive(board, slot int) {
	r.f.SetHatch(board, hardware.HatchState{Busy: true, Locked: true, Slot: -1, ItemAtHatch: true})
	r.f.CompletePresent(board, slot)
}

func (r *rig) item(ch int, present bool) {
	a := hardware.Address{Channel: ch}
	st, _ := r.f.State(a)
	st.Addr, st.ItemPresent = a, present
	r.f.SetState(st)
}

// opens counts the door-opened events of ch the engine has taken.
func (r *rig) opens(ch int) int {
	n := 0
	for _, ev := range r.f.Acked() {
		if ev.Kind == hardware.DoorOpened && ev.Addr == (hardware.Address{Channel: ch}) {
			n++
		}
	}
	return n
}

// waitOpened waits until the engine has taken more than before door-opened
// events of ch (so a close injected now comes after the opening), and
// until the engine has shown it (its screen unchanged for 300 ms).
func (r *rig) waitOpened(ch, before int) {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("door %d open", ch), func() bool { return r.opens(ch) > before })
	seq, since := r.e.Screen().Seq, time.Now()
	r.waitFor("the screen to settle", func() bool {
		if s := r.e.Screen().Seq; s != seq {
			seq, since = s, time.Now()
		}
		return time.Since(since) > 300*time.Millisecond
	})
}

// close shuts door ch with the item present or not.
func (r *rig) close(ch int, present bool) {
	a := hardware.Address{Channel: ch}
	r.f.SetState(hardware.ChannelState{Addr: a, Locked: true, ItemPresent: present})
	r.f.Inject(hardware.Event{Kind: hardware.DoorClosed, Addr: a})
}

// pickup asks the engine for a pickup as the page would.
func (r *rig) pickup(req engine.PickupRequest) engine.Screen {
	r.t.Helper()
	s, err := r.e.Pickup(context.Background(), req)
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

func okAt(doc string, ch int) wire.VerifyResponse {
	return wire.VerifyResponse{Result: wire.VerifyOK, DocumentID: doc, Addr: &wire.Address{Channel: ch}}
}

// get fetches a path of the kiosk.
func (r *rig) get(path string) (int, string, http.Header) {
	r.t.Helper()
	resp, err := testenv.HTTPClient().Get(r.base + path)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func has(s, sub string) bool { return strings.Contains(s, sub) }

// listen listens on addr, retrying while the previous server lets go of
// it.
func listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var err error
	for i := 0; i < 50; i++ {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			return l
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}
