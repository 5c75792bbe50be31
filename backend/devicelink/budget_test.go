package devicelink

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/broker"
	"kluis/backend/store/storetest"
	"kluis/controller/journal"
	kluisdlink "kluis/controller/link"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

func newTestClock() *storetest.Clock {
	return storetest.NewClock(time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC))
}

func TestBudgetTokenBucket(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newBudgets([budgetKinds]Budget{Budget{Rate: 1, Burst: 3}, Budget{Rate: 10, Burst: 2}, Budget{Rate: 1, Burst: 1}, Budget{Rate: 1, Burst: 1}}, 10*time.Minute)
	for i := range 3 {
		assert.True(t, b.spend("a", budgetVerify, t0).ok, "burst %d", i)
	}
	v := b.spend("a", budgetVerify, t0)
	assert.False(t, v.ok)
	assert.True(t, v.started, "the first refusal begins an episode")
	assert.True(t, b.spend("b", budgetVerify, t0).ok, "another device has its own bucket")
	assert.True(t, b.spend("a", budgetEvent, t0).ok, "and so has another kind")
	assert.Equal(t, 1, b.throttled(budgetVerify, t0))
	assert.Zero(t, b.throttled(budgetEvent, t0))

	// Refilled at the rate: one token a second, never past the burst.
	assert.True(t, b.spend("a", budgetVerify, t0.Add(time.Second)).ok)
	v = b.spend("a", budgetVerify, t0.Add(time.Second))
	assert.False(t, v.ok)
	assert.False(t, v.started, "the same episode")
	assert.False(t, v.report, "logged less than a minute ago")
	v = b.spend("a", budgetVerify, t0.Add(61*time.Second).Add(-time.Millisecond))
	assert.True(t, v.ok, "59.999 s refilled 3 tokens (the burst)")
	for range 2 {
		require.True(t, b.spend("a", budgetVerify, t0.Add(61*time.Second)).ok)
	}
	v = b.spend("a", budgetVerify, t0.Add(61*time.Second))
	assert.False(t, v.ok)
	assert.True(t, v.report, "still over budget a minute later: logged again")
	assert.Equal(t, 2, v.refused, "with the refusals since the last line (at 1 s and now)")
	assert.Equal(t, t0, v.since)

	// A clock that goes back refills nothing.
	assert.False(t, b.spend("a", budgetVerify, t0).ok)

	// Quiet for 10 minutes: the episode is over, the next refusal begins
	// another; meanwhile the full buckets are swept.
	later := t0.Add(61*time.Second + 10*time.Minute)
	assert.Zero(t, b.throttled(budgetVerify, later))
	b.mu.Lock()
	b.sweepLocked(later)
	b.mu.Unlock()
	assert.Zero(t, b.size(), "full buckets without an episode are forgotten")
	for range 3 {
		require.True(t, b.spend("a", budgetVerify, later).ok)
	}
	assert.True(t, b.spend("a", budgetVerify, later).started)
}

// An injected clock set back (an hour) earns nothing for the step and
// stalls nothing: the device's next token comes a second (the rate) after
// the earlier time, not an hour later.
func TestBudgetClockSetBack(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	one := Budget{Rate: 1, Burst: 1}
	b := newBudgets([budgetKinds]Budget{one, one, one, one}, 10*time.Minute)
	require.True(t, b.spend("a", budgetEvent, t0).ok)
	back := t0.Add(-time.Hour)
	assert.False(t, b.spend("a", budgetEvent, back).ok, "the step back earned nothing")
	assert.True(t, b.spend("a", budgetEvent, back.Add(time.Second)).ok, "a second after the step back: a token")
	assert.False(t, b.spend("a", budgetEvent, back.Add(time.Second)).ok, "one, no more")
}

func TestBudgetOptionsChecked(t *testing.T) {
	pool := newPool(t)
	_, err := New(Options{Pool: pool, VerifyBudget: Budget{Rate: 0, Burst: 5}})
	assert.Error(t, err)
	_, err = New(Options{Pool: pool, EventBudget: Budget{Rate: 5}})
	assert.Error(t, err)
	l, err := New(Options{Pool: pool})
	require.NoError(t, err)
	assert.Equal(t, DefaultVerifyBudget(), l.o.VerifyBudget)
	assert.Equal(t, DefaultEventBudget(), l.o.EventBudget)
}

