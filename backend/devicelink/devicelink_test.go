package devicelink

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/broker/mosquittotest"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

func TestDuplicateEventAppliedOnceAckedTwice(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	rec := newRecorder()
	startLink(t, linkSetup{url: testenv.BrokerURL(), group: "kluis-test-" + randHex(4), device: dev, pool: pool, events: rec})
	d := newDevice(t, testenv.BrokerURL(), dev)

	ev := d.event(time.Now())
	b, err := wire.Encode(ev)
	require.NoError(t, err)
	d.raw(wire.KindEvent, b)
	testenv.Eventually(t, "first ack", func() bool { return d.ackCount(ev.ID) >= 1 })
	d.raw(wire.KindEvent, b)
	testenv.Eventually(t, "second ack", func() bool { return d.ackCount(ev.ID) >= 2 })

	assert.Equal(t, 1, countRows(t, pool, `SELECT count(*) FROM device_events WHERE event_id = $1 AND device_id = $2 AND outcome = 'applied'`, ev.ID, dev))
	assert.Equal(t, 1, rec.count(ev.ID))
}

func TestMalformedCountedAndIgnored(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	rec := newRecorder()
	reg := prometheus.NewRegistry()
	startLink(t, linkSetup{url: testenv.BrokerURL(), group: "kluis-test-" + randHex(4), device: dev, pool: pool, events: rec, reg: reg})
	d := newDevice(t, testenv.BrokerURL(), dev)

	now := time.Now().UTC().Format(time.RFC3339)
	for _, p := range []string{
		`not json`,
		`{"v":2,"id":"e1","kind":"door_opened","at":"` + now + `","addr":{"board":0,"channel":1}}`,
		`{"v":1,"id":"e2","kind":"door_opened","at":"` + now + `","addr":{"board":0,"channel":1},"extra":true}`,
		`{"v":1,"id":"e3","kind":"door_opened","at":"` + now + `"}`,
	} {
		d.raw(wire.KindEvent, []byte(p))
	}
	d.raw(wire.KindVerifyReq, []byte(`{"v":1,"id":"r1","method":"pin","pin":"12"}`))
	// Positive control: a valid event after the bad ones is applied and acked.
	ev := d.event(time.Now())
	d.send(ev)
	testenv.Eventually(t, "ack of the valid event", func() bool { return d.ackCount(ev.ID) >= 1 })
	testenv.Eventually(t, "malformed counted", func() bool {
		return metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "event", "outcome": "malformed"}) == 4 &&
			metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "verify/req", "outcome": "malformed"}) == 1
	})
	assert.Equal(t, 1, countRows(t, pool, `SELECT count(*) FROM device_events WHERE device_id = $1`, dev))
	assert.Equal(t, 1, rec.total())
	assert.Empty(t, d.received(wire.KindVerifyRes), "no answer to a malformed request")
	for _, id := range []string{"e1", "e2", "e3"} {
		assert.Zero(t, d.ackCount(id))
	}
}

func TestHandlerErrors(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	rec := newRecorder()
	startLink(t, linkSetup{url: testenv.BrokerURL(), group: "kluis-test-" + randHex(4), device: dev, pool: pool, events: rec})
	d := newDevice(t, testenv.BrokerURL(), dev)

	transient := d.event(time.Now())
	rejected := d.event(time.Now())
	rec.mu.Lock()
	rec.fail[transient.ID] = errTransient
	rec.fail[rejected.ID] = fmt.Errorf("document already collected: %w", ErrRejected)
	rec.mu.Unlock()

	// A transient failure is not acknowledged; the device's resend is
	// applied the second time.
	d.send(transient)
	d.send(rejected)
	testenv.Eventually(t, "both acked", func() bool { return d.ackCount(transient.ID) >= 1 && d.ackCount(rejected.ID) >= 1 })
	assert.Equal(t, 1, rec.count(transient.ID))
	assert.Equal(t, 0, rec.count(rejected.ID))
	assert.Equal(t, 1, countRows(t, pool, `SELECT count(*) FROM device_events WHERE event_id = $1 AND outcome = 'applied'`, transient.ID))
	assert.Equal(t, 1, countRows(t, pool, `SELECT count(*) FROM device_events WHERE event_id = $1 AND outcome = 'rejected' AND detail LIKE 'document already collected%'`, rejected.ID))
}

