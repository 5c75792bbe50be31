package service_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/alarms"
	"kluis/backend/lifecycle"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/controller/wire"
)

// presence writes a device's presence row as the device link does.
func (e *env) presence(id, state string) {
	e.t.Helper()
	_, err := e.st.Pool().Exec(e.ctx, `INSERT INTO device_presence (device_id, state, changed_at) VALUES ($1, $2, $3)
		ON CONFLICT (device_id) DO UPDATE SET state = $2, changed_at = $3`, id, state, e.clock.Now())
	require.NoError(e.t, err)
}

// The automatic choice never sends a holder to a machine that cannot
// open: a device that never connected ("a-never", first by id) and one
// offline now are skipped for the online one; with none online the
// reservation is refused with ErrNoOnlineDevice; naming a device still
// reserves there, online or not.
func TestAutoPickOnlyOnlineDevices(t *testing.T) {
	e := newEnv(t, func(o *service.Options) { o.PickOnlineOnly = true })
	e.device("a-never", uniform(2, store.SizeS, 150)...)
	e.device("b-offline", uniform(2, store.SizeS, 150)...)
	e.device("c-online", uniform(1, store.SizeS, 150)...)
	e.presence("b-offline", "offline")
	e.presence("c-online", "online")

	d1, err := e.svc.Reserve(e.ctx, "user:counter1", e.register(store.EID, false).ID, service.ReserveOptions{})
	require.NoError(t, err)
	require.Equal(t, "c-online", d1.DeviceID, "online device chosen over never-seen and offline ones")

	// c-online is full now: refuse rather than pick a broken device.
	doc := e.register(store.EID, false)
	_, err = e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{})
	require.ErrorIs(t, err, service.ErrNoOnlineDevice)
	require.ErrorIs(t, err, service.ErrNoCompartment)
	require.ErrorIs(t, err, service.ErrConflict)
	got, err := e.svc.GetDocument(e.ctx, doc.ID)
	require.NoError(t, err)
	require.Equal(t, lifecycle.Registered, got.State)
	require.Empty(t, got.DeviceID)

	// The offline device comes back: it is chosen, deterministically.
	e.presence("b-offline", "online")
	d2, err := e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{})
	require.NoError(t, err)
	require.Equal(t, "b-offline", d2.DeviceID)
	require.Equal(t, 1, e.compartment(d2.CompartmentID).Number)

	// Staff naming a device get it, even one that never connected.
	d3, err := e.svc.Reserve(e.ctx, "user:counter1", e.register(store.EID, false).ID, service.ReserveOptions{DeviceID: "a-never"})
	require.NoError(t, err)
	require.Equal(t, "a-never", d3.DeviceID)

	// Out of service is never chosen, even online.
	e.presence("a-never", "online")
	_, err = e.svc.SetDeviceOutOfService(e.ctx, "user:admin", "a-never", true, "repair")
	require.NoError(t, err)
	d4, err := e.svc.Reserve(e.ctx, "user:counter1", e.register(store.EID, false).ID, service.ReserveOptions{})
	require.NoError(t, err)
	require.Equal(t, "b-offline", d4.DeviceID)
}

// heartbeat records a heartbeat of an online device at the service clock.
func (e *env) heartbeat(id string) {
	e.t.Helper()
	_, err := e.st.Pool().Exec(e.ctx, `INSERT INTO device_presence (device_id, state, changed_at, last_heartbeat_at) VALUES ($1, 'online', $2, $2)
		ON CONFLICT (device_id) DO UPDATE SET state = 'online', last_heartbeat_at = $2`, id, e.clock.Now())
	require.NoError(e.t, err)
}