// startEmbedded runs a Link with o on a real embedded broker (devices log
// in with "pw-" + their id); it returns the link, the broker's URL and the
// metrics.
func startEmbedded(t *testing.T, o Options) (*Link, string, *prometheus.Registry) {
	t.Helper()
	creds := func(_ context.Context, user, pass string) (string, broker.Role, bool) {
		return user, broker.RoleDevice, pass == "pw-"+user
	}
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0", Credentials: creds, Logger: quiet()})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	reg := prometheus.NewRegistry()
	o.Embedded, o.Registry = b, reg
	if o.Logger == nil {
		o.Logger = quiet()
	}
	l := runLink(t, o)
	return l, "tcp://" + b.Addr(), reg
}

func verifyAnswers(t *testing.T, d *device) map[string][]*wire.VerifyResponse {
	t.Helper()
	got := map[string][]*wire.VerifyResponse{}
	for _, b := range d.received(wire.KindVerifyRes) {
		m, err := wire.DecodeKind(wire.KindVerifyRes, b)
		require.NoError(t, err)
		r := m.(*wire.VerifyResponse)
		got[r.ID] = append(got[r.ID], r)
	}
	return got
}

func countAnswers(got map[string][]*wire.VerifyResponse) int {
	n := 0
	for _, rs := range got {
		n += len(rs)
	}
	return n
}