func TestTwoInstancesShareTheLoad(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	group := "kluis-test-" + randHex(4)
	rec1, rec2 := newRecorder(), newRecorder()
	startLink(t, linkSetup{url: testenv.BrokerURL(), group: group, device: dev, pool: pool, events: rec1})
	startLink(t, linkSetup{url: testenv.BrokerURL(), group: group, device: dev, pool: pool, events: rec2})
	d := newDevice(t, testenv.BrokerURL(), dev)

	const n = 40
	ids := make([]string, n)
	for i := range n {
		ev := d.event(time.Now())
		ids[i] = ev.ID
		d.send(ev)
	}
	testenv.Eventually(t, "every event acked", func() bool { return d.unacked() == 0 })
	assert.Equal(t, n, countRows(t, pool, `SELECT count(*) FROM device_events WHERE device_id = $1`, dev))
	for _, id := range ids {
		assert.Equal(t, 1, rec1.count(id)+rec2.count(id), "event %s applied once", id)
	}
	assert.Positive(t, rec1.total(), "instance 1 got work")
	assert.Positive(t, rec2.total(), "instance 2 got work")
}

func TestBrokerRestartLosesNoEvent(t *testing.T) {
	broker := mosquittotest.Start(t, mosquittotest.Options{})
	pool := newPool(t)
	dev := "t" + randHex(6)
	rec := newRecorder()
	startLink(t, linkSetup{url: broker.URL(), group: "kluis-test", device: "+", pool: pool, events: rec})
	d := newDevice(t, broker.URL(), dev)

	const n = 30
	var sent []string
	for i := range n / 2 {
		ev := d.event(time.Now())
		ev.Detail = fmt.Sprint("before ", i)
		sent = append(sent, ev.ID)
		d.send(ev)
	}
	broker.Kill() // some events are in flight, some acked, some not yet sent
	for i := range n / 2 {
		ev := d.event(time.Now())
		ev.Detail = fmt.Sprint("during ", i)
		sent = append(sent, ev.ID)
		d.send(ev) // kept in the outbox while the broker is down
	}
	broker.Start()
	testenv.Eventually(t, "every event acked after the restart", func() bool { return d.unacked() == 0 })
	assert.Equal(t, n, countRows(t, pool, `SELECT count(*) FROM device_events WHERE device_id = $1`, dev))
	for _, id := range sent {
		assert.Equal(t, 1, rec.count(id), "event %s applied once", id)
	}
}