// alarm stores a device's alarm (or, with cleared, its clearing) as the
// device link does, raised at the service clock.
func (e *env) alarm(id string, kind wire.AlarmKind, cleared bool) {
	e.t.Helper()
	ev := wire.Event{V: 1, ID: wire.NewID(e.clock.Now()), Kind: wire.EvAlarm, Alarm: kind, At: e.clock.Now()}
	if cleared {
		ev.Kind = wire.EvAlarmCleared
	}
	b, err := json.Marshal(ev)
	require.NoError(e.t, err)
	_, err = e.st.Pool().Exec(e.ctx, `INSERT INTO device_events (event_id, device_id, kind, at, received_at, outcome, payload)
		VALUES ($1, $2, $3, $4, $4, 'applied', $5)`, ev.ID, id, string(ev.Kind), ev.At, b)
	require.NoError(e.t, err)
}

// The automatic choice skips a device whose heartbeat is late and one
// with an open alarm that stops pickups (each blocking kind in turn, on
// "a-alarm", first by id and with the smallest compartment), takes one
// with only another alarm (a brute-force lockout) last, after a healthy
// device even with a larger compartment, and refuses when only unfit
// devices have room; naming an unfit device still reserves there, and
// DeviceHealth says what is wrong with it.
func TestAutoPickSkipsLateAndAlarmedDevices(t *testing.T) {
	e := newEnv(t, func(o *service.Options) { o.PickOnlineOnly = true })
	e.device("a-alarm", uniform(4, store.SizeS, 150)...)
	e.device("b-late", uniform(4, store.SizeS, 150)...)
	e.device("c-lockout", uniform(4, store.SizeS, 150)...)
	e.device("d-healthy", uniform(1, store.SizeM, 150)...)
	for _, id := range []string{"a-alarm", "b-late", "c-lockout", "d-healthy"} {
		e.heartbeat(id)
	}
	reserve := func(device string) (store.Document, error) {
		t.Helper()
		return e.svc.Reserve(e.ctx, "user:counter1", e.register(store.EID, false).ID, service.ReserveOptions{DeviceID: device})
	}

	// Four minutes without a heartbeat from b-late; the others beat.
	e.clock.Add(4 * time.Minute)
	for _, id := range []string{"a-alarm", "c-lockout", "d-healthy"} {
		e.heartbeat(id)
	}
	e.alarm("c-lockout", wire.AlarmBruteForceLockout, false)
	for _, k := range []wire.AlarmKind{wire.AlarmForcedDoor, wire.AlarmDoorLeftOpen, wire.AlarmBoardUnreachable,
		wire.AlarmBoardRebooting, wire.AlarmJournalFull, wire.AlarmMechanismFault} {
		e.alarm("a-alarm", k, false)
		h, err := e.svc.DeviceHealth(e.ctx, "a-alarm")
		require.NoError(t, err)
		require.Equal(t, []wire.AlarmKind{k}, h["a-alarm"].Blocking)
		require.Equal(t, []service.Warning{{Code: "device_alarm", Alarm: k}}, h["a-alarm"].Warnings())
		d, err := reserve("")
		require.NoError(t, err)
		require.Equal(t, "d-healthy", d.DeviceID, "%s: the healthy device, though its compartment is larger", k)
		_, err = e.svc.Unreserve(e.ctx, "user:counter1", d.ID)
		require.NoError(t, err)
		if alarms.Clearable(k) {
			e.clock.Add(time.Second)
			e.alarm("a-alarm", k, true)
		} else {
			e.clock.Add(alarms.OneShot + time.Minute) // a one-shot alarm closes after a day
			for _, id := range []string{"a-alarm", "c-lockout", "d-healthy"} {
				e.heartbeat(id)
			}
			e.alarm("c-lockout", wire.AlarmBruteForceLockout, false)
		}
	}
	h, err := e.svc.DeviceHealth(e.ctx, "a-alarm", "b-late", "c-lockout", "d-healthy", "e-unknown")
	require.NoError(t, err)
	require.True(t, h["a-alarm"].Fit(), "%+v", h["a-alarm"])
	require.Equal(t, []service.Warning{{Code: "device_late"}}, h["b-late"].Warnings())
	require.True(t, h["c-lockout"].Fit())
	require.Equal(t, []wire.AlarmKind{wire.AlarmBruteForceLockout}, h["c-lockout"].Other)
	require.Empty(t, h["c-lockout"].Warnings(), "an alarm that does not stop pickups is no warning")
	require.Equal(t, []service.Warning{{Code: "device_never_connected"}}, h["e-unknown"].Warnings())

	// a-alarm is healthy again: it is chosen (first by id, smallest).
	d, err := reserve("")
	require.NoError(t, err)
	require.Equal(t, "a-alarm", d.DeviceID)
	_, err = e.svc.Unreserve(e.ctx, "user:counter1", d.ID)
	require.NoError(t, err)
	e.alarm("a-alarm", wire.AlarmForcedDoor, false)
	d, err = reserve("")
	require.NoError(t, err)
	require.Equal(t, "d-healthy", d.DeviceID)
	// d-healthy is full; a-alarm has a forced door, b-late is late:
	// c-lockout, with an alarm that does not stop pickups, comes last.
	d, err = reserve("")
	require.NoError(t, err)
	require.Equal(t, "c-lockout", d.DeviceID)
	for i := 0; i < 3; i++ {
		_, err = reserve("")
		require.NoError(t, err)
	}
	// Only unfit devices have room: refused.
	_, err = reserve("")
	require.ErrorIs(t, err, service.ErrNoOnlineDevice)

	// Named by hand: reserved there, late or alarmed.
	d, err = reserve("b-late")
	require.NoError(t, err)
	require.Equal(t, "b-late", d.DeviceID)
	d, err = reserve("a-alarm")
	require.NoError(t, err)
	require.Equal(t, "a-alarm", d.DeviceID)

	// b-late beats again: it is chosen.
	e.heartbeat("b-late")
	d, err = reserve("")
	require.NoError(t, err)
	require.Equal(t, "b-late", d.DeviceID)
}

