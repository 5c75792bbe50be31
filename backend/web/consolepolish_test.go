package web_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/web"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

// TestDevicePageLiveStreamKeepsThePagesView: the device page's live
// stream (data-live) asks for the page's own view, the compartment to
// find (c=) and the alarms-only timeline, a well-formed query built in Go;
// a c= that is no compartment number is left out.
func TestDevicePageLiveStreamKeepsThePagesView(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	tech := e.client()
	tech.login(auth.RoleTechnician)
	live := regexp.MustCompile(`id="device-status" data-live="([^"]*)"`)
	for query, want := range map[string]string{
		"":                      "/staff/devices/k1/events",
		"?c=2":                  "/staff/devices/k1/events?c=2",
		"?timeline=alarms":      "/staff/devices/k1/events?timeline=alarms",
		"?c=2&timeline=alarms":  "/staff/devices/k1/events?c=2&timeline=alarms",
		"?c=-3&timeline=alarms": "/staff/devices/k1/events?timeline=alarms",
		"?c=x":                  "/staff/devices/k1/events",
	} {
		p := tech.get("/staff/devices/k1" + query)
		require.Equal(t, http.StatusOK, p.status, query)
		m := live.FindStringSubmatch(p.body)
		require.NotNil(t, m, query)
		assert.Equal(t, want, html.UnescapeString(m[1]), query)
	}
}

// TestMapLegendListsOnlyWhatTheMapShows: a locker's map shows open doors
// and alarms at compartments, so its legend explains them; an
// automaton's slots have no door and no alarm of their own, so its legend
// lists the compartment states only, and its slots table has no alarms
// column (that would read "none" beside the device's open alarm).
func TestMapLegendListsOnlyWhatTheMapShows(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	tech := e.client()
	tech.login(auth.RoleTechnician)
	legend := regexp.MustCompile(`(?s)<ul class="legend"[^>]*>(.*?)</ul>`)
	for _, lang := range web.Languages {
		for id, doors := range map[string]bool{lockerID: true, autoID: false} {
			body := tech.get("/staff/devices/" + id + "?lang=" + lang).body
			for _, col := range []string{`<th scope="col">` + esc(lang, "comp.alarms") + `</th>`, `data-label="` + esc(lang, "comp.alarms") + `"`} {
				if doors {
					assert.Contains(t, body, col, "%s %s", lang, id)
				} else {
					assert.NotContains(t, body, col, "%s %s", lang, id)
				}
			}
			m := legend.FindStringSubmatch(body)
			require.NotNil(t, m, "%s %s", lang, id)
			for _, s := range []string{"free", "reserved", "loaded", "expired", "out_of_service"} {
				assert.Contains(t, m[1], esc(lang, "map.state."+s), "%s %s", lang, id)
			}
			for _, x := range []string{"swatch door-open", esc(lang, "map.door_open"), "swatch alarmed", ">" + esc(lang, "map.alarm") + "<"} {
				if doors {
					assert.Contains(t, m[1], x, "%s %s", lang, id)
				} else {
					assert.NotContains(t, m[1], x, "%s %s", lang, id)
				}
			}
		}
	}
}

// boardRow is the status cell of lock board n (counted from 1) in the
// device page's boards table.
func boardRow(t *testing.T, body string, n string) string {
	t.Helper()
	i := strings.Index(body, `id="device-boards"`)
	require.Positive(t, i)
	m := regexp.MustCompile(`<th scope="row" data-label="[^"]*">` + n + `</th><td data-label="[^"]*">(.*?)</td>`).FindStringSubmatch(body[i:])
	require.NotNil(t, m, "board %s", n)
	return m[1]
}

// upToTime is key's text in lang, escaped, up to its {time}.
func upToTime(t *testing.T, lang, key string) string {
	t.Helper()
	s := esc(lang, key, "time", "@")
	i := strings.Index(s, "@")
	require.Positive(t, i, "%s %s", lang, key)
	return s[:i]
}

