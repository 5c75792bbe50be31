package kiosk

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/config"
	"kluis/controller/engine"
	"kluis/controller/journal"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
	"kluis/hardware/hardwaretest"
)

// staffBackend lets the badge "B-1" in (for an hour), "T-1" as a
// technician, "A-1" as an admin, and answers every code as wrong.
type staffBackend struct {
	mu      sync.Mutex
	logouts int
	ended   []string // the sessions logged out, in order
}

func (b *staffBackend) Verify(ctx context.Context, req wire.VerifyRequest) (wire.VerifyResponse, error) {
	return wire.VerifyResponse{ID: req.ID, Result: wire.VerifyWrongCode}, nil
}

func (b *staffBackend) Staff(ctx context.Context, req wire.StaffRequest) (wire.StaffResponse, error) {
	switch {
	case req.Op == wire.StaffLogin && req.Badge == "B-1":
		exp := time.Now().Add(time.Hour)
		return wire.StaffResponse{ID: req.ID, Op: req.Op, Result: wire.StaffOK, Session: "s", StaffID: "7", StaffName: "An", Expires: &exp}, nil
	case req.Op == wire.StaffLogin && req.Badge == "T-1":
		exp := time.Now().Add(time.Hour)
		return wire.StaffResponse{ID: req.ID, Op: req.Op, Result: wire.StaffOK, Session: "t", StaffID: "8", StaffName: "Bo", Expires: &exp,
			Role: wire.RoleTechnician}, nil
	case req.Op == wire.StaffLogin && req.Badge == "A-1":
		exp := time.Now().Add(time.Hour)
		return wire.StaffResponse{ID: req.ID, Op: req.Op, Result: wire.StaffOK, Session: "a", StaffID: "9", StaffName: "Cas", Expires: &exp,
			Role: wire.RoleAdmin}, nil
	case req.Op == wire.StaffReserve:
		return wire.StaffResponse{ID: req.ID, Op: req.Op, Result: wire.StaffOK, DocumentID: "d1", Addr: &wire.Address{Channel: 0}}, nil
	case req.Op == wire.StaffLogout:
		b.mu.Lock()
		b.logouts++
		b.ended = append(b.ended, req.Session)
		b.mu.Unlock()
		return wire.StaffResponse{ID: req.ID, Op: req.Op, Result: wire.StaffOK}, nil
	}
	return wire.StaffResponse{ID: req.ID, Op: req.Op, Result: wire.StaffDenied}, nil
}

// liveRig is an engine on the fake driver with the kiosk server (screen
// and idle rules); Run runs until the test ends.
type liveRig struct {
	e  *engine.Engine
	f  *hardwaretest.Fake
	s  *Server
	be *staffBackend
}

func newLiveRig(t *testing.T, timeouts string) *liveRig {
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(`
device_id: live-test
site: test
kind: locker
mqtt: {url: tcp://127.0.0.1:1883}
hardware: {driver: simfile, simfile: /dev/null}
journal_dir: `+dir+`
compartments:
  - {number: 1, board: 0, channel: 0}
  - {number: 2, board: 0, channel: 1}
kiosk: {default_lang: fr, staff_idle: 30s}
timeouts: {`+timeouts+`}
`), config.ParseOptions{AllowTestDrivers: true})
	require.NoError(t, err)
	r := &liveRig{be: &staffBackend{}}
	r.f = hardwaretest.New(hardwaretest.Options{Caps: hardware.Capabilities{DoorSensor: true, ItemSensor: true}})
	j, recs, _, err := journal.Open(journal.Options{Dir: dir, DeviceID: "live-test"})
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r.e, err = engine.New(engine.Options{Config: cfg, Driver: r.f, Journal: j, Replay: recs, Backend: r.be, Logger: log})
	require.NoError(t, err)
	r.s, err = New(Options{Engine: r.e, Config: cfg, Logger: log})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = r.e.Run(ctx) }()
	go func() { defer wg.Done(); _ = r.s.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); j.Close() })
	testenv.EventuallyWithin(t, 10*time.Second, "the engine ready", r.e.Ready)
	return r
}

