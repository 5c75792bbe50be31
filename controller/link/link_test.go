package link

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"kluis/controller/journal"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// backendKey is the test backend's signing key; the links under test hold
// its public half.
var backendKey = ed25519.NewKeyFromSeed(func() []byte { s := sha256.Sum256([]byte("link test backend key")); return s[:] }())

// responder is a minimal backend on the real broker: it acks events (when
// acking is on), answers verify requests (signed with backendKey, or forged
// as the token asks: see forge) and records what it saw.
type responder struct {
	t      *testing.T
	c      mqtt.Client
	dev    string
	mu     sync.Mutex
	ack    bool
	events map[string]int
	pres   []wire.PresenceState
	hbs    int
	res    []wire.CommandResult
	// granted is the last genuine grant sent (for a replay).
	granted *wire.VerifyResponse
	// grantAddr is the compartment grants name; default board 0 channel 3.
	grantAddr *wire.Address
}

func newResponder(t *testing.T, dev string) *responder {
	r := &responder{t: t, dev: dev, ack: true, events: map[string]int{}}
	opts := mqtt.NewClientOptions().AddBroker(testenv.BrokerURL()).SetClientID("test-backend-" + dev).SetCleanSession(true)
	r.c = mqtt.NewClient(opts)
	tok := r.c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	t.Cleanup(func() {
		// Clear the retained presence so the broker does not keep it.
		r.c.Publish(wire.Root+"/"+dev+"/presence", 1, true, []byte{}).WaitTimeout(2 * time.Second)
		r.c.Disconnect(100)
	})
	sub := r.c.Subscribe(wire.Root+"/"+dev+"/#", 1, r.onMessage)
	require.True(t, sub.WaitTimeout(10*time.Second))
	require.NoError(t, sub.Error())
	return r
}

// setAck turns acknowledging events on or off.
func (r *responder) setAck(on bool) {
	r.mu.Lock()
	r.ack = on
	r.mu.Unlock()
}

func (r *responder) pub(k wire.Kind, m wire.Message) {
	b, err := wire.Encode(m)
	if err != nil {
		panic(err)
	}
	tp, _ := wire.TopicFor(r.dev, k)
	r.c.Publish(tp, 1, false, b)
}

