package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/auth"
	"kluis/controller/wire"
	"kluis/hardware"
)

// alarmEvent stores a device event as backend/devicelink does.
func (h *harness) alarmEvent(id string, ev wire.Event) {
	h.t.Helper()
	ev.ID = id
	b, err := json.Marshal(ev)
	require.NoError(h.t, err)
	_, err = h.st.Pool().Exec(context.Background(), `INSERT INTO device_events (event_id, device_id, kind, at, received_at, outcome, payload)
		VALUES ($1, 'kortrijk-1', $2, $3, $3, 'applied', $4)`, id, string(ev.Kind), ev.At, b)
	require.NoError(h.t, err)
}

// A technician lists a device's open alarms and acknowledges one with a
// note, through the real API on PostgreSQL: recorded once and audited, a
// second acknowledgement records nothing and says who did it first, a
// cleared alarm, an unknown one, a bad note and staff are refused.
func TestKluisctlAlarms(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	tech, staff := h.tokens[auth.RoleTechnician], h.tokens[auth.RoleStaff]
	now := time.Now().UTC().Truncate(time.Second)
	door := &hardware.Address{Board: 0, Channel: 1}
	board := 1
	h.alarmEvent("ev-forced", wire.Event{Kind: wire.EvAlarm, At: now.Add(-3 * time.Minute), Alarm: wire.AlarmForcedDoor, Addr: door})
	h.alarmEvent("ev-board", wire.Event{Kind: wire.EvAlarm, At: now.Add(-2 * time.Minute), Alarm: wire.AlarmBoardUnreachable, Board: &board})
	h.alarmEvent("ev-open", wire.Event{Kind: wire.EvAlarm, At: now.Add(-5 * time.Minute), Alarm: wire.AlarmDoorLeftOpen, Addr: door})
	h.alarmEvent("ev-closed", wire.Event{Kind: wire.EvAlarmCleared, At: now.Add(-time.Minute), Alarm: wire.AlarmDoorLeftOpen, Addr: door})

	code, out, errs := h.kctl(staff, "", nil, "alarms", "list", "kortrijk-1")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `(?m)^ID\s+ALARM\s+PLACE\s+AT\s+ACKNOWLEDGED\s+NOTE\s+DETAIL\n`+
		`ev-board\s+board_unreachable\s+b1\s+\S+\s+no\s+-\s+-\n`+
		`ev-forced\s+forced_door\s+b0/c1\s+\S+\s+no\s+-\s+-\n$`, out, "newest first, the cleared door left open not listed")

	code, _, errs = h.kctl(staff, "", nil, "alarms", "ack", "kortrijk-1", "ev-forced")
	assert.Equal(t, 1, code, "staff do not acknowledge")
	assert.Contains(t, errs, "forbidden")
	code, _, errs = h.kctl(tech, "", nil, "alarms", "ack", "kortrijk-1", "ev-forced", "-note", "line one\nline two")
	assert.Equal(t, 2, code, "refused before sending")
	assert.Contains(t, errs, "-note")
	code, _, errs = h.kctl(tech, "", nil, "alarms", "ack", "kortrijk-1")
	assert.Equal(t, 2, code, errs)

	code, out, errs = h.kctl(tech, "", nil, "alarms", "ack", "kortrijk-1", "ev-forced", "-note", "on my way")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "alarm ev-forced (forced_door) of kortrijk-1 acknowledged\n", out)
	code, out, errs = h.kctl(h.tokens[auth.RoleAdmin], "", nil, "alarms", "ack", "kortrijk-1", "ev-forced", "-note", "me too")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `^alarm ev-forced \(forced_door\) of kortrijk-1 was acknowledged before, by cli-technician at \S+; nothing recorded \(your note was not kept\)\n$`, out)

	code, out, errs = h.kctl(tech, "", nil, "alarms", "list", "kortrijk-1")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `(?m)^ev-board\s+board_unreachable\s+b1\s+\S+\s+no\s+-\s+-\n`+
		`ev-forced\s+forced_door\s+b0/c1\s+\S+\s+cli-technician at \S+\s+on my way\s+-\n$`, out, "not acknowledged first")
	code, out, errs = h.kctl(tech, "", nil, "-o", "json", "alarms", "list", "kortrijk-1")
	require.Equal(t, 0, code, errs)
	var list struct {
		Alarms []struct {
			ID  string `json:"id"`
			Ack *struct {
				By   string `json:"by"`
				Note string `json:"note"`
			} `json:"acknowledged"`
		} `json:"alarms"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Len(t, list.Alarms, 2)
	require.NotNil(t, list.Alarms[1].Ack)
	assert.Equal(t, "on my way", list.Alarms[1].Ack.Note)

	recs, err := audit.List(ctx, h.st.Pool(), audit.ListOptions{})
	require.NoError(t, err)
	n := 0
	for _, r := range recs {
		if r.Action == "alarm.acknowledged" {
			n++
			assert.Equal(t, "device:kortrijk-1", r.Subject)
		}
	}
	assert.Equal(t, 1, n, "audited once")

	code, _, errs = h.kctl(tech, "", nil, "alarms", "ack", "kortrijk-1", "ev-open")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "alarm_not_open")
	code, _, errs = h.kctl(tech, "", nil, "alarms", "ack", "kortrijk-1", "ev-nothing")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "alarm_not_found")
	code, _, errs = h.kctl(tech, "", nil, "alarms", "list", "nowhere")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "not_found")

	_, err = h.st.Pool().Exec(ctx, `DELETE FROM device_events`)
	require.NoError(t, err)
	code, out, errs = h.kctl(tech, "", nil, "alarms", "list", "kortrijk-1")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "kortrijk-1 has no open alarm\n", out)
}