// TestBoardsTableAgreesWithTheBoardAlarm: the boards table does not say
// "online" beside an open "board 1 not reachable" without a word. The
// alarm raised after the last heartbeat (which still had the board
// online): the board reads offline, with the alarm's time, and the doors
// on it unknown. A newer heartbeat with the board online while the device
// has not cleared the alarm yet: online, saying the alarm is still open.
func TestBoardsTableAgreesWithTheBoardAlarm(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	tech := e.client()
	tech.login(auth.RoleTechnician)
	for _, lang := range web.Languages {
		assert.Contains(t, boardRow(t, tech.get("/staff/devices/k1?lang="+lang).body, "1"), esc(lang, "status.online"), lang)
	}
	board := 0
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmBoardUnreachable, Board: &board})
	for _, lang := range web.Languages {
		body := tech.get("/staff/devices/k1?lang=" + lang).body
		row := boardRow(t, body, "1")
		assert.Contains(t, row, esc(lang, "status.offline"), lang)
		assert.NotContains(t, row, esc(lang, "status.online"), lang)
		assert.Contains(t, row, `<span class="board-alarm">`+upToTime(t, lang, "board.alarm_open"), lang)
		doors := regexp.MustCompile(`id="doors-open">([^<]*)<`).FindStringSubmatch(body)
		require.NotNil(t, doors, lang)
		assert.Contains(t, doors[1], esc(lang, "devices.doors_board_offline"), "%s: the doors on it are unknown", lang)
	}
	// The board answers again: a newer heartbeat has it online (its time
	// is taken now, after raise saw the alarm stored).
	e.dev.heartbeat(nil)
	notCleared := `<span class="board-alarm">` + upToTime(t, "nl", "board.alarm_not_cleared")
	testenv.Eventually(t, "the newer heartbeat on the page", func() bool {
		return strings.Contains(boardRow(t, tech.get("/staff/devices/k1?lang=nl").body, "1"), notCleared)
	})
	for _, lang := range web.Languages {
		row := boardRow(t, tech.get("/staff/devices/k1?lang="+lang).body, "1")
		assert.Contains(t, row, esc(lang, "status.online"), lang)
		assert.Contains(t, row, `<span class="board-alarm">`+upToTime(t, lang, "board.alarm_not_cleared"), lang)
	}
}

// TestOldBoardAlarmNamesALockBoard: board alarms from before their board
// was recorded (audit records and device events naming no board) read
// "..., a lock board" on the timeline and in the open alarms, not a bare
// alarm name that looks like the device's own.
func TestOldBoardAlarmNamesALockBoard(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	e.auditLocker("device:"+lockerID, "device.alarm", map[string]any{"alarm": "board_rebooting"})
	// An open alarm stored before wire checked board alarms' board.
	at := time.Now().UTC().Add(-time.Minute)
	_, err := e.pool().Exec(context.Background(), `INSERT INTO device_events (event_id, device_id, kind, at, received_at, outcome, payload)
		VALUES ('old-board-alarm', $1, 'alarm', $2, $2, 'applied', $3)`, lockerID, at,
		`{"v":1,"id":"old-board-alarm","kind":"alarm","alarm":"board_unreachable","at":"`+at.Format(time.RFC3339Nano)+`"}`)
	require.NoError(t, err)
	tech := e.client()
	tech.login(auth.RoleTechnician)
	for _, lang := range web.Languages {
		require.NotEmpty(t, web.Text(lang, "alarm.at_some_board", "alarm", "x"), lang)
		body := tech.get("/staff/devices/" + lockerID + "?lang=" + lang).body
		i := strings.Index(body, `id="device-timeline"`)
		require.Positive(t, i, lang)
		rebooting := web.Text(lang, "alarm.board_rebooting")
		assert.Contains(t, body[i:], esc(lang, "timeline.device.alarm", "alarm", web.Text(lang, "alarm.at_some_board", "alarm", rebooting)), lang)
		assert.NotContains(t, body[i:], esc(lang, "timeline.device.alarm", "alarm", rebooting)+"</span>", lang)
		unreachable := web.Text(lang, "alarm.board_unreachable")
		assert.Contains(t, body[:i], `<span id="alarm-old-board-alarm">`+esc(lang, "alarm.at_some_board", "alarm", unreachable)+`</span>`, lang)
	}
}