func TestCommandsAndResults(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	l := startLink(t, linkSetup{url: testenv.BrokerURL(), group: "kluis-test-" + randHex(4), device: dev, pool: pool})
	d := newDevice(t, testenv.BrokerURL(), dev)
	ctx := context.Background()

	id, err := l.SendCommand(ctx, dev, wire.Command{Kind: wire.CmdOpen, Addr: &wire.Address{Board: 0, Channel: 4}, Reason: "ticket 12", By: "tech1"})
	require.NoError(t, err)
	testenv.Eventually(t, "command delivered", func() bool { return len(d.received(wire.KindCommand)) >= 1 })
	m, err := wire.DecodeKind(wire.KindCommand, d.received(wire.KindCommand)[0])
	require.NoError(t, err)
	cmd := m.(*wire.Command)
	assert.Equal(t, id, cmd.ID)
	assert.True(t, cmd.Expires.After(cmd.Issued))
	st, err := l.CommandStatus(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, "sent", st.Status)

	res, err := wire.Encode(&wire.CommandResult{ID: id, Status: wire.StatusDone, At: time.Now()})
	require.NoError(t, err)
	d.raw(wire.KindCmdResult, res)
	testenv.Eventually(t, "result recorded", func() bool { s, _ := l.CommandStatus(ctx, id); return s.Status == "done" })
	testenv.Eventually(t, "result acknowledged with the command's id", func() bool { return d.ackCount(id) == 1 })
	// A later duplicate result does not overwrite the first.
	dup, err := wire.Encode(&wire.CommandResult{ID: id, Status: wire.StatusDuplicate, At: time.Now()})
	require.NoError(t, err)
	d.raw(wire.KindCmdResult, dup)
	// Positive control after it: a presence message is processed.
	d.raw(wire.KindPresence, []byte(`{"v":1,"state":"online"}`))
	testenv.Eventually(t, "presence recorded", func() bool { p, err := l.Presence(ctx, dev); return err == nil && p.Online })
	st, err = l.CommandStatus(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, "done", st.Status)
	testenv.Eventually(t, "the duplicate acknowledged too", func() bool { return d.ackCount(id) == 2 })

	_, err = l.SendCommand(ctx, dev, wire.Command{Kind: wire.CmdOpen})
	assert.ErrorIs(t, err, wire.ErrInvalid, "open without address")
}

func TestVerifyAnsweredOncePerRequest(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	var calls atomic.Int32
	v := VerifierFunc(func(ctx context.Context, device string, req wire.VerifyRequest) wire.VerifyResponse {
		calls.Add(1)
		if device == dev && req.PIN == "123456" {
			return wire.VerifyResponse{Result: wire.VerifyOK, DocumentID: "doc-7", Addr: &wire.Address{Board: 1, Channel: 3}}
		}
		return wire.VerifyResponse{Result: wire.VerifyWrongCode}
	})
	startLink(t, linkSetup{url: testenv.BrokerURL(), group: "kluis-test-" + randHex(4), device: dev, pool: pool, verifier: v})
	d := newDevice(t, testenv.BrokerURL(), dev)

	req, err := wire.Encode(&wire.VerifyRequest{ID: "req-1", At: time.Now(), Method: wire.MethodPIN, PIN: "123456"})
	require.NoError(t, err)
	d.raw(wire.KindVerifyReq, req)
	d.raw(wire.KindVerifyReq, req) // a QoS 1 redelivery
	wrong, err := wire.Encode(&wire.VerifyRequest{ID: "req-2", At: time.Now(), Method: wire.MethodPIN, PIN: "999999"})
	require.NoError(t, err)
	d.raw(wire.KindVerifyReq, wrong)
	testenv.Eventually(t, "three answers", func() bool { return len(d.received(wire.KindVerifyRes)) >= 3 })

	got := map[string][]wire.VerifyResponse{}
	for _, b := range d.received(wire.KindVerifyRes) {
		m, err := wire.DecodeKind(wire.KindVerifyRes, b)
		require.NoError(t, err)
		r := m.(*wire.VerifyResponse)
		got[r.ID] = append(got[r.ID], *r)
	}
	require.Len(t, got["req-1"], 2)
	assert.Equal(t, got["req-1"][0], got["req-1"][1])
	assert.Equal(t, wire.VerifyOK, got["req-1"][0].Result)
	assert.Equal(t, "doc-7", got["req-1"][0].DocumentID)
	require.Len(t, got["req-2"], 1)
	assert.Equal(t, wire.VerifyWrongCode, got["req-2"][0].Result)
	assert.Equal(t, int32(2), calls.Load(), "the repeated request was not verified twice")
}