func (r *responder) onMessage(_ mqtt.Client, msg mqtt.Message) {
	if len(msg.Payload()) == 0 {
		return
	}
	tp, m, err := wire.Decode(msg.Topic(), msg.Payload())
	if err != nil {
		return // our own backend->device messages decode fine; ignore garbage
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch v := m.(type) {
	case *wire.Event:
		r.events[v.ID]++
		if r.ack {
			go r.pub(wire.KindAck, &wire.Ack{IDs: []string{v.ID}})
		}
	case *wire.Presence:
		r.pres = append(r.pres, v.State)
	case *wire.Heartbeat:
		r.hbs++
	case *wire.CommandResult:
		r.res = append(r.res, *v)
		if r.ack {
			go r.pub(wire.KindAck, &wire.Ack{IDs: []string{v.ID}})
		}
	case *wire.VerifyRequest:
		if v.Token != "K1.silent" {
			res := r.forge(v)
			go r.pub(wire.KindVerifyRes, res)
		}
	case *wire.StaffRequest:
		// A forged login: "ok" without a signature.
		res := &wire.StaffResponse{ID: v.ID, Op: v.Op, Result: wire.StaffOK, Session: "forged", StaffID: "u-1",
			Expires: ptr(time.Now().Add(time.Hour).UTC())}
		go r.pub(wire.KindStaffRes, res)
	}
	_ = tp
}

// forge answers a verify request (r.mu held): K1.good is granted and signed
// for this device and request; K1.bad is refused, signed; the other tokens
// name a forged or misdirected grant of the same compartment.
func (r *responder) forge(v *wire.VerifyRequest) *wire.VerifyResponse {
	grant := func() *wire.VerifyResponse {
		addr := wire.Address{Board: 0, Channel: 3}
		if r.grantAddr != nil {
			addr = *r.grantAddr
		}
		return &wire.VerifyResponse{ID: v.ID, Result: wire.VerifyOK, DocumentID: "doc-1", Addr: &addr}
	}
	sign := func(m *wire.VerifyResponse, key ed25519.PrivateKey, dev string, exp time.Time) *wire.VerifyResponse {
		if err := wire.SignResponse(key, dev, m, exp); err != nil {
			panic(err)
		}
		return m
	}
	exp := time.Now().Add(wire.ResponseTTL)
	switch v.Token {
	case "K1.good":
		g := sign(grant(), backendKey, r.dev, exp)
		r.granted = g
		return g
	case "K1.unsigned":
		return grant()
	case "K1.otherkey":
		_, other, _ := ed25519.GenerateKey(nil)
		return sign(grant(), other, r.dev, exp)
	case "K1.otherdevice":
		return sign(grant(), backendKey, r.dev+"-x", exp)
	case "K1.otherrequest":
		g := grant()
		g.ID = "another-request"
		sign(g, backendKey, r.dev, exp)
		g.ID = v.ID
		return g
	case "K1.tampered":
		g := sign(grant(), backendKey, r.dev, exp)
		g.Addr = &wire.Address{Board: 0, Channel: 4}
		return g
	case "K1.expired":
		return sign(grant(), backendKey, r.dev, time.Now().Add(-wire.CommandSkew-time.Second))
	case "K1.replay":
		// The genuine grant of an earlier request, under this request's id.
		g := *r.granted
		g.ID = v.ID
		return &g
	case "K1.denied":
		// A genuine refusal turned into a grant.
		d := sign(&wire.VerifyResponse{ID: v.ID, Result: wire.VerifyWrongCode}, backendKey, r.dev, exp)
		g := grant()
		g.Sig = d.Sig
		return g
	}
	return sign(&wire.VerifyResponse{ID: v.ID, Result: wire.VerifyWrongCode}, backendKey, r.dev, exp)
}

func startLink(t *testing.T, dev string, j *journal.Journal, cmd func(context.Context, wire.Command) wire.CommandResult) (*Link, func()) {
	return startLinkClock(t, dev, j, cmd, nil)
}

func startLinkClock(t *testing.T, dev string, j *journal.Journal, cmd func(context.Context, wire.Command) wire.CommandResult, clock func() time.Time) (*Link, func()) {
	return startLinkWith(t, Options{DeviceID: dev, Journal: j, Command: cmd, Clock: clock})
}

// startLinkWith starts a link on the test broker with o's device, journal,
// command handler, clock and refusal callback; it holds backendKey's
// public half.
func startLinkWith(t *testing.T, o Options) (*Link, func()) {
	dev, j, cmd, clock := o.DeviceID, o.Journal, o.Command, o.Clock
	key := o.ResponseKey
	if key == nil {
		key = backendKey.Public().(ed25519.PublicKey)
	}
	l, err := New(Options{URL: testenv.BrokerURL(), DeviceID: dev, ClientID: "kluisd-" + dev, Journal: j, Command: cmd, Clock: clock,
		ResponseKey: key, Refused: o.Refused, EventPace: o.EventPace, AlarmPace: o.AlarmPace,
		HeartbeatEvery: 200 * time.Millisecond, ResendAfter: 500 * time.Millisecond, Software: "test",
		Heartbeat: func(context.Context) wire.Heartbeat { return wire.Heartbeat{OfflineCache: 3} },
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	testenv.Eventually(t, "connected", l.Connected)
	return l, func() { cancel(); require.NoError(t, <-done) }
}

func event(t *testing.T, j *journal.Journal, kind wire.EventKind) string {
	ev := wire.Event{ID: wire.NewID(time.Now()), Kind: kind, At: time.Now().UTC(), Addr: &wire.Address{Board: 0, Channel: 1}}
	if kind == wire.EvAlarm || kind == wire.EvAlarmCleared {
		ev.Alarm = wire.AlarmForcedDoor
	}
	b, err := wire.Encode(&ev)
	require.NoError(t, err)
	_, err = j.AppendEvent(journal.Event{ID: ev.ID, Kind: string(kind), At: ev.At, Payload: b})
	require.NoError(t, err)
	return ev.ID
}

func TestOutboxUntilAcked(t *testing.T) {
	dev := fmt.Sprintf("lt-%d", time.Now().UnixNano())
	r := newResponder(t, dev)
	r.setAck(false)
	dir := t.TempDir()
	j, _, _, err := journal.Open(journal.Options{Dir: dir, DeviceID: dev})
	require.NoError(t, err)
	defer j.Close()
	id1 := event(t, j, wire.EvDoorOpened) // journaled while offline
	_, stop := startLink(t, dev, j, nil)
	id2 := event(t, j, wire.EvDoorClosed)
	// Not acked: republished, and still in the outbox.
	testenv.Eventually(t, "republish", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.events[id1] >= 2 && r.events[id2] >= 2 })
	require.Equal(t, 2, j.OutboxLen())
	r.setAck(true)
	testenv.Eventually(t, "acked", func() bool { return j.OutboxLen() == 0 })
	testenv.Eventually(t, "presence and heartbeat", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.hbs > 0 && len(r.pres) > 0 && r.pres[0] == wire.Online
	})
	stop()
	testenv.Eventually(t, "offline presence", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.pres[len(r.pres)-1] == wire.Offline
	})
	// The acks are durable: a reopened journal has nothing to send.
	require.NoError(t, j.Close())
	j2, _, _, err := journal.Open(journal.Options{Dir: dir, DeviceID: dev})
	require.NoError(t, err)
	defer j2.Close()
	require.Zero(t, j2.OutboxLen())
}

