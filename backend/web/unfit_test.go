package web_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/web"
	"kluis/controller/wire"
)

// option is the text of a device's option in a page's select.
func option(t *testing.T, body, device string) string {
	t.Helper()
	m := regexp.MustCompile(`<option value="` + device + `"[^>]*>([^<]*)</option>`).FindStringSubmatch(body)
	require.NotNil(t, m, "no option %s", device)
	return m[1]
}

// Reserving by hand at a device that cannot serve now: the device lists
// of the register form and the document's form say what is wrong with
// each (never connected, a forced door), before staff choose; after, the
// document's page warns. "Kluis laten kiezen" with no fit device, or a
// named device without room, says so in the form (409), nothing
// changed, the device chosen kept, instead of an error page.
func TestReserveAtAnUnfitDeviceWarns(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	staff := e.client()
	staff.login(auth.RoleStaff)

	id := e.registerOnly("591-0000001-01", false)
	p := staff.get("/staff/documents/" + id)
	require.Equal(t, http.StatusOK, p.status)
	assert.Equal(t, "Kluis inkomhal", option(t, p.body, lockerID), "fit: the name only")
	assert.Equal(t, esc("nl", "device.unfit_option", "device", "Automaat", "problems", web.Text("nl", "status.never")), option(t, p.body, autoID))

	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, Addr: &wire.Address{Board: 0, Channel: 1}})
	forced := web.Text("nl", "alarm.forced_door")
	p = staff.get("/staff/documents/new")
	assert.Equal(t, esc("nl", "device.unfit_option", "device", "Kluis inkomhal", "problems", forced), option(t, p.body, lockerID))

	// Let Kluis choose: k1 has a forced door, a1 never connected.
	p = staff.post("/staff/documents/"+id+"/reserve", url.Values{"device_id": {""}})
	require.Equal(t, http.StatusConflict, p.status, snippet(p.body))
	assert.Contains(t, p.body, `<p class="field-error" id="e-device" role="alert">`+esc("nl", "error.no_online_device")+`</p>`)
	assert.Contains(t, p.body, `<select id="a-device" name="device_id" aria-describedby="e-device" aria-invalid="true"`, "the form is there again")
	assert.Equal(t, "registered", e.document(id)["state"])

	// Named by hand: asked first, naming the device and what is wrong,
	// nothing reserved; a confirmation for another device asks again.
	ask := esc("nl", "reserve.unfit_confirm", "device", "Kluis inkomhal", "problems", forced)
	for _, confirm := range []string{"", autoID} {
		p = staff.post("/staff/documents/"+id+"/reserve", url.Values{"device_id": {lockerID}, "confirm_unfit": {confirm}})
		require.Equal(t, http.StatusOK, p.status, snippet(p.body))
		assert.Contains(t, p.body, ask)
		assert.Contains(t, p.body, `<input type="hidden" name="confirm_unfit" value="`+lockerID+`">`)
		assert.NotContains(t, p.body, `id="a-device"`, "the question instead of the form")
		assert.Equal(t, "registered", e.document(id)["state"], "nothing before the confirmation")
	}
	// Confirmed: reserved, and the page says what is wrong.
	p = staff.post("/staff/documents/"+id+"/reserve", url.Values{"device_id": {lockerID}, "confirm_unfit": {lockerID}})
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	p = staff.get(p.location)
	assert.Equal(t, "reserved", e.document(id)["state"])
	assert.Contains(t, p.body, esc("nl", "document.device_unfit", "device", "Kluis inkomhal", "problems", forced))

	// A named device without room: said in the form, the device kept.
	for i := 0; i < 4; i++ {
		other := e.registerOnly("591-0000002-0"+string(rune('1'+i)), false)
		require.NoError(t, e.b.Call(context.Background(), "POST", "/api/v1/documents/"+other+"/reserve", map[string]string{"device_id": autoID}, nil))
	}
	id2 := e.registerOnly("591-0000003-01", false)
	p = staff.post("/staff/documents/"+id2+"/reserve", url.Values{"device_id": {autoID}, "confirm_unfit": {autoID}})
	require.Equal(t, http.StatusConflict, p.status, snippet(p.body))
	assert.Contains(t, p.body, esc("nl", "error.no_compartment"))
	assert.Regexp(t, `<option value="`+autoID+`" selected`, p.body, "the device chosen is kept")
	assert.Equal(t, "registered", e.document(id2)["state"])
}