func TestStaffWithoutHandlerUnavailable(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	startLink(t, linkSetup{url: testenv.BrokerURL(), group: "kluis-test-" + randHex(4), device: dev, pool: pool})
	d := newDevice(t, testenv.BrokerURL(), dev)
	req, err := wire.Encode(&wire.StaffRequest{ID: "s-1", Op: wire.StaffLogin, At: time.Now(), Badge: "B-1"})
	require.NoError(t, err)
	d.raw(wire.KindStaffReq, req)
	testenv.Eventually(t, "answer", func() bool { return len(d.received(wire.KindStaffRes)) == 1 })
	m, err := wire.DecodeKind(wire.KindStaffRes, d.received(wire.KindStaffRes)[0])
	require.NoError(t, err)
	assert.Equal(t, &wire.StaffResponse{V: 1, ID: "s-1", Op: wire.StaffLogin, Result: wire.StaffUnavailable}, m)
}

func TestPresenceAndHeartbeat(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	reg := prometheus.NewRegistry()
	l := startLink(t, linkSetup{url: testenv.BrokerURL(), group: "kluis-test-" + randHex(4), device: dev, pool: pool, reg: reg})
	d := newDevice(t, testenv.BrokerURL(), dev)
	ctx := context.Background()
	online := func() float64 { return metricValue(t, reg, "kluis_devicelink_devices_online", nil) }

	d.raw(wire.KindPresence, []byte(`{"v":1,"state":"online","software":"kluisd 1.2"}`))
	testenv.Eventually(t, "online", func() bool { return online() == 1 })
	d.raw(wire.KindPresence, []byte(`{"v":1,"state":"offline"}`))
	testenv.Eventually(t, "offline", func() bool { return online() == 0 })
	p, err := l.Presence(ctx, dev)
	require.NoError(t, err)
	assert.False(t, p.Online)
	assert.Equal(t, "kluisd 1.2", p.Software)

	hb, err := wire.Encode(&wire.Heartbeat{At: time.Now(), UptimeS: 5, Backlog: 2, OfflineCache: 10})
	require.NoError(t, err)
	d.raw(wire.KindHeartbeat, hb)
	testenv.Eventually(t, "heartbeat marks online", func() bool { return online() == 1 })
	p, err = l.Presence(ctx, dev)
	require.NoError(t, err)
	assert.True(t, p.Online)
	require.NotNil(t, p.LastHeartbeatAt)
	var stored json.RawMessage
	require.NoError(t, pool.QueryRow(ctx, `SELECT heartbeat FROM device_diagnostics WHERE device_id = $1`, dev).Scan(&stored))
	assert.Contains(t, string(stored), `"backlog": 2`)
}

// observed records what a PresenceObserver is told.
type observed struct {
	mu  sync.Mutex
	got []string
}

func (o *observed) ObservePresence(device string, p wire.Presence, at time.Time) {
	o.add(fmt.Sprintf("%s presence %s %t", device, p.State, !at.IsZero()))
}

func (o *observed) ObserveHeartbeat(device string, hb wire.Heartbeat, at time.Time) {
	o.add(fmt.Sprintf("%s heartbeat v%d %t", device, hb.CacheVersion, !at.IsZero()))
}

func (o *observed) add(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, s)
}

func (o *observed) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.got...)
}

// The Observer is told of every presence and heartbeat once it is
// recorded, in arrival order, with the time it arrived; a malformed one is
// not passed on.
func TestObserverToldOfRecordedPresence(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	obs := &observed{}
	l := startLink(t, linkSetup{url: testenv.BrokerURL(), group: "kluis-test-" + randHex(4), device: dev, pool: pool, observer: obs})
	d := newDevice(t, testenv.BrokerURL(), dev)

	d.raw(wire.KindPresence, []byte(`{"v":1,"state":"online"}`))
	testenv.Eventually(t, "the presence observed", func() bool { return len(obs.list()) == 1 })
	p, err := l.Presence(context.Background(), dev)
	require.NoError(t, err, "recorded before it is observed")
	assert.True(t, p.Online)
	d.raw(wire.KindHeartbeat, []byte(`{"v":1,"state":"online"}`)) // not a heartbeat
	hb, err := wire.Encode(&wire.Heartbeat{At: time.Now(), CacheVersion: 17})
	require.NoError(t, err)
	d.raw(wire.KindHeartbeat, hb)
	testenv.Eventually(t, "the heartbeat observed", func() bool { return len(obs.list()) == 2 })
	d.raw(wire.KindPresence, []byte(`{"v":1,"state":"offline"}`))
	testenv.Eventually(t, "the offline presence observed", func() bool { return len(obs.list()) == 3 })
	assert.Equal(t, []string{dev + " presence online true", dev + " heartbeat v17 true", dev + " presence offline true"}, obs.list())
}