// A device over its verify budget gets "unavailable", signed for it and
// its request, without the Verifier being asked (no attempt is recorded);
// another device is not held up; a repeated request id keeps its first
// answer, within budget or not; the episode is counted, logged with the
// device and audited once.
func TestVerifyOverBudgetAnsweredUnavailable(t *testing.T) {
	pool := newPool(t)
	clock := newTestClock()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	var calls sync.Map // device -> *atomic.Int32
	v := VerifierFunc(func(_ context.Context, device string, req wire.VerifyRequest) wire.VerifyResponse {
		c, _ := calls.LoadOrStore(device, new(atomic.Int32))
		c.(*atomic.Int32).Add(1)
		res := wire.VerifyResponse{ID: req.ID, Result: wire.VerifyWrongCode}
		require.NoError(t, wire.SignResponse(priv, device, &res, clock.Now().Add(time.Minute)))
		return res
	})
	called := func(device string) int32 {
		c, ok := calls.Load(device)
		if !ok {
			return 0
		}
		return c.(*atomic.Int32).Load()
	}
	logs := &testenv.SyncBuffer{}
	_, url, reg := startEmbedded(t, Options{Pool: pool, Verifier: v, Now: clock.Now,
		Logger:       slog.New(slog.NewTextHandler(logs, nil)),
		VerifyBudget: Budget{Rate: 1, Burst: 3},
		SignAnswer: func(device string, m wire.Message) error {
			return wire.SignResponse(priv, device, m, clock.Now().Add(time.Minute))
		}})
	a := newDeviceAuth(t, url, "dev-a", "pw-dev-a")
	b := newDeviceAuth(t, url, "dev-b", "pw-dev-b")

	ask := func(d *device, id string) {
		req, err := wire.Encode(&wire.VerifyRequest{ID: id, At: clock.Now(), Method: wire.MethodPIN, PIN: "123456789"})
		require.NoError(t, err)
		d.raw(wire.KindVerifyReq, req)
	}
	for i := range 6 {
		ask(a, fmt.Sprint("a-", i))
	}
	ask(a, "a-0") // a QoS 1 redelivery of an answered request, over budget
	ask(a, "a-4") // and of one answered unavailable
	for i := range 3 {
		ask(b, fmt.Sprint("b-", i))
	}
	testenv.Eventually(t, "every request answered", func() bool {
		return countAnswers(verifyAnswers(t, a)) == 8 && countAnswers(verifyAnswers(t, b)) == 3
	})
	got := verifyAnswers(t, a)
	for i := range 6 {
		id := fmt.Sprint("a-", i)
		want := wire.VerifyWrongCode
		if i >= 3 {
			want = wire.VerifyUnavailable
		}
		require.NotEmpty(t, got[id], id)
		for _, r := range got[id] {
			assert.Equal(t, want, r.Result, id)
			assert.NoError(t, wire.VerifyResponseSig(pub, "dev-a", id, r, clock.Now()), "signed for the device and request: kluisd takes it")
		}
	}
	assert.Len(t, got["a-0"], 2, "the redelivery got its first answer again")
	assert.Len(t, got["a-4"], 2)
	assert.Equal(t, int32(3), called("dev-a"), "over budget the verifier is not asked: no attempt, no hash")
	assert.Equal(t, int32(3), called("dev-b"), "another device is not throttled")
	for _, r := range verifyAnswers(t, b) {
		assert.Equal(t, wire.VerifyWrongCode, r[0].Result)
	}
	// Counted per outcome, no device label.
	assert.Equal(t, 3.0, metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "verify/req", "outcome": "throttled"}))
	assert.Equal(t, 2.0, metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "verify/req", "outcome": "duplicate"}))
	assert.Equal(t, 1.0, metricValue(t, reg, "kluis_devicelink_throttle_episodes_total", map[string]string{"budget": "verify"}))
	assert.Equal(t, 1.0, metricValue(t, reg, "kluis_devicelink_devices_throttled", map[string]string{"budget": "verify"}))
	assert.Zero(t, metricValue(t, reg, "kluis_devicelink_devices_throttled", map[string]string{"budget": "event"}))
	// Audited once for the episode, naming the device.
	throttledAudits := func(dev string) int {
		return countRows(t, pool, `SELECT count(*) FROM audit_pending WHERE action = 'device.throttled' AND subject = $1 AND actor = 'system'`, "device:"+dev)
	}
	testenv.Eventually(t, "episode audited", func() bool { return throttledAudits("dev-a") == 1 })
	assert.Zero(t, throttledAudits("dev-b"))
	assert.Equal(t, 1, strings.Count(logs.String(), "device over its budget"), "warned once")
	assert.Contains(t, logs.String(), "device=dev-a")

	// A second later one more is verified; still the same episode.
	clock.Add(time.Second)
	ask(a, "a-6")
	testenv.Eventually(t, "answered", func() bool { return len(verifyAnswers(t, a)["a-6"]) == 1 })
	assert.Equal(t, wire.VerifyWrongCode, verifyAnswers(t, a)["a-6"][0].Result)
	ask(a, "a-7")
	testenv.Eventually(t, "answered", func() bool { return len(verifyAnswers(t, a)["a-7"]) == 1 })
	assert.Equal(t, wire.VerifyUnavailable, verifyAnswers(t, a)["a-7"][0].Result)
	assert.Equal(t, 1.0, metricValue(t, reg, "kluis_devicelink_throttle_episodes_total", map[string]string{"budget": "verify"}))

	// Staff requests share the budget: over it, "unavailable" with the op.
	sreq, err := wire.Encode(&wire.StaffRequest{ID: "s-1", Op: wire.StaffLogin, At: clock.Now(), Badge: "B-1"})
	require.NoError(t, err)
	a.raw(wire.KindStaffReq, sreq)
	testenv.Eventually(t, "staff answer", func() bool { return len(a.received(wire.KindStaffRes)) == 1 })
	m, err := wire.DecodeKind(wire.KindStaffRes, a.received(wire.KindStaffRes)[0])
	require.NoError(t, err)
	sr := m.(*wire.StaffResponse)
	assert.Equal(t, wire.StaffUnavailable, sr.Result)
	assert.Equal(t, wire.StaffLogin, sr.Op)
	assert.NoError(t, wire.VerifyResponseSig(pub, "dev-a", "s-1", sr, clock.Now()))

	// Quiet for the episode's end, then over budget again: a new episode.
	clock.Add(DefaultThrottleQuiet + time.Second)
	assert.Zero(t, metricValue(t, reg, "kluis_devicelink_devices_throttled", map[string]string{"budget": "verify"}))
	for i := range 4 {
		ask(a, fmt.Sprint("c-", i))
	}
	testenv.Eventually(t, "second episode audited", func() bool { return throttledAudits("dev-a") == 2 })
	assert.Equal(t, 2.0, metricValue(t, reg, "kluis_devicelink_throttle_episodes_total", map[string]string{"budget": "verify"}))
}