func TestVerifyAndCommands(t *testing.T) {
	dev := fmt.Sprintf("lv-%d", time.Now().UnixNano())
	r := newResponder(t, dev)
	j, _, _, err := journal.Open(journal.Options{Dir: t.TempDir(), DeviceID: dev})
	require.NoError(t, err)
	defer j.Close()
	var got []string
	var mu sync.Mutex
	l, stop := startLink(t, dev, j, func(_ context.Context, c wire.Command) wire.CommandResult {
		mu.Lock()
		got = append(got, c.ID)
		mu.Unlock()
		return wire.CommandResult{ID: c.ID, Status: wire.StatusDone}
	})
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := l.Verify(ctx, wire.VerifyRequest{ID: wire.NewID(time.Now()), At: time.Now().UTC(), Method: wire.MethodQR, Token: "K1.good"})
	require.NoError(t, err)
	require.Equal(t, wire.VerifyOK, res.Result)
	require.Equal(t, 3, res.Addr.Channel)
	res, err = l.Verify(ctx, wire.VerifyRequest{ID: wire.NewID(time.Now()), At: time.Now().UTC(), Method: wire.MethodQR, Token: "K1.bad"})
	require.NoError(t, err)
	require.Equal(t, wire.VerifyWrongCode, res.Result)
	// No answer in time: unavailable (the engine then verifies offline).
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	_, err = l.Verify(short, wire.VerifyRequest{ID: wire.NewID(time.Now()), At: time.Now().UTC(), Method: wire.MethodQR, Token: "K1.silent"})
	require.True(t, errors.Is(err, ErrUnavailable), "%v", err)

	// Garbage on the command topic is ignored; a valid command is handed
	// over and its result published.
	tp, _ := wire.TopicFor(dev, wire.KindCommand)
	r.c.Publish(tp, 1, false, []byte(`{"v":1,"id":"x","kind":"open"}`))
	r.c.Publish(tp, 1, false, []byte(`not json`))
	now := time.Now()
	r.pub(wire.KindCommand, &wire.Command{ID: "cmd-ok", Kind: wire.CmdOpen, Issued: now, Expires: now.Add(time.Minute), Addr: &wire.Address{}})
	testenv.Eventually(t, "command result", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.res) >= 1 })
	mu.Lock()
	require.Equal(t, []string{"cmd-ok"}, got)
	mu.Unlock()
	r.mu.Lock()
	require.Equal(t, wire.StatusDone, r.res[0].Status)
	r.mu.Unlock()
	testenv.Eventually(t, "invalid counted", func() bool { return l.mInvalid.Value() >= 2 })
}