// sseEvent is one server-sent event.
type sseEvent struct {
	name string
	data string
}

// readEvents hands the stream's events to a channel until it ends.
func readEvents(body io.Reader) <-chan sseEvent {
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return ch
}

// nextScreen waits (at most 10 s: a bound, not a timing goal) for the next
// "screen" event.
func nextScreen(t *testing.T, ch <-chan sseEvent) engine.Screen {
	t.Helper()
	for {
		select {
		case ev, ok := <-ch:
			require.True(t, ok, "the stream ended")
			if ev.name != "screen" {
				continue
			}
			var s engine.Screen
			require.NoError(t, json.Unmarshal([]byte(ev.data), &s))
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("no screen event")
		}
	}
}

func TestEventsFollowTheEngineAndTheIdleTimeout(t *testing.T) {
	r := newLiveRig(t, "session: 1s")
	srv := httptest.NewUnstartedServer(r.s.Handler())
	srv.Config.RegisterOnShutdown(r.s.CloseStreams)
	srv.Start()
	defer srv.Close()

	resp, err := testenv.HTTPClient().Get(srv.URL + "/kiosk/v1/events")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	evs := readEvents(resp.Body)
	hello := <-evs
	require.Equal(t, "hello", hello.name)
	require.JSONEq(t, fmt.Sprintf(`{"build":%q}`, r.s.Build()), hello.data)
	require.NotEmpty(t, r.s.Build())
	first := nextScreen(t, evs)
	require.Equal(t, engine.StateIdle, first.State)

	// A pickup at the kiosk: the stream shows the new screen.
	_, err = testenv.HTTPClient().Post(srv.URL+"/kiosk/v1/pickup", "application/json", strings.NewReader(`{"qr":"K1.nope","lang":"de"}`))
	require.NoError(t, err)
	var s engine.Screen
	for s = nextScreen(t, evs); s.State == engine.StateVerifying; s = nextScreen(t, evs) {
	}
	require.Equal(t, engine.StateWrongCode, s.State)
	require.Equal(t, "de", s.Lang)
	require.Greater(t, s.Seq, first.Seq)

	// Nobody touches the kiosk: after timeouts.session the stream shows
	// the start screen in the default language, pushed by Run.
	s = nextScreen(t, evs)
	require.Equal(t, engine.StateIdle, s.State)
	require.Equal(t, "fr", s.Lang)

	// Shutting the server down ends the stream (the browser reconnects
	// to the next kluisd).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, srv.Config.Shutdown(ctx), "Shutdown must not wait for the stream")
	for range evs {
	}
}

func TestLongPolling(t *testing.T) {
	r := newLiveRig(t, "session: 2m")
	srv := httptest.NewServer(r.s.Handler())
	defer srv.Close()
	cur := r.e.Screen()

	get := func(q string) (int, engine.Screen, http.Header) {
		resp, err := testenv.HTTPClient().Get(srv.URL + "/kiosk/v1/session" + q)
		require.NoError(t, err)
		defer resp.Body.Close()
		var s engine.Screen
		_ = json.NewDecoder(resp.Body).Decode(&s)
		return resp.StatusCode, s, resp.Header
	}
	// Another seq (kluisd restarted, or a change missed): answered at once.
	code, s, h := get(fmt.Sprintf("?wait=%d", cur.Seq+100))
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, cur.Seq, s.Seq)
	require.Equal(t, r.s.Build(), h.Get("X-Kluis-Build"))
	code, _, _ = get("?wait=soon")
	require.Equal(t, http.StatusBadRequest, code)

	// The current seq: the answer waits for the change.
	got := make(chan engine.Screen, 1)
	go func() { _, s, _ := get(fmt.Sprintf("?wait=%d", cur.Seq)); got <- s }()
	time.Sleep(50 * time.Millisecond)
	select {
	case s := <-got:
		t.Fatalf("answered before any change: %+v", s)
	default:
	}
	_, err := r.e.Pickup(context.Background(), engine.PickupRequest{QR: "K1.nope"})
	require.NoError(t, err)
	select {
	case s := <-got:
		require.Greater(t, s.Seq, cur.Seq)
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll did not answer the change")
	}
}