// Events over a device's budget are neither stored nor acknowledged; the
// device's resends deliver them once the budget refills: none lost, each
// applied once. Another device's events go through meanwhile.
func TestEventsOverBudgetDeliveredLater(t *testing.T) {
	pool := newPool(t)
	clock := newTestClock()
	rec := newRecorder()
	_, url, reg := startEmbedded(t, Options{Pool: pool, Events: rec, Now: clock.Now, EventBudget: Budget{Rate: 1, Burst: 5}})
	a := newDeviceAuth(t, url, "dev-a", "pw-dev-a")
	b := newDeviceAuth(t, url, "dev-b", "pw-dev-b")

	const n = 20
	var ids []string
	for range n {
		ev := a.event(time.Now())
		ids = append(ids, ev.ID)
		a.send(ev) // kept until acknowledged, resent every 200 ms
	}
	throttled := func() float64 {
		return metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "event", "outcome": "throttled"})
	}
	rows := func() int { return countRows(t, pool, `SELECT count(*) FROM device_events WHERE device_id = 'dev-a'`) }
	// Every event was seen: five within budget (fewer distinct ones when
	// a resend of an event not yet acknowledged took a token), the rest
	// refused, and refused again when resent: the clock stands still.
	testenv.Eventually(t, "the events over budget refused", func() bool { return throttled() >= n-5 })
	testenv.Eventually(t, "the stored ones acknowledged", func() bool { r := rows(); return r > 0 && a.unacked() == n-r })
	assert.LessOrEqual(t, rows(), 5, "no more than the burst stored")

	ev := b.event(time.Now())
	b.send(ev)
	testenv.Eventually(t, "another device's event acknowledged", func() bool { return b.ackCount(ev.ID) == 1 })

	// The budget refills, at most the burst at a time; the device's
	// resends deliver the rest, a few each time.
	for step := 0; a.unacked() > 0; step++ {
		require.Less(t, step, 4*n, "the backlog does not drain")
		before := throttled()
		clock.Add(10 * time.Second)
		// Until the bucket is empty again (a refusal) or nothing is left.
		testenv.Eventually(t, "the refilled budget spent", func() bool { return throttled() > before || a.unacked() == 0 })
	}
	assert.Equal(t, n, rows())
	for _, id := range ids {
		assert.Equal(t, 1, rec.count(id), "applied once")
		assert.GreaterOrEqual(t, a.ackCount(id), 1)
	}
	assert.Equal(t, 1.0, metricValue(t, reg, "kluis_devicelink_throttle_episodes_total", map[string]string{"budget": "event"}))
	testenv.Eventually(t, "episode audited", func() bool {
		return countRows(t, pool, `SELECT count(*) FROM audit_pending WHERE action = 'device.throttled' AND subject = 'device:dev-a'
			AND details->>'budget' = 'event'`) == 1
	})
}

// kluisd's own link (controller/link) with its journal replays a backlog
// longer than the event budget's burst. Paced under the budget (as
// kluisd's default pace is under the default budget), nothing is refused;
// paced over it (a misconfigured device), the refused events are sent
// again later. Either way every event is applied once and acknowledged,
// the journal's outbox empty.
func TestJournalReplayDrainsOverBudget(t *testing.T) {
	for _, c := range []struct {
		name      string
		pace      kluisdlink.Pace
		throttled bool
	}{
		{"paced under the budget", kluisdlink.Pace{Window: 50, Rate: 40, Burst: 80}, false},
		{"paced over the budget", kluisdlink.Pace{Window: 300, Rate: 1000, Burst: 1000}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			pool := newPool(t)
			rec := newRecorder()
			_, url, reg := startEmbedded(t, Options{Pool: pool, Events: rec, EventBudget: Budget{Rate: 50, Burst: 100}})
			j, _, _, err := journal.Open(journal.Options{Dir: t.TempDir(), DeviceID: "dev-r", Urgent: kluisdlink.Urgent})
			require.NoError(t, err)
			t.Cleanup(func() { _ = j.Close() })
			const n = 200
			var ids []string
			for range n { // journaled while the device was offline
				ev := wire.Event{ID: wire.NewID(time.Now()), Kind: wire.EvDoorOpened, At: time.Now().UTC(), Addr: &wire.Address{Board: 0, Channel: 1}}
				b, err := wire.Encode(&ev)
				require.NoError(t, err)
				_, err = j.AppendEvent(journal.Event{ID: ev.ID, Kind: string(ev.Kind), At: ev.At, Payload: b})
				require.NoError(t, err)
				ids = append(ids, ev.ID)
			}
			kl, err := kluisdlink.New(kluisdlink.Options{URL: url, DeviceID: "dev-r", Username: "dev-r", Password: "pw-dev-r",
				Journal: j, ResendAfter: 300 * time.Millisecond, HeartbeatEvery: time.Hour, Software: "test", EventPace: c.pace,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- kl.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })

			testenv.Eventually(t, "the journal drained", func() bool { return j.OutboxLen() == 0 })
			assert.Equal(t, n, countRows(t, pool, `SELECT count(*) FROM device_events WHERE device_id = 'dev-r'`))
			for _, id := range ids {
				assert.Equal(t, 1, rec.count(id), "applied once")
			}
			throttled := metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "event", "outcome": "throttled"})
			if c.throttled {
				assert.Greater(t, throttled, 0.0, "the replay went over the budget (and drained all the same)")
			} else {
				assert.Zero(t, throttled, "paced under the budget, nothing refused")
			}
		})
	}
}