// Without a command handler every command is rejected, and the result
// carries the link's clock, not the wall clock.
func TestCommandWithoutHandlerRejectedAtTheClock(t *testing.T) {
	dev := fmt.Sprintf("lc-%d", time.Now().UnixNano())
	r := newResponder(t, dev)
	j, _, _, err := journal.Open(journal.Options{Dir: t.TempDir(), DeviceID: dev})
	require.NoError(t, err)
	defer j.Close()
	at := time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC)
	_, stop := startLinkClock(t, dev, j, nil, func() time.Time { return at })
	defer stop()
	now := time.Now()
	r.pub(wire.KindCommand, &wire.Command{ID: "cmd-none", Kind: wire.CmdOpen, Issued: now, Expires: now.Add(time.Minute), Addr: &wire.Address{}})
	testenv.Eventually(t, "command result", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.res) >= 1 })
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Equal(t, "cmd-none", r.res[0].ID)
	require.Equal(t, wire.StatusRejected, r.res[0].Status)
	require.True(t, at.Equal(r.res[0].At), "result at %v, want the clock's %v", r.res[0].At, at)
}

// A command's result is published again every resend_after while the
// backend does not acknowledge it (a result over the backend's budget is
// not recorded, and not acknowledged), and no longer once an ack names the
// command; the ack touches no journal event.
func TestCommandResultUntilAcked(t *testing.T) {
	dev := fmt.Sprintf("lr-%d", time.Now().UnixNano())
	r := newResponder(t, dev)
	r.setAck(false)
	j, _, _, err := journal.Open(journal.Options{Dir: t.TempDir(), DeviceID: dev})
	require.NoError(t, err)
	defer j.Close()
	l, stop := startLink(t, dev, j, func(_ context.Context, c wire.Command) wire.CommandResult {
		return wire.CommandResult{ID: c.ID, Status: wire.StatusDone}
	})
	defer stop()
	results := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.res)
	}
	held := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.results.count()
	}
	now := time.Now()
	r.pub(wire.KindCommand, &wire.Command{ID: "cmd-held", Kind: wire.CmdOpen, Issued: now, Expires: now.Add(time.Minute), Addr: &wire.Address{}})
	testenv.Eventually(t, "the result sent again while not acknowledged", func() bool { return results() >= 3 })
	require.Equal(t, 1, held())
	require.GreaterOrEqual(t, l.mResultsResent.Value(), 2.0)
	r.mu.Lock()
	for _, res := range r.res {
		require.Equal(t, "cmd-held", res.ID)
		require.Equal(t, wire.StatusDone, res.Status)
	}
	r.mu.Unlock()

	r.pub(wire.KindAck, &wire.Ack{IDs: []string{"cmd-held"}})
	testenv.Eventually(t, "the acknowledged result no longer held", func() bool { return held() == 0 })
	require.Zero(t, l.mAcked.Value(), "no event acknowledged")
	testenv.Eventually(t, "the ack journaled", func() bool { return len(j.Results()) == 0 })
}

// A held result survives a restart: journaled before it was published, it
// is loaded by the next link on the reopened journal and sent once
// connected, with its first status (a command delivered again answers
// "duplicate", which is not what the backend records), until the backend
// acknowledges it; the ack is journaled, so the next restart sends
// nothing.
func TestCommandResultHeldAcrossRestart(t *testing.T) {
	dev := fmt.Sprintf("lk-%d", time.Now().UnixNano())
	r := newResponder(t, dev)
	r.setAck(false)
	dir := t.TempDir()
	j, _, _, err := journal.Open(journal.Options{Dir: dir, DeviceID: dev})
	require.NoError(t, err)
	var calls int
	var mu sync.Mutex
	cmd := func(_ context.Context, c wire.Command) wire.CommandResult {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls > 1 {
			return wire.CommandResult{ID: c.ID, Status: wire.StatusDuplicate}
		}
		return wire.CommandResult{ID: c.ID, Status: wire.StatusDone}
	}
	_, stop := startLink(t, dev, j, cmd)
	now := time.Now()
	c := &wire.Command{ID: "cmd-kept", Kind: wire.CmdOpen, Issued: now, Expires: now.Add(time.Minute), Addr: &wire.Address{}}
	r.pub(wire.KindCommand, c)
	results := func() []wire.CommandResult {
		r.mu.Lock()
		defer r.mu.Unlock()
		return append([]wire.CommandResult(nil), r.res...)
	}
	testenv.Eventually(t, "the result sent", func() bool { return len(results()) >= 1 })
	r.pub(wire.KindCommand, c) // delivered again
	testenv.Eventually(t, "the second delivery answered", func() bool { mu.Lock(); defer mu.Unlock(); return calls == 2 })
	testenv.Eventually(t, "the first result sent again", func() bool { return len(results()) >= 3 })
	stop()
	require.NoError(t, j.Close())

	j, _, _, err = journal.Open(journal.Options{Dir: dir, DeviceID: dev})
	require.NoError(t, err)
	require.Len(t, j.Results(), 1, "journaled")
	r.mu.Lock()
	r.res = nil
	r.ack = true
	r.mu.Unlock()
	l, stop := startLink(t, dev, j, cmd)
	testenv.Eventually(t, "the held result sent after the restart", func() bool { return len(results()) >= 1 })
	testenv.Eventually(t, "acknowledged", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.results.count() == 0 })
	for _, res := range results() {
		require.Equal(t, "cmd-kept", res.ID)
		require.Equal(t, wire.StatusDone, res.Status, "the first result, never the duplicate's")
	}
	testenv.Eventually(t, "the ack journaled", func() bool { return len(j.Results()) == 0 })
	stop()
	require.NoError(t, j.Close())
	j, _, _, err = journal.Open(journal.Options{Dir: dir, DeviceID: dev})
	require.NoError(t, err)
	defer j.Close()
	require.Empty(t, j.Results(), "nothing held after the ack")
}