// Coming online is a sign of life: a device back after an outage longer
// than LateAfter is not late before its first heartbeat (up to 30 s
// later), and is late again only when neither its coming online nor a
// heartbeat is recent.
func TestBackOnlineIsNotLate(t *testing.T) {
	e := newEnv(t, func(o *service.Options) { o.PickOnlineOnly = true })
	e.device("a-back", uniform(1, store.SizeS, 150)...)
	e.heartbeat("a-back")
	e.clock.Add(time.Minute)
	e.presence("a-back", "offline")
	e.clock.Add(10 * time.Minute)
	e.presence("a-back", "online")
	h, err := e.svc.DeviceHealth(e.ctx, "a-back")
	require.NoError(t, err)
	require.False(t, h["a-back"].Late, "just back online, its heartbeat 10 minutes old: not late")
	require.True(t, h["a-back"].Fit())
	d, err := e.svc.Reserve(e.ctx, "user:counter1", e.register(store.EID, false).ID, service.ReserveOptions{})
	require.NoError(t, err)
	require.Equal(t, "a-back", d.DeviceID)
	e.clock.Add(service.LateAfter + time.Second)
	h, err = e.svc.DeviceHealth(e.ctx, "a-back")
	require.NoError(t, err)
	require.True(t, h["a-back"].Late, "online for longer than LateAfter without a heartbeat: late")
}

func TestLate(t *testing.T) {
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	for _, c := range []struct {
		name      string
		online    bool
		since     time.Duration
		heartbeat *time.Time
		late      bool
	}{
		{"offline is never late", false, time.Hour, ago(time.Hour), false},
		{"online long ago, no heartbeat", true, time.Hour, nil, true},
		{"just online, no heartbeat", true, time.Minute, nil, false},
		{"recent heartbeat", true, time.Hour, ago(time.Minute), false},
		{"old heartbeat, online long ago", true, time.Hour, ago(service.LateAfter + time.Second), true},
		{"old heartbeat, just back online", true, time.Second, ago(time.Hour), false},
		{"exactly LateAfter is not late", true, service.LateAfter, ago(service.LateAfter), false},
	} {
		require.Equal(t, c.late, service.Late(c.online, now.Add(-c.since), c.heartbeat, now), c.name)
	}
}