// docs/security.md and docs/asyncapi.yaml state the default budgets.
func TestDocsStateTheDefaultBudgets(t *testing.T) {
	rate := func(r float64) string { return strconv.FormatFloat(r, 'f', -1, 64) }
	sec, err := os.ReadFile("../../docs/security.md")
	require.NoError(t, err)
	assert.Contains(t, string(sec), fmt.Sprintf("| verify | %s a second, %d at once |", rate(DefaultVerifyRate), DefaultVerifyBurst))
	assert.Contains(t, string(sec), fmt.Sprintf("| event | %s a second, %d at once |", rate(DefaultEventRate), DefaultEventBurst))
	assert.Contains(t, string(sec), fmt.Sprintf("| alarm | %s a second, %d at once |", rate(DefaultAlarmRate), DefaultAlarmBurst))
	assert.Contains(t, string(sec), fmt.Sprintf("| cmdres | %s a second, %d at once |", rate(DefaultResultRate), DefaultResultBurst))
	assert.Contains(t, strings.Join(strings.Fields(string(sec)), " "),
		fmt.Sprintf("(a refusal after %d minutes without one)", int(DefaultThrottleQuiet/time.Minute)))
	api, err := os.ReadFile("../../docs/asyncapi.yaml")
	require.NoError(t, err)
	flat := strings.Join(strings.Fields(string(api)), " ")
	assert.Contains(t, flat, fmt.Sprintf("defaults: %s verify and staff requests a second together, %d at once; %s events a second, %d at once; alarms apart, %s a second, %d at once; command results %s a second, %d at once",
		rate(DefaultVerifyRate), DefaultVerifyBurst, rate(DefaultEventRate), DefaultEventBurst,
		rate(DefaultAlarmRate), DefaultAlarmBurst, rate(DefaultResultRate), DefaultResultBurst))
}

// A Budget is a flag.Value: RATE/BURST.
func TestBudgetFlag(t *testing.T) {
	var b Budget
	require.NoError(t, b.Set("0.5/20"))
	assert.Equal(t, Budget{Rate: 0.5, Burst: 20}, b)
	assert.Equal(t, "0.5/20", b.String())
	d := DefaultVerifyBudget()
	assert.Equal(t, "2/60", d.String())
	for _, bad := range []string{"", "2", "2/", "/60", "0/60", "-1/60", "NaN/60", "2/0", "2/1.5", "x/y"} {
		assert.Error(t, b.Set(bad), bad)
	}
	assert.Equal(t, Budget{Rate: 0.5, Burst: 20}, b, "unchanged by a bad value")
}

// BenchmarkBudgetSpend is one budget check (docs/performance.md): 1,000
// devices, never over budget.
func BenchmarkBudgetSpend(b *testing.B) {
	bud := newBudgets([budgetKinds]Budget{Budget{Rate: 1e9, Burst: 1 << 30}, DefaultEventBudget(), DefaultAlarmBudget(), DefaultResultBudget()}, DefaultThrottleQuiet)
	devs := make([]string, 1000)
	for i := range devs {
		devs[i] = fmt.Sprintf("dev-%04d", i)
	}
	now := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bud.spend(devs[i%len(devs)], budgetVerify, now)
	}
}

func alarmEvent(kind wire.EventKind, at time.Time) *wire.Event {
	return &wire.Event{ID: wire.NewID(at), Kind: kind, Alarm: wire.AlarmForcedDoor, At: at, Addr: &wire.Address{Board: 0, Channel: 2}}
}