// The register form, a device chosen by hand that cannot serve now (a
// forced door): nothing is registered until staff tick the confirmation
// for that device; what was typed stays; sent again without the tick
// (Enter in a field) it asks again.
func TestRegisterAtAnUnfitDeviceAsksFirst(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	staff := e.client()
	staff.login(auth.RoleStaff)
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, Addr: &wire.Address{Board: 0, Channel: 1}})
	form := url.Values{"kind": {"passport"}, "number": {"EP 2000001"}, "holder_first_name": {"Marie"}, "holder_last_name": {"Dubois"},
		"holder_birth_date_day": {"30"}, "holder_birth_date_month": {"11"}, "holder_birth_date_year": {"1975"}, "language": {"fr"},
		"contact": {"none"}, "site_id": {siteID}, "device_id": {lockerID}}
	ask := esc("nl", "reserve.unfit_confirm", "device", "Kluis inkomhal", "problems", web.Text("nl", "alarm.forced_door"))
	registered := func() int {
		var list struct {
			Total int `json:"total"`
		}
		require.NoError(t, e.b.Call(context.Background(), "GET", "/api/v1/documents?q="+url.QueryEscape("EP 2000001"), nil, &list))
		return list.Total
	}
	for _, confirm := range []string{"", autoID} {
		form.Set("confirm_unfit", confirm)
		p := staff.post("/staff/documents", form)
		require.Equal(t, http.StatusOK, p.status, snippet(p.body))
		assert.Contains(t, p.body, ask)
		assert.Contains(t, p.body, `name="confirm_unfit" value="`+lockerID+`"`)
		assert.Contains(t, p.body, `value="Marie"`, "what was typed stays")
		assert.Zero(t, registered(), "nothing registered before the confirmation")
	}
	form.Set("confirm_unfit", lockerID)
	p := staff.post("/staff/documents", form)
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	id := strings.TrimPrefix(strings.SplitN(p.location, "?", 2)[0], "/staff/documents/")
	d := e.document(id)
	assert.Equal(t, "reserved", d["state"])
	assert.Equal(t, lockerID, d["device_id"])
	assert.Equal(t, 1, registered())
}

// The device page offers a remote open of a compartment holding a
// document to admins only: a technician's would be refused
// (compartment_occupied), so the button is not drawn for them; empty and
// reserved compartments keep theirs.
func TestTechnicianIsNotOfferedToOpenAnOccupiedCompartment(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	id := e.register("591-0000004-01", false)
	n := e.compartmentOf(id)
	require.NoError(t, e.b.Call(context.Background(), "POST", "/api/v1/documents/"+id+"/load", nil, nil))
	reserved := e.compartmentOf(e.register("591-0000004-02", false))
	link := func(c int) string {
		return `/staff/devices/` + lockerID + `/compartments/` + strconv.Itoa(c) + `/open"`
	}

	tech := e.client()
	tech.login(auth.RoleTechnician)
	p := tech.get("/staff/devices/" + lockerID)
	require.Equal(t, http.StatusOK, p.status)
	assert.NotContains(t, p.body, link(n), "occupied: not offered to a technician")
	assert.Contains(t, p.body, link(reserved), "reserved, nothing behind the door: offered")
	assert.Equal(t, http.StatusForbidden, tech.get(strings.TrimSuffix(link(n), `"`)).status, "and refused if asked for anyway")

	admin := e.client()
	admin.login(auth.RoleAdmin)
	p = admin.get("/staff/devices/" + lockerID)
	assert.Contains(t, p.body, link(n), "an admin keeps it")
	assert.Equal(t, http.StatusOK, admin.get(strings.TrimSuffix(link(n), `"`)).status)
}