// An event's time is the device's clock, which reaches back (an event
// journaled offline a week ago is reported when the device is back) but
// cannot run ahead of the backend's: an event dated 9999 (a device's
// stolen password, or a real-time clock reset to a far year before NTP)
// was recorded and audited at that date, and the fleet page takes a
// device's latest alarm or alarm_cleared by that time, so one
// alarm_cleared dated 9999 hid every later alarm of the same kind and
// place from the technicians for good. An event dated more than
// wire.CommandSkew ahead is recorded and handed on at the time it
// arrived; its payload keeps what the device said.
func TestEventDatedAheadIsRecordedWhenItArrived(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	startLink(t, linkSetup{url: testenv.BrokerURL(), group: "kluis-test-" + randHex(4), device: dev, pool: pool, events: newRecorder()})
	d := newDevice(t, testenv.BrokerURL(), dev)

	now := time.Now().UTC()
	far := time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	ahead := d.event(far)
	ahead.ID = wire.NewID(now)
	slightly := d.event(now.Add(wire.CommandSkew / 2))
	weekAgo := d.event(now.Add(-7 * 24 * time.Hour))
	for _, ev := range []*wire.Event{ahead, slightly, weekAgo} {
		d.send(ev)
	}
	testenv.Eventually(t, "every event acknowledged", func() bool {
		return d.ackCount(ahead.ID) > 0 && d.ackCount(slightly.ID) > 0 && d.ackCount(weekAgo.ID) > 0
	})
	at := func(id string) (time.Time, time.Time) {
		var at, received time.Time
		require.NoError(t, pool.QueryRow(t.Context(), `SELECT at, received_at FROM device_events WHERE event_id = $1`, id).Scan(&at, &received))
		return at, received
	}
	a, received := at(ahead.ID)
	assert.Equal(t, received, a, "an event dated 9999 is recorded when it arrived")
	var said string
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT payload->>'at' FROM device_events WHERE event_id = $1`, ahead.ID).Scan(&said))
	assert.Equal(t, "9999-12-31T00:00:00Z", said, "the payload keeps the device's word")
	s, _ := at(slightly.ID)
	assert.WithinDuration(t, slightly.At, s, time.Millisecond, "within the skew: the device's time")
	w, _ := at(weekAgo.ID)
	assert.WithinDuration(t, weekAgo.At, w, time.Millisecond, "the past: the device's time")
}

// A heartbeat is decoded once (wire.DecodeKind's scanned path) and as
// strictly as before: one with a door whose addr has no channel is counted
// malformed, logged with what is wrong and not recorded; the locker's
// heartbeat after it (boards and 16 doors) is recorded whole.
func TestHeartbeatDecodedStrictly(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	reg := prometheus.NewRegistry()
	var logs testenv.SyncBuffer
	runLink(t, Options{URL: testenv.BrokerURL(), ClientID: "kluis-backend-test-" + randHex(4), ShareGroup: "kluis-test-" + randHex(4),
		DeviceFilter: dev, Pool: pool, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Registry: reg, Workers: 1})
	d := newDevice(t, testenv.BrokerURL(), dev)
	count := func(outcome string) float64 {
		return metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "heartbeat", "outcome": outcome})
	}

	at := time.Now().UTC().Format(time.RFC3339Nano)
	d.raw(wire.KindHeartbeat, []byte(`{"v":1,"at":"`+at+`","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":{"board":0},"locked":true}]}`))
	testenv.Eventually(t, "the bad heartbeat counted", func() bool { return count("malformed") == 1 })
	assert.Contains(t, logs.String(), `\"addr\" without \"channel\"`, "the log says what is wrong")
	assert.Zero(t, countRows(t, pool, `SELECT count(*) FROM device_diagnostics WHERE device_id = $1`, dev))

	h := &wire.Heartbeat{At: time.Now(), UptimeS: 60, Backlog: 1, OfflineCache: 40, CacheVersion: 7,
		Boards: []wire.BoardHealth{{Address: 0, Online: true, Firmware: "kb-2.1"}, {Address: 1, Online: true, Firmware: "kb-2.1"}}}
	for ch := range 16 {
		h.Doors = append(h.Doors, hardware.ChannelState{Addr: hardware.Address{Board: ch / 8, Channel: ch % 8}, Locked: true, ItemPresent: ch%3 == 0})
	}
	hb, err := wire.Encode(h)
	require.NoError(t, err)
	d.raw(wire.KindHeartbeat, hb)
	testenv.Eventually(t, "the heartbeat recorded", func() bool { return count("ok") == 1 })
	assert.Equal(t, 16, countRows(t, pool, `SELECT jsonb_array_length(heartbeat->'doors') FROM device_diagnostics WHERE device_id = $1`, dev))
	assert.Equal(t, float64(1), count("malformed"))
}

