package api_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/controller/wire"
)

// A reservation's answer says what is wrong now with the device it is
// reserved on (warnings): a device named by staff is reserved whatever
// its health, and the answer tells them that it never connected, is
// offline, late, or has an open alarm that stops pickups; [] when it is
// fit to serve (an alarm that does not stop pickups is no warning).
func TestReserveAnswerWarnsOfAnUnfitDevice(t *testing.T) {
	e := newEnv(t)
	e.setupSite(1)
	staff := e.tokens[auth.RoleStaff]
	ctx := context.Background()
	pool := e.st.Pool()
	doc := e.register("591-1234567-89")
	reserve := func() []map[string]any {
		t.Helper()
		r := e.do("POST", "/api/v1/documents/"+doc.ID+"/reserve", staff, map[string]string{"device_id": "kortrijk-1"})
		require.Equal(t, 200, r.status, string(r.body))
		var v struct {
			State    string           `json:"state"`
			DeviceID string           `json:"device_id"`
			Warnings []map[string]any `json:"warnings"`
		}
		r.decode(t, &v)
		require.Equal(t, "reserved", v.State)
		require.Equal(t, "kortrijk-1", v.DeviceID)
		require.NotNil(t, v.Warnings, "warnings is a list, never absent: %s", r.body)
		r = e.do("POST", "/api/v1/documents/"+doc.ID+"/unreserve", staff, nil)
		require.Equal(t, 200, r.status, string(r.body))
		return v.Warnings
	}
	alarm := func(kind wire.AlarmKind) {
		t.Helper()
		now := time.Now().UTC()
		ev := wire.Event{V: 1, ID: wire.NewID(now), Kind: wire.EvAlarm, Alarm: kind, At: now}
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		_, err = pool.Exec(ctx, `INSERT INTO device_events (event_id, device_id, kind, at, received_at, outcome, payload)
			VALUES ($1, 'kortrijk-1', 'alarm', $2, $2, 'applied', $3)`, ev.ID, ev.At, b)
		require.NoError(t, err)
	}
	exec := func(sql string) {
		t.Helper()
		_, err := pool.Exec(ctx, sql)
		require.NoError(t, err)
	}

	require.Equal(t, []map[string]any{{"code": "device_never_connected"}}, reserve())
	exec(`INSERT INTO device_presence (device_id, state, changed_at, last_heartbeat_at) VALUES ('kortrijk-1', 'online', now(), now())`)
	require.Empty(t, reserve(), "online, on time, no alarm")
	alarm(wire.AlarmBruteForceLockout)
	require.Empty(t, reserve(), "a PIN lockout does not stop pickups")
	alarm(wire.AlarmForcedDoor)
	require.Equal(t, []map[string]any{{"code": "device_alarm", "alarm": "forced_door"}}, reserve())
	// Late: online for a while, its last heartbeat 4 minutes old (coming
	// online is a sign of life too: service.Late).
	exec(`UPDATE device_presence SET changed_at = now() - interval '10 minutes', last_heartbeat_at = now() - interval '4 minutes'`)
	require.Equal(t, []map[string]any{{"code": "device_late"}, {"code": "device_alarm", "alarm": "forced_door"}}, reserve())
	exec(`UPDATE device_presence SET state = 'offline'`)
	require.Equal(t, []map[string]any{{"code": "device_offline"}, {"code": "device_alarm", "alarm": "forced_door"}}, reserve())
}