// Alarms spend a budget of their own: a backlog over the event budget
// holds none back. The alarm budget is smaller and bounded too; an event
// that gets onto it with a first "kind" of alarm but decodes as another
// kind (a forged payload: no kluisd sends that) is neither stored nor
// acknowledged. The clock stands still: no budget refills unless the test
// moves it.
func TestAlarmsHaveABudgetOfTheirOwn(t *testing.T) {
	pool := newPool(t)
	clock := newTestClock()
	rec := newRecorder()
	const alarmBurst = 10
	_, url, reg := startEmbedded(t, Options{Pool: pool, Events: rec, Now: clock.Now,
		EventBudget: Budget{Rate: 1, Burst: 5}, AlarmBudget: Budget{Rate: 1, Burst: alarmBurst}})
	a := newDeviceAuth(t, url, "dev-a", "pw-dev-a")
	metric := func(family string, labels map[string]string) float64 { return metricValue(t, reg, family, labels) }
	throttled := func() float64 {
		return metric("kluis_devicelink_messages_total", map[string]string{"kind": "event", "outcome": "throttled"})
	}

	// A door_opened dressed as an alarm for the budget check: it spends
	// an alarm token and is refused when decoded.
	forged := fmt.Sprintf(`{"v":1,"id":"forged-1","kind":"alarm","at":%q,"addr":{"board":0,"channel":2},"kind":"door_opened"}`,
		time.Now().UTC().Format(time.RFC3339Nano))
	a.raw(wire.KindEvent, []byte(forged))
	testenv.Eventually(t, "refused as malformed", func() bool {
		return metric("kluis_devicelink_messages_total", map[string]string{"kind": "event", "outcome": "malformed"}) == 1
	})
	assert.Zero(t, a.ackCount("forged-1"))
	assert.Zero(t, countRows(t, pool, `SELECT count(*) FROM device_events WHERE event_id = 'forged-1'`))

	for range 20 {
		a.send(a.event(time.Now()))
	}
	testenv.Eventually(t, "the backlog over the event budget", func() bool { return throttled() >= 15 })

	alarm, cleared := alarmEvent(wire.EvAlarm, time.Now()), alarmEvent(wire.EvAlarmCleared, time.Now())
	a.send(alarm)
	a.send(cleared)
	testenv.Eventually(t, "the alarm and its clearing acknowledged, the event budget spent", func() bool {
		return a.ackCount(alarm.ID) > 0 && a.ackCount(cleared.ID) > 0
	})
	assert.Equal(t, 1, rec.count(alarm.ID))
	assert.Equal(t, 1, rec.count(cleared.ID))
	assert.Zero(t, metric("kluis_devicelink_throttle_episodes_total", map[string]string{"budget": "alarm"}))

	// A flood of alarms (published once each) spends the alarm budget;
	// then an alarm waits like any event over budget, and goes through
	// once the budget refills.
	before := throttled()
	for range alarmBurst {
		b, err := wire.Encode(alarmEvent(wire.EvAlarm, time.Now()))
		require.NoError(t, err)
		a.raw(wire.KindEvent, b)
	}
	testenv.Eventually(t, "the alarm budget spent", func() bool { return throttled() > before })
	late := alarmEvent(wire.EvAlarm, time.Now())
	before = throttled()
	a.send(late)
	testenv.Eventually(t, "the alarm over the alarm budget refused", func() bool { return throttled() > before })
	assert.Zero(t, a.ackCount(late.ID))
	assert.Equal(t, 1.0, metric("kluis_devicelink_throttle_episodes_total", map[string]string{"budget": "alarm"}))
	assert.Equal(t, 1.0, metric("kluis_devicelink_devices_throttled", map[string]string{"budget": "alarm"}))
	clock.Add(time.Second)
	testenv.Eventually(t, "acknowledged once the budget refilled", func() bool { return a.ackCount(late.ID) > 0 })
	assert.Equal(t, 1, rec.count(late.ID))
}