// On the real broker, a backlog goes out a window at a time: while the
// backend acknowledges nothing, only the window's oldest events are
// published (again and again, every resend_after), never the rest; an
// alarm journaled behind them goes out at once. After a restart (the
// journal reopened: it is the truth, the window is memory) and with acks,
// everything drains, every event published.
func TestWindowedOutboxOnTheBroker(t *testing.T) {
	dev := fmt.Sprintf("lw-%d", time.Now().UnixNano())
	r := newResponder(t, dev)
	r.setAck(false)
	dir := t.TempDir()
	jo := journal.Options{Dir: dir, DeviceID: dev, Urgent: Urgent}
	j, _, _, err := journal.Open(jo)
	require.NoError(t, err)
	var ids []string
	for range 150 { // journaled while offline
		ids = append(ids, event(t, j, wire.EvDoorOpened))
	}
	const window = 40
	pace := Pace{Window: window, Rate: 1000, Burst: 1000}
	l, stop := startLinkWith(t, Options{DeviceID: dev, Journal: j, EventPace: pace})
	seen := func() (old, rest int) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for i, id := range ids {
			if r.events[id] > 0 {
				if i < window {
					old++
				} else {
					rest++
				}
			}
		}
		return old, rest
	}
	testenv.Eventually(t, "the window's oldest events published again", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, id := range ids[:window] {
			if r.events[id] < 2 {
				return false
			}
		}
		return true
	})
	alarm := event(t, j, wire.EvAlarm)
	testenv.Eventually(t, "the alarm published ahead of the backlog", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.events[alarm] > 0 })
	old, rest := seen()
	require.Equal(t, window, old)
	require.Zero(t, rest, "nothing beyond the window without an ack")
	// The gauges are set once the link has published (in flight, or
	// waiting: the backlog counts both).
	testenv.Eventually(t, "the window's gauges", func() bool {
		return l.mInFlight.WithLabelValues("event").Value() == float64(window) &&
			l.mBacklog.WithLabelValues("event").Value() == float64(len(ids)) &&
			l.mInFlight.WithLabelValues("alarm").Value() == 1 && l.mBacklog.WithLabelValues("alarm").Value() == 1
	})
	stop()
	require.NoError(t, j.Close())

	j2, _, _, err := journal.Open(jo)
	require.NoError(t, err)
	defer j2.Close()
	require.Equal(t, len(ids)+1, j2.OutboxLen(), "nothing acknowledged, nothing lost")
	r.setAck(true)
	l2, stop2 := startLinkWith(t, Options{DeviceID: dev, Journal: j2, EventPace: pace})
	defer stop2()
	testenv.Eventually(t, "drained", func() bool { return j2.OutboxLen() == 0 })
	old, rest = seen()
	require.Equal(t, len(ids), old+rest, "every event published")
	testenv.Eventually(t, "gauges at zero", func() bool {
		return l2.mInFlight.WithLabelValues("event").Value() == 0 && l2.mBacklog.WithLabelValues("event").Value() == 0
	})
}
