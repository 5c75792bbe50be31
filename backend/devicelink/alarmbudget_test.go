package devicelink

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

func alarmEvent(kind wire.EventKind, at time.Time) *wire.Event {
	return &wire.Event{ID: wire.NewID(at), Kind: kind, Alarm: wire.AlarmForcedDoor, At: at, Addr: &wire.Address{Board: 0, Channel: 2}}
}

// Alarms spend a budget of their own: a backlog over the event budget
// holds none back. The alarm budget is smaller and bounded too; an event
// that gets onto it with a first "kind" of alarm but decodes as another
// kind (a forged payload: no kluisd sends that) is neither stored nor
// acknowledged.
func TestAlarmsHaveABudgetOfTheirOwn(t *testing.T) {
	pool := newPool(t)
	clock := newTestClock()
	rec := newRecorder()
	_, url, reg := startEmbedded(t, Options{Pool: pool, Events: rec, Now: clock.Now,
		EventBudget: Budget{Rate: 1, Burst: 5}, AlarmBudget: Budget{Rate: 1, Burst: 3}})
	a := newDeviceAuth(t, url, "dev-a", "pw-dev-a")
	metric := func(family string, labels map[string]string) float64 { return metricValue(t, reg, family, labels) }
	throttled := func() float64 {
		return metric("kluis_devicelink_messages_total", map[string]string{"kind": "event", "outcome": "throttled"})
	}

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

	// A door_opened dressed as an alarm for the budget check: it spends
	// the alarm budget's last token and is refused when decoded.
	forged := fmt.Sprintf(`{"v":1,"id":"forged-1","kind":"alarm","at":%q,"addr":{"board":0,"channel":2},"kind":"door_opened"}`,
		time.Now().UTC().Format(time.RFC3339Nano))
	a.raw(wire.KindEvent, []byte(forged))
	testenv.Eventually(t, "refused as malformed", func() bool {
		return metric("kluis_devicelink_messages_total", map[string]string{"kind": "event", "outcome": "malformed"}) == 1
	})
	assert.Zero(t, a.ackCount("forged-1"))
	assert.Zero(t, countRows(t, pool, `SELECT count(*) FROM device_events WHERE event_id = 'forged-1'`))

	// The alarm budget is spent: an alarm waits like any event over
	// budget, and goes through once it refills.
	late := alarmEvent(wire.EvAlarm, time.Now())
	before := throttled()
	a.send(late)
	testenv.Eventually(t, "the alarm over the alarm budget refused", func() bool { return throttled() > before })
	assert.Zero(t, a.ackCount(late.ID))
	assert.Equal(t, 1.0, metric("kluis_devicelink_throttle_episodes_total", map[string]string{"budget": "alarm"}))
	assert.Equal(t, 1.0, metric("kluis_devicelink_devices_throttled", map[string]string{"budget": "alarm"}))
	clock.Add(time.Second)
	testenv.Eventually(t, "acknowledged once the budget refilled", func() bool { return a.ackCount(late.ID) > 0 })
	assert.Equal(t, 1, rec.count(late.ID))
}

// Command results have a budget too: over it a result is not recorded,
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