// TestCounterHandOverReadsAsSuch: in a document's history a hand-over at
// the counter reads "handed over at the counter by <staff>", a citizen's
// pickup at the device "collected by <device>"; in every language.
func TestCounterHandOverReadsAsSuch(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	ctx := context.Background()
	counter, kiosk := e.register("B00000851", false), e.register("B00000852", false)
	for _, id := range []string{counter, kiosk} {
		require.NoError(t, e.b.Call(ctx, "POST", "/api/v1/documents/"+id+"/load", nil, nil))
	}
	staff := e.client()
	staff.login(auth.RoleStaff)
	p := staff.post("/staff/documents/"+counter+"/collect", url.Values{"confirm": {"yes"}})
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	e.dev.event(wire.Event{Kind: wire.EvPickupCompleted, DocumentID: kiosk, Method: wire.MethodPIN,
		Addr: &hardware.Address{Board: 0, Channel: e.compartmentOf(kiosk) - 1}})
	testenv.Eventually(t, "the pickup at the device recorded", func() bool { return e.document(kiosk)["state"] == "collected" })
	what := func(lang, key string) string { return `<span class="what">` + esc(lang, key) + `</span>` }
	for _, lang := range web.Languages {
		require.NotEmpty(t, web.Text(lang, "history.collect_counter"), lang)
		body := staff.get("/staff/documents/" + counter + "?lang=" + lang).body
		assert.Contains(t, body, what(lang, "history.collect_counter")+` <span class="who">`+esc(lang, "timeline.by", "who", e.users[auth.RoleStaff])+`</span>`, lang)
		assert.NotContains(t, body, what(lang, "history.collect"), lang)
		body = staff.get("/staff/documents/" + kiosk + "?lang=" + lang).body
		assert.Contains(t, body, what(lang, "history.collect")+` <span class="who">`+esc(lang, "timeline.by", "who", web.Text(lang, "actor.device", "device", lockerID))+`</span>`, lang)
		assert.NotContains(t, body, what(lang, "history.collect_counter"), lang)
	}
}

// TestReserveOnAnotherSitesDeviceSaysSo: a reservation by hand naming a
// device of another site (or no device at all: a form posted by hand)
// shows the form again with a clear message naming the document's site,
// in every language, and reserves nothing.
func TestReserveOnAnotherSitesDeviceSaysSo(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	ctx := context.Background()
	require.NoError(t, e.b.Call(ctx, "POST", "/api/v1/sites", map[string]string{"id": "menen", "name": "Stadhuis Menen", "address": "Grote Markt 1"}, nil))
	require.NoError(t, e.b.Call(ctx, "POST", "/api/v1/devices", map[string]any{"id": "m1", "site_id": "menen", "kind": "locker", "name": "Kluis Menen",
		"compartments": []map[string]any{{"number": 1, "board": 0, "channel": 0, "size": "M", "height_cm": 100}}}, nil))
	id := e.registerOnly("B00000861", false)
	staff := e.client()
	staff.login(auth.RoleStaff)
	for _, lang := range web.Languages {
		msg := esc(lang, "error.device_other_site", "site", "Stadhuis Kortrijk")
		require.NotEmpty(t, web.Text(lang, "error.device_other_site"), lang)
		for _, device := range []string{"m1", "nope"} {
			p := staff.post("/staff/documents/"+id+"/reserve?lang="+lang, url.Values{"device_id": {device}})
			assert.Equal(t, http.StatusBadRequest, p.status, "%s %s", lang, device)
			assert.Contains(t, p.body, `<p class="field-error" id="e-device" role="alert">`+msg+`</p>`, "%s %s", lang, device)
			assert.Contains(t, p.body, `<select id="a-device" name="device_id" aria-describedby="e-device" aria-invalid="true"`, "%s %s: the form again", lang, device)
			assert.Equal(t, "registered", e.document(id)["state"], "%s %s: nothing reserved", lang, device)
		}
	}
	// A stale form, the document reserved meanwhile: its page has no
	// reservation form, so the state is what refuses it, said on the error
	// page, whatever the device (the automaton a1 never connected: unfit).
	reserved := e.register("B00000862", false)
	for _, device := range []string{"m1", autoID} {
		p := staff.post("/staff/documents/"+reserved+"/reserve?lang=en", url.Values{"device_id": {device}})
		assert.Equal(t, http.StatusConflict, p.status, device)
		assert.Equal(t, lockerID, e.document(reserved)["device_id"], device)
		assert.Contains(t, p.body, esc("en", "error.wrong_state"), device)
	}
}