func TestScreenPageServedWithTheAPI(t *testing.T) {
	r := newLiveRig(t, "session: 2m")
	srv := httptest.NewServer(r.s.Handler())
	defer srv.Close()
	resp, err := testenv.HTTPClient().Get(srv.URL + "/?lang=en")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(b), `<html lang="en"`)
	require.Contains(t, string(b), `data-build="`+r.s.Build()+`"`)
	// Without a configuration (Handler): the API only.
	bare := httptest.NewServer(Handler(r.e, nil))
	defer bare.Close()
	resp, err = testenv.HTTPClient().Get(bare.URL + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestIdleRules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newLiveRig(t, "session: 20s")
		ctx := context.Background()

		// A result screen goes back to idle after timeouts.session
		// without anybody asking: Run changes it (and so wakes the
		// event streams).
		_, err := r.e.Pickup(ctx, engine.PickupRequest{QR: "K1.nope", Lang: "de"})
		require.NoError(t, err)
		ch := r.e.Changed()
		time.Sleep(19 * time.Second)
		synctest.Wait()
		select {
		case <-ch:
			t.Fatal("back to idle before timeouts.session")
		default:
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		select {
		case <-ch:
		default:
			t.Fatal("not back to idle after timeouts.session")
		}
		s := r.e.Screen()
		require.Equal(t, engine.StateIdle, s.State)
		require.Equal(t, "fr", s.Lang, "the default language")

		// Staff are logged out kiosk.staff_idle (30s) after their last
		// action...
		_, err = r.e.StaffLogin(ctx, "B-1", "", "en")
		require.NoError(t, err)
		require.Equal(t, "An", r.e.Screen().Staff)
		time.Sleep(25 * time.Second)
		r.s.staffActed()
		time.Sleep(25 * time.Second)
		synctest.Wait()
		require.Equal(t, "An", r.e.Screen().Staff, "an action postpones the logout")
		time.Sleep(6 * time.Second)
		synctest.Wait()
		require.Empty(t, r.e.Screen().Staff)
		require.Equal(t, engine.StateIdle, r.e.Screen().State)
		r.be.mu.Lock()
		require.Equal(t, 1, r.be.logouts, "the backend's session ends too")
		r.be.mu.Unlock()

		// ... but not while a door is open for them.
		_, err = r.e.StaffLogin(ctx, "B-1", "", "en")
		require.NoError(t, err)
		_, err = r.e.StaffLoad(ctx, "591-1", "en")
		require.NoError(t, err)
		for len(r.f.Pulses()) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		r.f.Inject(hardware.Event{Kind: hardware.DoorOpened, Addr: hardware.Address{Channel: 0}})
		time.Sleep(90 * time.Second)
		synctest.Wait()
		require.Equal(t, engine.StateLoading, r.e.Screen().State)
		require.Equal(t, "An", r.e.Screen().Staff)
		r.f.SetState(hardware.ChannelState{Addr: hardware.Address{Channel: 0}, Locked: true, ItemPresent: true})
		r.f.Inject(hardware.Event{Kind: hardware.DoorClosed, Addr: hardware.Address{Channel: 0}})
		synctest.Wait()
		require.Equal(t, engine.StateLoaded, r.e.Screen().State)
		time.Sleep(31 * time.Second)
		synctest.Wait()
		require.Empty(t, r.e.Screen().Staff, "logged out staff_idle after the door closed")
	})
}