// An ok verification is logged at debug only (its audit row code.used and
// the metrics record it; docs/performance.md, "Sixteenth pass"); every
// other answer at info, as before.
func TestVerificationLoggedAtInfoUnlessOK(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	v := VerifierFunc(func(ctx context.Context, device string, req wire.VerifyRequest) wire.VerifyResponse {
		if req.PIN == "123456" {
			return wire.VerifyResponse{Result: wire.VerifyOK, DocumentID: "doc-7", Addr: &wire.Address{Board: 1, Channel: 3}}
		}
		return wire.VerifyResponse{Result: wire.VerifyWrongCode}
	})
	var logs testenv.SyncBuffer
	level := new(slog.LevelVar) // info
	runLink(t, Options{URL: testenv.BrokerURL(), ClientID: "kluis-backend-test-" + randHex(4), ShareGroup: "kluis-test-" + randHex(4),
		DeviceFilter: dev, Pool: pool, Verifier: v, Workers: 1, Registry: prometheus.NewRegistry(),
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: level}))})
	d := newDevice(t, testenv.BrokerURL(), dev)
	ask := func(id, pin string, answers int) {
		t.Helper()
		b, err := wire.Encode(&wire.VerifyRequest{ID: id, At: time.Now(), Method: wire.MethodPIN, PIN: pin})
		require.NoError(t, err)
		d.raw(wire.KindVerifyReq, b)
		testenv.Eventually(t, "answered", func() bool { return len(d.received(wire.KindVerifyRes)) >= answers })
	}
	ask("req-ok", "123456", 1)
	ask("req-wrong", "999999", 2)
	assert.Contains(t, logs.String(), "msg=verification part=devicelink device="+dev+" req.id=req-wrong req.method=pin req.birth_date=false result=wrong_code")
	assert.NotContains(t, logs.String(), "req-ok", "an ok is not logged at info")

	level.Set(slog.LevelDebug)
	ask("req-ok-2", "123456", 3)
	assert.Contains(t, logs.String(), "level=DEBUG msg=verification part=devicelink device="+dev+" req.id=req-ok-2 req.method=pin req.birth_date=false result=ok")
	assert.NotContains(t, logs.String(), "123456", "never the PIN")
}