// TestCurrentPasswordFormsSayWhichTry: the staff PIN form and the
// password form say which of the session's tries a wrong current
// password was ("1 of 3"), as the API knows it; the third ends the
// session.
func TestCurrentPasswordFormsSayWhichTry(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	for _, form := range []struct {
		path   string
		fields url.Values
	}{
		{"/staff/account/kiosk-pin", url.Values{"kiosk_pin": {"48213975"}, "kiosk_pin_again": {"48213975"}}},
		{"/staff/account/password", url.Values{"new_password": {"a brand new passphrase"}, "new_password_again": {"a brand new passphrase"}}},
	} {
		staff := e.client()
		staff.login(auth.RoleStaff)
		for try, lang := range []string{"fr", "de"} {
			f := url.Values{"current_password": {"not my password"}}
			for k, v := range form.fields {
				f[k] = v
			}
			p := staff.post(form.path+"?lang="+lang, f)
			require.Equal(t, http.StatusForbidden, p.status, "%s %s", form.path, snippet(p.body))
			require.NotEmpty(t, web.Text(lang, "password.wrong_try"), lang)
			assert.Contains(t, p.body, `<p class="field-error" id="e-current_password">`+esc(lang, "password.wrong_try", "n", try+1, "max", 3)+`</p>`, "%s %s", form.path, lang)
		}
		f := url.Values{"current_password": {"not my password"}}
		for k, v := range form.fields {
			f[k] = v
		}
		p := staff.post(form.path, f)
		require.Equal(t, http.StatusSeeOther, p.status, form.path)
		assert.Equal(t, "/staff/login?ended=1", p.location, form.path)
	}
}

// TestStaffPINFormSaysWhichRefusalOfToday: a new staff PIN refused as
// another user's says which of the day's refusals it was ("1 of 3"), as
// the API counts them; after the third the form is refused until an
// admin sets one.
func TestStaffPINFormSaysWhichRefusalOfToday(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	const theirs = "59172648"
	require.NoError(t, e.b.Call(context.Background(), "PATCH", "/api/v1/users/"+strconv.FormatInt(e.ids[auth.RoleTechnician], 10),
		map[string]string{"kiosk_pin": theirs}, nil))
	staff := e.client()
	staff.login(auth.RoleStaff)
	for i, lang := range []string{"nl", "fr", "en"} {
		require.NotEmpty(t, web.Text(lang, "kioskpin.taken_try"), lang)
		p := staff.post("/staff/account/kiosk-pin?lang="+lang, url.Values{"current_password": {password(auth.RoleStaff)},
			"kiosk_pin": {theirs}, "kiosk_pin_again": {theirs}})
		require.Equal(t, http.StatusConflict, p.status, snippet(p.body))
		assert.Contains(t, p.body, `<p class="field-error" id="e-kiosk_pin">`+esc(lang, "kioskpin.taken_try", "n", i+1, "max", 3)+`</p>`, lang)
		assert.NotContains(t, p.body, theirs, "%s: a PIN is never written into a page", lang)
	}
	p := staff.post("/staff/account/kiosk-pin?lang=de", url.Values{"current_password": {password(auth.RoleStaff)},
		"kiosk_pin": {"73920516"}, "kiosk_pin_again": {"73920516"}})
	assert.Equal(t, http.StatusTooManyRequests, p.status)
	assert.Contains(t, p.body, esc("de", "kioskpin.taken_too_often"))
}

// TestOpenFormWarnsOfABoardAlarm: the remote-open form warns that the
// compartment's lock board is down when an open board_unreachable alarm
// is newer than the heartbeat that had the board online (the device
// page's rule, makeHealth), not only when the heartbeat says so, and
// says that the alarm says so (not "at the last heartbeat").
func TestOpenFormWarnsOfABoardAlarm(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	tech := e.client()
	tech.login(auth.RoleTechnician)
	form := "/staff/devices/" + lockerID + "/compartments/1/open?lang="
	for _, lang := range web.Languages {
		assert.NotContains(t, tech.get(form+lang).body, esc(lang, "open.board_offline", "n", 1), "%s: the board is online", lang)
	}
	board := 0
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmBoardUnreachable, Board: &board})
	for _, lang := range web.Languages {
		body := tech.get(form + lang).body
		assert.Contains(t, body, esc(lang, "open.board_unreachable", "n", 1), "%s: the alarm is newer than the heartbeat", lang)
		assert.NotContains(t, body, esc(lang, "open.board_offline", "n", 1), "%s: the heartbeat had it online", lang)
	}
	// A newer heartbeat has the board back: no warning, as the device
	// page reads it online.
	e.dev.heartbeat(nil)
	testenv.Eventually(t, "the newer heartbeat on the form", func() bool {
		return !strings.Contains(tech.get(form+"nl").body, esc("nl", "open.board_unreachable", "n", 1))
	})
	assert.NotContains(t, tech.get(form+"nl").body, esc("nl", "open.board_offline", "n", 1))
}