// Command results have a budget too: over it a result is neither recorded
// nor acknowledged,
// counted as throttled, and the episode counted once.
func TestCommandResultsOverBudget(t *testing.T) {
	pool := newPool(t)
	clock := newTestClock()
	_, url, reg := startEmbedded(t, Options{Pool: pool, Events: newRecorder(), Now: clock.Now, ResultBudget: Budget{Rate: 1, Burst: 2}})
	a := newDeviceAuth(t, url, "dev-a", "pw-dev-a")
	for i := range 5 {
		b, err := wire.Encode(&wire.CommandResult{ID: fmt.Sprint("cmd-", i), Status: wire.StatusDone, At: clock.Now()})
		require.NoError(t, err)
		a.raw(wire.KindCmdResult, b)
	}
	count := func(outcome string) float64 {
		return metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "cmdres", "outcome": outcome})
	}
	testenv.Eventually(t, "every result seen", func() bool { return count("throttled")+count("unknown") == 5 })
	assert.Equal(t, 3.0, count("throttled"))
	assert.Equal(t, 2.0, count("unknown"), "within budget: looked up (no such command)")
	assert.Equal(t, 1.0, metricValue(t, reg, "kluis_devicelink_throttle_episodes_total", map[string]string{"budget": "cmdres"}))
	// Looked up, acknowledged (sending it again would not help); over
	// budget, not acknowledged: the device sends those again.
	testenv.Eventually(t, "the results within budget acknowledged", func() bool { return a.ackCount("cmd-0") == 1 && a.ackCount("cmd-1") == 1 })
	for i := 2; i < 5; i++ {
		assert.Zero(t, a.ackCount(fmt.Sprint("cmd-", i)), "over budget: not acknowledged")
	}
	// Sent again as the budget refills (2 at once): taken and acknowledged.
	for _, ids := range [][]string{{"cmd-2", "cmd-3"}, {"cmd-4"}} {
		clock.Set(clock.Now().Add(2 * time.Second))
		for _, id := range ids {
			b, err := wire.Encode(&wire.CommandResult{ID: id, Status: wire.StatusDone, At: clock.Now()})
			require.NoError(t, err)
			a.raw(wire.KindCmdResult, b)
		}
		testenv.Eventually(t, "the results sent again acknowledged", func() bool {
			for _, id := range ids {
				if a.ackCount(id) != 1 {
					return false
				}
			}
			return true
		})
	}
	assert.Equal(t, 3.0, count("throttled"), "none refused again")
}

// The budgets hold on the Mosquitto path too (the backend attached to
// Mosquitto through its shared subscription, not to its embedded broker):
// events over budget are neither stored nor acknowledged, an alarm still
// goes through, and the device's resends deliver the rest once the budget
// refills, each applied once.
func TestBudgetOnMosquitto(t *testing.T) {
	pool := newPool(t)
	clock := newTestClock()
	rec := newRecorder()
	reg := prometheus.NewRegistry()
	dev := "mb-" + randHex(6)
	runLink(t, Options{URL: testenv.BrokerURL(), ClientID: "kluis-backend-test-" + randHex(4), ShareGroup: "kluis-test-" + randHex(4),
		DeviceFilter: dev, Pool: pool, Events: rec, Logger: quiet(), Registry: reg, Workers: 3, Now: clock.Now,
		EventBudget: Budget{Rate: 1, Burst: 3}, AlarmBudget: Budget{Rate: 1, Burst: 2}})
	d := newDevice(t, testenv.BrokerURL(), dev)
	var ids []string
	for range 8 {
		ev := d.event(time.Now())
		ids = append(ids, ev.ID)
		d.send(ev)
	}
	throttled := func() float64 {
		return metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "event", "outcome": "throttled"})
	}
	testenv.Eventually(t, "the events over budget refused", func() bool { return throttled() >= 5 })
	rows := func() int {
		return countRows(t, pool, `SELECT count(*) FROM device_events WHERE device_id = $1`, dev)
	}
	testenv.Eventually(t, "the stored ones acknowledged", func() bool { r := rows(); return r == 3 && d.unacked() == 5 })
	alarm := alarmEvent(wire.EvAlarm, time.Now())
	d.send(alarm)
	testenv.Eventually(t, "the alarm acknowledged all the same", func() bool { return d.ackCount(alarm.ID) > 0 })
	assert.Equal(t, 1.0, metricValue(t, reg, "kluis_devicelink_throttle_episodes_total", map[string]string{"budget": "event"}))

	for step := 0; d.unacked() > 0; step++ {
		require.Less(t, step, 20, "the backlog does not drain")
		clock.Add(3 * time.Second)
		before := throttled()
		testenv.Eventually(t, "the refilled budget spent", func() bool { return throttled() > before || d.unacked() == 0 })
	}
	assert.Equal(t, len(ids)+1, rows())
	for _, id := range append(ids, alarm.ID) {
		assert.Equal(t, 1, rec.count(id), "applied once")
	}
}
