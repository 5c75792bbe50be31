package web_test

import (
	"context"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/api/apiclient"
	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/web"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// raise has the device send ev (an alarm or its clearing) and waits until
// the backend stored it; it returns the event's id (the alarm's).
func (e *env) raise(ev wire.Event) string {
	e.t.Helper()
	ev.ID = wire.NewID(time.Now())
	e.dev.event(ev)
	pool := e.pool()
	testenv.Eventually(e.t, "the event stored", func() bool {
		var n int
		_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM device_events WHERE event_id = $1`, ev.ID).Scan(&n)
		return n == 1
	})
	return ev.ID
}

func esc(lang, key string, kv ...any) string {
	return template.HTMLEscapeString(web.Text(lang, key, kv...))
}

// TestAcknowledgeAnAlarmWithoutJavaScript: a technician acknowledges an
// open alarm from the device page with plain forms: the alarm is listed
// "not acknowledged" with a button, the form takes an optional note (one
// refused is said and kept), the post needs the session's CSRF token;
// afterwards the alarm reads acknowledged by whom and since when, with
// the note, after the ones nobody acknowledged; a second post changes
// nothing and says so; the audit trail holds one alarm.acknowledged. Once
// the device clears it the form answers 409, and raised again it is a new
// alarm. Staff see no button and are refused.
func TestAcknowledgeAnAlarmWithoutJavaScript(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	door := &wire.Address{Board: 0, Channel: 5}
	forced := e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, Addr: &wire.Address{Board: 0, Channel: 1}})
	open := e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmDoorLeftOpen, Addr: door})
	devPage := "/staff/devices/" + lockerID
	form := devPage + "/alarms/" + open + "/ack"

	staff := e.client()
	staff.login(auth.RoleStaff)
	p := staff.get(devPage)
	require.Equal(t, 200, p.status)
	assert.Contains(t, p.body, esc("nl", "alarm.unacked"), "staff see the state")
	assert.NotContains(t, p.body, "/ack\"", "staff see no button")
	assert.Equal(t, http.StatusForbidden, staff.get(form).status)
	assert.Equal(t, http.StatusForbidden, staff.post(form, url.Values{"note": {"forged"}}).status)

	tech := e.client()
	tech.login(auth.RoleTechnician)
	p = tech.get(devPage)
	require.Equal(t, 200, p.status)
	assert.Equal(t, 2, strings.Count(p.body, `<span class="badge unacked">`+esc("nl", "alarm.unacked")+`</span>`))
	assert.Contains(t, p.body, `href="`+form+`"`)
	p = tech.get(form)
	require.Equal(t, 200, p.status)
	assert.Contains(t, p.body, `name="csrf"`)
	assert.Contains(t, p.body, esc("nl", "ack.intro"))

	// Without the session's CSRF token: refused, nothing recorded.
	p = tech.postRaw(form, url.Values{"note": {"no token"}}, nil)
	assert.Equal(t, http.StatusForbidden, p.status)
	// A note too long, or of two lines: said, kept, nothing recorded.
	long := strings.Repeat("x", 201)
	p = tech.post(form, url.Values{"note": {long}})
	require.Equal(t, http.StatusBadRequest, p.status)
	assert.Contains(t, p.body, esc("nl", "error.ack_note", "max", 200))
	assert.Contains(t, p.body, `aria-invalid="true"`)
	assert.Contains(t, p.body, `value="`+long+`"`)
	assert.Equal(t, 400, tech.post(form, url.Values{"note": {"a\nb"}}).status)
	assert.NotContains(t, e.audit("device:"+lockerID), "alarm.acknowledged")

	p = tech.post(form, url.Values{"note": {" I go on site "}})
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	assert.Equal(t, devPage, p.location)
	assert.Equal(t, "notice.alarm_acked", p.notice())
	p = tech.get(p.location)
	assert.Contains(t, p.body, esc("nl", "notice.alarm_acked"))
	status := p.body[strings.Index(p.body, `id="device-status"`):]
	status = status[:strings.Index(status, "</dl>")]
	first, second := strings.Index(status, forced), strings.Index(status, esc("nl", "alarm.acked_by", "who", e.users[auth.RoleTechnician], "time", ""))
	require.Greater(t, first, 0, "the forced door still offers its button")
	require.Greater(t, second, first, "the acknowledged alarm after the one nobody acknowledged")
	assert.Contains(t, status, `<span class="badge acked">`+esc("nl", "alarm.acked")+`</span>`)
	assert.Contains(t, status, esc("nl", "alarm.ack_note", "note", "I go on site"))
	assert.NotContains(t, status, `href="`+form+`"`, "no button for an acknowledged alarm")

	// Again, as an admin: nothing changes, and the page says so.
	admin := e.client()
	admin.login(auth.RoleAdmin)
	p = admin.post(form, url.Values{"note": {"me too"}})
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	assert.Equal(t, devPage, p.location)
	assert.Equal(t, "notice.alarm_already_acked", p.notice())
	assert.Contains(t, admin.get(p.location).body, esc("nl", "notice.alarm_already_acked"))
	trail := e.audit("device:" + lockerID)
	assert.Equal(t, 1, strings.Count(trail, `"action":"alarm.acknowledged"`), trail)
	assert.Contains(t, trail, `"note":"I go on site"`)
	assert.NotContains(t, trail, "me too")
	// The timeline says who acknowledged it, with the note.
	assert.Contains(t, tech.get(devPage).body, esc("nl", "timeline.alarm.acknowledged", "alarm", web.Text("nl", "alarm.door_left_open")))

	// Unknown: 404. The device clears it: 409, nothing recorded.
	assert.Equal(t, http.StatusNotFound, tech.post(devPage+"/alarms/nope/ack", url.Values{}).status)
	e.raise(wire.Event{Kind: wire.EvAlarmCleared, Alarm: wire.AlarmDoorLeftOpen, Addr: door})
	p = tech.post(form, url.Values{})
	require.Equal(t, http.StatusConflict, p.status)
	assert.Contains(t, p.body, esc("nl", "error.alarm_not_open"))
	assert.Equal(t, http.StatusConflict, tech.get(form).status)
	// Raised again: a new alarm nobody acknowledged.
	again := e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmDoorLeftOpen, Addr: door})
	p = tech.get(devPage)
	assert.Equal(t, 2, strings.Count(p.body, `<span class="badge unacked">`), "the forced door and the new one")
	assert.Contains(t, p.body, `href="`+devPage+"/alarms/"+again+`/ack"`)
	assert.Equal(t, 1, strings.Count(e.audit("device:"+lockerID), `"action":"alarm.acknowledged"`))
}

// TestAcknowledgeAnAlarmThroughTheAPI: GET .../alarms lists the open
// alarms with their ids; POST .../ack acknowledges once (recorded true,
// then false with the first acknowledgement), refuses a bad note (400),
// an unknown alarm (404), a cleared one (409) and staff (403).
func TestAcknowledgeAnAlarmThroughTheAPI(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	ctx := context.Background()
	id := e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmJournalFull})
	sess := map[auth.Role]apiclient.Session{}
	for _, r := range auth.Roles() {
		s, err := apiclient.Login(ctx, testenv.HTTPClient(), e.b.URL(""), e.users[r], password(r))
		require.NoError(t, err)
		sess[r] = s
	}
	type ack struct {
		By   string    `json:"by"`
		At   time.Time `json:"at"`
		Note string    `json:"note"`
	}
	type alarm struct {
		ID    string `json:"id"`
		Alarm string `json:"alarm"`
		Ack   *ack   `json:"acknowledged"`
	}
	var list struct {
		Alarms []alarm `json:"alarms"`
	}
	base := "/api/v1/devices/" + lockerID + "/alarms"
	require.NoError(t, sess[auth.RoleStaff].Do(ctx, "GET", base, nil, &list))
	require.Len(t, list.Alarms, 1)
	assert.Equal(t, alarm{ID: id, Alarm: "journal_full"}, list.Alarms[0])

	err := sess[auth.RoleStaff].Do(ctx, "POST", base+"/"+id+"/ack", map[string]string{"note": "x"}, nil)
	assert.Equal(t, http.StatusForbidden, apiclient.StatusOf(err), "staff may not acknowledge")
	err = sess[auth.RoleTechnician].Do(ctx, "POST", base+"/"+id+"/ack", map[string]string{"note": strings.Repeat("n", 201)}, nil)
	assert.Equal(t, http.StatusBadRequest, apiclient.StatusOf(err))
	err = sess[auth.RoleTechnician].Do(ctx, "POST", base+"/unknown/ack", nil, nil)
	assert.Equal(t, http.StatusNotFound, apiclient.StatusOf(err))
	assert.Contains(t, err.Error(), "alarm_not_found")

	var res struct {
		Alarm    alarm `json:"alarm"`
		Recorded bool  `json:"recorded"`
	}
	require.NoError(t, sess[auth.RoleTechnician].Do(ctx, "POST", base+"/"+id+"/ack", map[string]string{"note": "disk swapped at 10"}, &res))
	assert.True(t, res.Recorded)
	require.NotNil(t, res.Alarm.Ack)
	assert.Equal(t, e.users[auth.RoleTechnician], res.Alarm.Ack.By)
	assert.Equal(t, "disk swapped at 10", res.Alarm.Ack.Note)
	// A second one (no body): nothing recorded, the first answered.
	var res2 struct {
		Alarm    alarm `json:"alarm"`
		Recorded bool  `json:"recorded"`
	}
	require.NoError(t, sess[auth.RoleAdmin].Do(ctx, "POST", base+"/"+id+"/ack", nil, &res2))
	assert.False(t, res2.Recorded)
	assert.Equal(t, res.Alarm.Ack.By, res2.Alarm.Ack.By)
	assert.True(t, res.Alarm.Ack.At.Equal(res2.Alarm.Ack.At))
	assert.Equal(t, 1, strings.Count(e.audit("device:"+lockerID), `"action":"alarm.acknowledged"`))
	require.NoError(t, sess[auth.RoleStaff].Do(ctx, "GET", base, nil, &list))
	require.NotNil(t, list.Alarms[0].Ack)

	e.raise(wire.Event{Kind: wire.EvAlarmCleared, Alarm: wire.AlarmJournalFull})
	err = sess[auth.RoleTechnician].Do(ctx, "POST", base+"/"+id+"/ack", nil, nil)
	assert.Equal(t, http.StatusConflict, apiclient.StatusOf(err))
	assert.Contains(t, err.Error(), "alarm_not_open")
	require.NoError(t, sess[auth.RoleStaff].Do(ctx, "GET", base, nil, &list))
	assert.Empty(t, list.Alarms)
}
