package web_test

import (
	"bufio"
	"context"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/api"
	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/server/servertest"
	"kluis/backend/web"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// Signing in and out, the session cookie, the security headers, and the
// refusal of every form post without the session's CSRF token or from
// another site.
func TestLoginSessionCSRFAndHeaders(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	c := e.client()
	p := c.get("/staff/documents")
	require.Equal(t, http.StatusSeeOther, p.status)
	assert.Equal(t, "/staff/login?next=%2Fstaff%2Fdocuments", p.location)

	p = c.get("/staff/login")
	require.Equal(t, 200, p.status)
	csp := p.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
		assert.Contains(t, csp, want)
	}
	assert.NotContains(t, csp, "unsafe-inline")
	assert.Equal(t, "nosniff", p.header.Get("X-Content-Type-Options"))
	assert.Equal(t, "DENY", p.header.Get("X-Frame-Options"))
	assert.Equal(t, "no-referrer", p.header.Get("Referrer-Policy"))
	assert.Equal(t, "no-store", p.header.Get("Cache-Control"))
	assert.NotRegexp(t, `<script>|<style>| style=| on[a-z]+=`, p.body, "no inline script or style")
	tok := csrfField.FindStringSubmatch(p.body)[1]

	// The login form has its own token (double submit).
	p = c.postRaw("/staff/login", url.Values{"username": {e.users[auth.RoleStaff]}, "password": {password(auth.RoleStaff)}}, nil)
	assert.Equal(t, http.StatusForbidden, p.status)
	p = c.postRaw("/staff/login", url.Values{"login_token": {tok}, "username": {e.users[auth.RoleStaff]}, "password": {"wrong password!"}}, nil)
	assert.Equal(t, http.StatusUnauthorized, p.status)
	assert.Contains(t, p.body, "Verkeerde gebruikersnaam of wachtwoord.")
	assert.Contains(t, e.audit("user:"+itoa(e.ids[auth.RoleStaff])), `"action":"login.failed"`)
	tok = csrfField.FindStringSubmatch(p.body)[1]
	p = c.postRaw("/staff/login", url.Values{"login_token": {tok}, "username": {e.users[auth.RoleStaff]},
		"password": {password(auth.RoleStaff)}, "next": {"//evil.example/x"}}, nil)
	require.Equal(t, http.StatusSeeOther, p.status)
	assert.Equal(t, "/staff/", p.location, "only console pages are followed after the login")
	cookie := ""
	for _, sc := range p.header.Values("Set-Cookie") {
		if strings.HasPrefix(sc, "kluis_staff=") && !strings.Contains(sc, "Max-Age=0") {
			cookie = sc
		}
	}
	require.NotEmpty(t, cookie)
	for _, want := range []string{"Path=/staff/", "HttpOnly", "SameSite=Lax"} {
		assert.Contains(t, cookie, want)
	}
	assert.NotContains(t, cookie, "Secure", "plain HTTP here: a Secure cookie would not come back")
	login := e.audit("user:" + itoa(e.ids[auth.RoleStaff]))
	assert.Contains(t, login, `"action":"login"`)
	assert.Contains(t, login, `"via":"console"`)

	p = c.get("/staff/")
	assert.Equal(t, "/staff/documents", p.location, "counter staff start with documents")
	p = c.get("/staff/documents/new")
	require.Equal(t, 200, p.status)
	require.NotEmpty(t, c.csrf)
	form := url.Values{"kind": {"eid"}, "number": {"591-0000001-01"}, "holder_first_name": {"Jan"}, "holder_last_name": {"Peeters"},
		"holder_birth_date_day": {"12"}, "holder_birth_date_month": {"4"}, "holder_birth_date_year": {"1980"}, "language": {"nl"}, "contact": {"none"}, "site_id": {siteID}}

	// No token, a wrong token, another site: refused, nothing registered.
	p = c.postRaw("/staff/documents", form, nil)
	assert.Equal(t, http.StatusForbidden, p.status)
	form.Set("csrf", "not-the-token")
	p = c.postRaw("/staff/documents", form, nil)
	assert.Equal(t, http.StatusForbidden, p.status)
	form.Set("csrf", c.csrf)
	p = c.postRaw("/staff/documents", form, http.Header{"Sec-Fetch-Site": {"cross-site"}})
	assert.Equal(t, http.StatusForbidden, p.status)
	p = c.postRaw("/staff/documents", form, http.Header{"Origin": {"http://evil.example"}})
	assert.Equal(t, http.StatusForbidden, p.status)
	var n int
	pool := e.pool()
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM documents`).Scan(&n))
	assert.Zero(t, n, "no refused post registered anything")
	p = c.postRaw("/staff/documents", form, http.Header{"Sec-Fetch-Site": {"same-origin"}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	assert.Equal(t, "notice.registered", p.notice())

	// The session lives in the database: a restarted backend (or a second
	// replica) knows it.
	var sessionValue string
	for _, ck := range c.hc.Jar.Cookies(mustURL(e.b.URL("/staff/"))) {
		if ck.Name == "kluis_staff" {
			sessionValue = ck.Value
		}
	}
	require.NotEmpty(t, sessionValue)
	second := servertest.Start(t, server.Options{DatabaseURL: e.b.Options.DatabaseURL, Keys: e.b.Options.Keys})
	req, _ := http.NewRequest("GET", second.URL("/staff/documents"), nil)
	req.AddCookie(&http.Cookie{Name: "kluis_staff", Value: sessionValue})
	res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, 200, res.StatusCode, "the second backend knows the session")

	// Logout ends it everywhere.
	p = c.post("/staff/logout", nil)
	require.Equal(t, http.StatusSeeOther, p.status)
	p = c.get("/staff/documents")
	assert.Equal(t, http.StatusSeeOther, p.status)
	req, _ = http.NewRequest("GET", second.URL("/staff/documents"), nil)
	req.AddCookie(&http.Cookie{Name: "kluis_staff", Value: sessionValue})
	res, err = (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusSeeOther, res.StatusCode)
	assert.Contains(t, res.Header.Get("Location"), "ended=1")

	// Static files carry the same headers.
	p = c.get("/staff/static/console.js")
	assert.Equal(t, 200, p.status)
	assert.Contains(t, p.header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	assert.Equal(t, 404, c.get("/staff/static/").status)
}

// A session ends after the idle timeout and at its absolute lifetime,
// on the server's clock.
func TestSessionExpiry(t *testing.T) {
	t.Parallel() // its own backend and database
	clock := &fakeClock{t: time.Now()}
	e := newEnv(t, server.Options{Clock: clock.Now, StaffIdle: 20 * time.Minute, StaffMaxAge: 2 * time.Hour})
	c := e.client()
	c.login(auth.RoleTechnician)
	clock.Add(15 * time.Minute)
	assert.Equal(t, 200, c.get("/staff/devices").status)
	clock.Add(21 * time.Minute)
	p := c.get("/staff/devices")
	require.Equal(t, http.StatusSeeOther, p.status, "idle for 21 minutes")
	assert.Contains(t, p.location, "ended=1")
	assert.Contains(t, c.get(p.location).body, "Uw sessie is afgelopen.")

	c.login(auth.RoleTechnician)
	for i := 0; i < 7; i++ {
		clock.Add(15 * time.Minute)
		require.Equal(t, 200, c.get("/staff/devices").status, "in use after %d minutes", 15*(i+1))
	}
	clock.Add(16 * time.Minute)
	assert.Equal(t, http.StatusSeeOther, c.get("/staff/devices").status, "past the absolute lifetime")
}

// The console and the REST API share the login limits: guessing on one
// locks the other too.
func TestLoginLimitsAreShared(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	c := e.client()
	user := e.users[auth.RoleStaff]
	for i := 0; i < 5; i++ {
		p := c.get("/staff/login")
		tok := csrfField.FindStringSubmatch(p.body)[1]
		p = c.postRaw("/staff/login", url.Values{"login_token": {tok}, "username": {user}, "password": {"wrong password!"}}, nil)
		require.Equal(t, http.StatusUnauthorized, p.status)
	}
	p := c.get("/staff/login")
	tok := csrfField.FindStringSubmatch(p.body)[1]
	p = c.postRaw("/staff/login", url.Values{"login_token": {tok}, "username": {user}, "password": {password(auth.RoleStaff)}}, nil)
	assert.Equal(t, http.StatusTooManyRequests, p.status, "even the right password waits")
	assert.NotEmpty(t, p.header.Get("Retry-After"))
	err := e.b.Call(context.Background(), "POST", "/api/v1/sessions", map[string]string{"username": user, "password": password(auth.RoleStaff)}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "429")

	// Both refusals are denied logins, audited once each like the
	// failures (the console's with "via": "console"), never the password.
	trail := e.audit("user:" + itoa(e.ids[auth.RoleStaff]))
	assert.Equal(t, 2, strings.Count(trail, `"action":"login.refused"`), trail)
	assert.Contains(t, trail, `"limit":"source"`)
	assert.Contains(t, trail, `"via":"console"`)
	assert.NotContains(t, trail, password(auth.RoleStaff))
}

// Every console action is allowed to exactly the roles the REST API allows
// on the routes it stands for, checked by requests: a role the API refuses
// gets 403 from the console too, and does not see the button.
func TestActionRolesEqualTheRESTRoutes(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	routes := e.apiRoutes()
	doc := e.register("591-0000002-02", false)
	ackPath := "/staff/devices/" + lockerID + "/alarms/" + e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, Addr: &wire.Address{Board: 0, Channel: 1}}) + "/ack"
	type request struct {
		method, path string
		form         url.Values
	}
	reqs := map[string][]request{
		"documents.list":      {{"GET", "/staff/documents", nil}},
		"documents.view":      {{"GET", "/staff/documents/" + doc, nil}},
		"documents.register":  {{"GET", "/staff/documents/new", nil}, {"POST", "/staff/documents", url.Values{}}},
		"documents.reserve":   {{"POST", "/staff/documents/" + doc + "/reserve", nil}},
		"documents.unreserve": {{"POST", "/staff/documents/00000000-0000-4000-8000-000000000000/unreserve", nil}},
		"documents.cancel":    {{"POST", "/staff/documents/00000000-0000-4000-8000-000000000000/cancel", nil}},
		"documents.renotify":  {{"POST", "/staff/documents/" + doc + "/renotify", nil}},
		"documents.reissue":   {{"POST", "/staff/documents/" + doc + "/reissue", nil}},
		"documents.slip":      {{"GET", "/staff/documents/" + doc + "/slip", nil}},
		// Unconfirmed: the allowed roles are sent to the confirmation.
		"documents.retrieve":   {{"POST", "/staff/documents/" + doc + "/retrieve", nil}},
		"documents.collect":    {{"POST", "/staff/documents/" + doc + "/collect", nil}},
		"devices.list":         {{"GET", "/staff/devices", nil}},
		"devices.view":         {{"GET", "/staff/devices/" + lockerID, nil}},
		"devices.open":         {{"GET", "/staff/devices/" + lockerID + "/compartments/1/open", nil}, {"POST", "/staff/devices/" + lockerID + "/compartments/1/open", url.Values{}}},
		"devices.service":      {{"GET", "/staff/devices/" + lockerID + "/service", nil}, {"POST", "/staff/devices/" + lockerID + "/service", url.Values{}}},
		"compartments.service": {{"GET", "/staff/devices/" + lockerID + "/compartments/6/service", nil}, {"POST", "/staff/devices/" + lockerID + "/compartments/6/service", url.Values{}}},
		"me.kiosk_pin":         {{"GET", "/staff/account/kiosk-pin", nil}, {"POST", "/staff/account/kiosk-pin", url.Values{}}},
		"me.password":          {{"GET", "/staff/account/password", nil}, {"POST", "/staff/account/password", url.Values{}}},
		"alarms.ack":           {{"GET", ackPath, nil}, {"POST", ackPath, url.Values{}}},
		"users.kiosk_pin": {{"GET", fmt.Sprintf("/staff/users/%d/kiosk-pin", e.ids[auth.RoleStaff]), nil},
			{"POST", fmt.Sprintf("/staff/users/%d/kiosk-pin", e.ids[auth.RoleStaff]), url.Values{}}},
		// audit.view has no page of its own: see the document timeline below.
		"audit.view": nil,
	}
	clients := map[auth.Role]*client{}
	for _, r := range auth.Roles() {
		clients[r] = e.client()
		clients[r].login(r)
	}
	for _, a := range web.Actions() {
		rs, ok := reqs[a.Name]
		require.True(t, ok, "no request for action %s in the test", a.Name)
		for _, role := range auth.Roles() {
			want := true
			for _, rt := range a.Routes {
				roles, ok := routes[rt]
				require.True(t, ok, "%s names %s, which the API does not have", a.Name, rt)
				want = want && contains(roles, role)
			}
			for _, rq := range rs {
				var p page
				if rq.method == "GET" {
					p = clients[role].get(rq.path)
				} else {
					p = clients[role].post(rq.path, rq.form)
				}
				forbidden := p.status == http.StatusForbidden
				assert.Equal(t, !want, forbidden, "%s %s as %s (action %s): %d %s", rq.method, rq.path, role, a.Name, p.status, snippet(p.body))
			}
		}
	}
	// What a role may not use is not drawn.
	dev := map[auth.Role]string{}
	for _, r := range auth.Roles() {
		dev[r] = clients[r].get("/staff/devices/" + lockerID).body
	}
	assert.NotContains(t, dev[auth.RoleStaff], "/compartments/1/open", "staff see no remote open")
	assert.NotContains(t, dev[auth.RoleStaff], "/service\"", "staff see no service buttons")
	assert.NotContains(t, dev[auth.RoleStaff], "/ack\"", "staff see no acknowledge buttons")
	assert.Contains(t, dev[auth.RoleTechnician], "/compartments/1/open")
	assert.Contains(t, dev[auth.RoleAdmin], "/compartments/1/open")
	assert.NotContains(t, dev[auth.RoleTechnician], `href="/staff/documents/`, "technicians see no documents")
	assert.Contains(t, dev[auth.RoleStaff], `href="/staff/documents/`+doc+`"`)
	assert.NotContains(t, dev[auth.RoleTechnician], `href="/staff/documents"`, "no documents menu for technicians")
	// The audit records of a document are in the timeline for admins only
	// (loading issues codes: code.issued).
	require.NoError(t, e.b.Call(context.Background(), "POST", "/api/v1/documents/"+doc+"/load", nil, nil))
	adminDoc := clients[auth.RoleAdmin].get("/staff/documents/" + doc).body
	staffDoc := clients[auth.RoleStaff].get("/staff/documents/" + doc).body
	assert.Contains(t, adminDoc, "Audit: code.issued")
	assert.NotContains(t, staffDoc, "Audit:")
}

// A staff member cannot open remotely: a forged post (with the session's
// own CSRF token and the confirmation) is refused, nothing is sent to the
// device, nothing is audited as an opening.
func TestStaffCannotOpenRemotely(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	c := e.client()
	c.login(auth.RoleStaff)
	p := c.post("/staff/devices/"+lockerID+"/compartments/2/open", url.Values{"reason": {"forged"}, "confirm": {"yes"}})
	require.Equal(t, http.StatusForbidden, p.status)
	assert.Contains(t, p.body, "Uw rol mag dit niet doen.")
	assert.Zero(t, e.dev.openCount())
	// A technician's opening afterwards is answered only once the device
	// has it, and the backend's commands reach the device in order: had
	// the forged post sent anything, the device would hold two.
	tech := e.client()
	tech.login(auth.RoleTechnician)
	p = tech.post("/staff/devices/"+lockerID+"/compartments/2/open", url.Values{"reason": {"ticket 12"}, "confirm": {"yes"}})
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	require.Equal(t, 1, e.dev.openCount())
	e.dev.mu.Lock()
	assert.Equal(t, "ticket 12", e.dev.opens[0].Reason)
	e.dev.mu.Unlock()
	assert.Equal(t, 1, strings.Count(e.audit("device:"+lockerID), `"action":"compartment.remote_open"`), "only the technician's opening is audited as one")
}

// Registering through the form (low compartment, slip), searching,
// remote open with a reason and a confirmation (one command, audited),
// compartment and device out of service and back.
func TestRegisterSearchOpenAndService(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	staff := e.client()
	staff.login(auth.RoleStaff)
	p := staff.get("/staff/documents/new")
	require.Equal(t, 200, p.status)
	form := url.Values{"kind": {"passport"}, "number": {" ep 1234567 "}, "holder_first_name": {"Marie"}, "holder_last_name": {"Dubois"},
		"holder_birth_date_day": {"30"}, "holder_birth_date_month": {"11"}, "holder_birth_date_year": {"1975"}, "language": {"fr"}, "contact": {"email"}, "email": {""}, "site_id": {siteID},
		"device_id": {lockerID}, "wants_low": {"yes"}}
	p = staff.post("/staff/documents", form)
	require.Equal(t, http.StatusBadRequest, p.status)
	assert.Contains(t, p.body, `href="#f-email"`, "the summary links to the field")
	assert.Contains(t, p.body, `value="Marie"`, "what was typed stays")
	form.Set("contact", "none")
	p = staff.post("/staff/documents", form)
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	docPath := strings.SplitN(p.location, "?", 2)[0]
	id := strings.TrimPrefix(docPath, "/staff/documents/")
	d := e.document(id)
	assert.Equal(t, "reserved", d["state"])
	assert.Equal(t, "EP 1234567", d["number"])
	assert.Nil(t, d["email"])
	n := e.compartmentOf(id)
	assert.LessOrEqual(t, n, 3, "a low compartment (1-3 are at most 110 cm)")
	p = staff.get(p.location)
	assert.Contains(t, p.body, "Het document is geregistreerd en heeft een vak: Kluis inkomhal, vak ")
	assert.Contains(t, p.body, "Gereserveerd")
	assert.Contains(t, p.body, "Geen telefoon of e-mail: afhaalbewijs")
	results := func(q string) string {
		body := staff.get("/staff/documents?q=" + url.QueryEscape(q)).body
		i, j := strings.Index(body, `id="h-results"`), strings.Index(body, `id="h-expired"`)
		require.True(t, i > 0 && j > i, "a results section")
		return body[i:j]
	}
	for _, q := range []string{"EP1234567", "dubois", "Marie Dub"} {
		assert.Contains(t, results(q), docPath, "search %q", q)
	}
	assert.NotContains(t, results("nobody"), docPath)
	assert.Contains(t, staff.get("/staff/documents").body, docPath, "waiting to be loaded")
	// The same number again is refused at the field.
	p = staff.post("/staff/documents", form)
	assert.Equal(t, http.StatusConflict, p.status)

	tech := e.client()
	tech.login(auth.RoleTechnician)
	open := "/staff/devices/" + lockerID + "/compartments/5/open"
	require.Equal(t, 200, tech.get(open).status)
	p = tech.post(open, url.Values{"reason": {"  "}})
	assert.Equal(t, http.StatusBadRequest, p.status, "a reason is required")
	p = tech.post(open, url.Values{"reason": {"ticket 4711"}})
	require.Equal(t, 200, p.status)
	assert.Contains(t, p.body, "Vak 5 van Kluis inkomhal nu openen?")
	assert.Contains(t, p.body, `name="confirm" value="yes"`)
	// Nothing opens before the confirmation: the confirmed opening below
	// is the device's first command (it answers only once the device has
	// it, and commands arrive in order).
	assert.Zero(t, e.dev.openCount(), "nothing opens before the confirmation")
	p = tech.post(open, url.Values{"reason": {"ticket 4711"}, "confirm": {"yes"}})
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	assert.Equal(t, "notice.opened", p.notice())
	require.Equal(t, 1, e.dev.openCount())
	e.dev.mu.Lock()
	cmd := e.dev.opens[0]
	e.dev.mu.Unlock()
	assert.Equal(t, wire.Address{Board: 0, Channel: 4}, *cmd.Addr)
	assert.Equal(t, "ticket 4711", cmd.Reason)
	assert.Equal(t, "user:"+itoa(e.ids[auth.RoleTechnician]), cmd.By)
	a := e.audit("device:" + lockerID)
	assert.Contains(t, a, `"action":"compartment.remote_open"`)
	assert.Contains(t, a, `"reason":"ticket 4711"`)
	assert.Contains(t, a, `"result":"opened"`)
	assert.Contains(t, tech.get(p.location).body, "Vak 5 is geopend.")

	// Compartment 1..6 except the reserved one out of service: nothing fits.
	for c := 1; c <= 6; c++ {
		if c == n {
			continue
		}
		p = tech.post("/staff/devices/"+lockerID+"/compartments/"+itoa(int64(c))+"/service", url.Values{"out_of_service": {"yes"}, "reason": {"broken lock"}})
		require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	}
	p = tech.get("/staff/devices/" + lockerID)
	assert.Equal(t, 5, strings.Count(p.body, `<span class="badge st-out_of_service">`), "five compartments out of service in the table")
	assert.Contains(t, p.body, "Reden: broken lock", "the reason is in the audit trail and on the timeline")
	form.Set("number", "EP7654321")
	form.Set("wants_low", "")
	p = staff.post("/staff/documents", form)
	require.Equal(t, http.StatusSeeOther, p.status)
	assert.Equal(t, "notice.no_compartment", p.notice())
	// Back in service; then the whole device out of service (reason required).
	p = tech.post("/staff/devices/"+lockerID+"/compartments/4/service", url.Values{"out_of_service": {"no"}})
	require.Equal(t, http.StatusSeeOther, p.status)
	p = tech.post("/staff/devices/"+lockerID+"/service", url.Values{"out_of_service": {"yes"}, "reason": {""}})
	assert.Equal(t, http.StatusBadRequest, p.status)
	p = tech.post("/staff/devices/"+lockerID+"/service", url.Values{"out_of_service": {"yes"}, "reason": {"water damage"}})
	require.Equal(t, http.StatusSeeOther, p.status)
	assert.Contains(t, tech.get("/staff/devices").body, "Buiten dienst")
	form.Set("number", "EP7654322")
	p = staff.post("/staff/documents", form)
	require.Equal(t, http.StatusSeeOther, p.status)
	assert.Equal(t, "notice.no_compartment", p.notice(), "compartment 4 is free, but its device is out of service")
	p = tech.post("/staff/devices/"+lockerID+"/service", url.Values{"out_of_service": {"no"}})
	require.Equal(t, http.StatusSeeOther, p.status)
	assert.Contains(t, e.audit("device:"+lockerID), `"reason":"water damage"`)
}

// The live stream of the fleet shows a door-left-open alarm within a few
// seconds, and the device's stream its open door on the map.
func TestLiveStreams(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	tech := e.client()
	tech.login(auth.RoleTechnician)
	// The heartbeat's board health: errors, restarts, watchdog relocks.
	testenv.Eventually(t, "the heartbeat on the fleet page", func() bool {
		return strings.Contains(tech.get("/staff/devices").body, "1 · offline: 0 · fouten: 3 · herstarts: 1")
	})
	board := tech.get("/staff/devices/" + lockerID).body
	assert.Regexp(t, `<td data-label="Herstarts">1</td><td data-label="Waakhond-vergrendelingen">2</td>`, board)
	fleet := tech.stream(t, "/staff/devices/events")
	device := tech.stream(t, "/staff/devices/"+lockerID+"/events")
	start := time.Now()
	e.dev.event(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmDoorLeftOpen, Addr: &wire.Address{Board: 0, Channel: 3}})
	e.dev.heartbeat(map[int]bool{3: true})
	got := fleet.waitFor(t, "Deur bleef open, vak 4", 10*time.Second)
	assert.Contains(t, got, `"fleet-rows"`)
	t.Logf("the alarm reached the fleet stream after %s", time.Since(start))
	got = device.waitFor(t, "door-open", 10*time.Second)
	assert.Contains(t, got, `data-comp=\"4\"`)
	e.dev.event(wire.Event{Kind: wire.EvAlarmCleared, Alarm: wire.AlarmDoorLeftOpen, Addr: &wire.Address{Board: 0, Channel: 3}})
	e.dev.heartbeat(nil)
	fleet.waitFor(t, "actieve alarmen: 0", 10*time.Second)

	// Staff read the fleet too; an anonymous stream is refused.
	res, err := testenv.HTTPClient().Get(e.b.URL("/staff/devices/events"))
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode)
}

// stream reads server-sent events in the background.
type stream struct {
	data chan string
}

func (c *client) stream(t *testing.T, path string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", c.e.b.URL(path), nil)
	hc := &http.Client{Jar: c.hc.Jar}
	res, err := hc.Do(req)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)
	require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	s := &stream{data: make(chan string, 100)}
	go func() {
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<22)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "data: ") {
				s.data <- strings.TrimPrefix(line, "data: ")
			}
		}
		close(s.data)
	}()
	return s
}

func (s *stream) waitFor(t *testing.T, want string, d time.Duration) string {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case msg, ok := <-s.data:
			if !ok {
				t.Fatalf("the stream ended before %q", want)
			}
			if strings.Contains(msg, want) {
				return msg
			}
		case <-deadline:
			t.Fatalf("no event with %q within %s", want, d)
		}
	}
}

func (e *env) apiRoutes() map[string][]auth.Role {
	pool := e.pool()
	as, err := auth.New(auth.Options{Pool: pool})
	require.NoError(e.t, err)
	srv, err := api.New(api.Options{Pool: pool, Auth: as})
	require.NoError(e.t, err)
	out := map[string][]auth.Role{}
	for _, rt := range srv.Routes() {
		out[rt.Method+" "+rt.Path] = rt.Roles
	}
	return out
}

func (e *env) pool() *pgxpool.Pool {
	pool, err := pgxpool.New(context.Background(), e.b.Options.DatabaseURL)
	require.NoError(e.t, err)
	e.t.Cleanup(pool.Close)
	return pool
}

func contains(rs []auth.Role, r auth.Role) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

var tags = regexp.MustCompile(`<[^>]+>`)

func snippet(body string) string {
	s := strings.Join(strings.Fields(tags.ReplaceAllString(body, " ")), " ")
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// A device that never connected is offered no remote open (its page says
// why), and a post made anyway is refused with that reason and sends or
// audits nothing: the command could only expire.
func TestNoRemoteOpenBeforeTheDeviceConnected(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	tech := e.client()
	tech.login(auth.RoleTechnician)
	why := "Dit toestel heeft nog nooit verbonden. Op afstand openen kan niet"
	p := tech.get("/staff/devices/" + autoID)
	require.Equal(t, 200, p.status)
	assert.Contains(t, p.body, why)
	assert.NotContains(t, p.body, "/compartments/1/open\"")
	p = tech.get("/staff/devices/" + lockerID)
	assert.Contains(t, p.body, "/compartments/1/open\"", "a device that connected keeps its buttons")
	assert.NotContains(t, p.body, why)
	open := "/staff/devices/" + autoID + "/compartments/1/open"
	p = tech.get(open)
	assert.Equal(t, http.StatusConflict, p.status)
	assert.Contains(t, p.body, "Dit toestel heeft nog nooit verbonden: een opdracht om op afstand te openen zou alleen verlopen.")
	p = tech.post(open, url.Values{"reason": {"ticket 9"}, "confirm": {"yes"}})
	assert.Equal(t, http.StatusConflict, p.status)
	assert.Zero(t, e.dev.openCount())
	assert.NotContains(t, e.audit("device:"+autoID), `"action":"compartment.remote_open"`)
}

// The date of birth as three fields (day, month, year): each refused date
// is sent back with a message in the page's language that says what to
// correct, what was typed kept, the fields to correct marked and the
// summary linking to the first of them; nothing is registered. A good date
// reaches the document as the single date field did before.
func TestRegisterBirthDateFields(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	staff := e.client()
	staff.login(auth.RoleStaff)
	form := func(number, d, m, y string) url.Values {
		return url.Values{"kind": {"eid"}, "number": {number}, "holder_first_name": {"Lotte"}, "holder_last_name": {"Claes"},
			"holder_birth_date_day": {d}, "holder_birth_date_month": {m}, "holder_birth_date_year": {y},
			"language": {"nl"}, "contact": {"none"}, "site_id": {siteID}}
	}
	marked := regexp.MustCompile(`id="f-holder_birth_date(?:-month|-year)?"[^>]*aria-invalid="true"`)
	for _, c := range []struct {
		lang, d, m, y, want, anchor string
		bad                         []string
	}{
		{"nl", "31", "2", "1988", "Deze datum bestaat niet: kijk de dag en de maand na.", "f-holder_birth_date", []string{`id="f-holder_birth_date"`}},
		{"fr", "31", "2", "1988", "Cette date n&#39;existe pas\u00a0: vérifiez le jour et le mois.", "f-holder_birth_date", []string{`id="f-holder_birth_date"`}},
		{"nl", "15", "6", "88", "Het jaar heeft 4 cijfers, zoals 1985.", "f-holder_birth_date-year", []string{`id="f-holder_birth_date-year"`}},
		{"de", "15", "6", "88", "Das Jahr hat 4 Ziffern, zum Beispiel 1985.", "f-holder_birth_date-year", []string{`id="f-holder_birth_date-year"`}},
		{"en", "15", "6", "2099", "The date of birth cannot be in the future.", "f-holder_birth_date",
			[]string{`id="f-holder_birth_date"`, `id="f-holder_birth_date-month"`, `id="f-holder_birth_date-year"`}},
		{"nl", "", "", "", "Vul de geboortedatum in.", "f-holder_birth_date",
			[]string{`id="f-holder_birth_date"`, `id="f-holder_birth_date-month"`, `id="f-holder_birth_date-year"`}},
		{"fr", "15", "", "1988", "Il manque le mois de la date de naissance.", "f-holder_birth_date-month", []string{`id="f-holder_birth_date-month"`}},
		{"en", "15", "13", "1988", "The month must be a number from 1 to 12.", "f-holder_birth_date-month", []string{`id="f-holder_birth_date-month"`}},
		{"de", "15", "6", "1899", "Das Geburtsjahr muss 1900 oder später sein.", "f-holder_birth_date-year", []string{`id="f-holder_birth_date-year"`}},
	} {
		name := c.lang + " " + c.d + "-" + c.m + "-" + c.y
		require.Equal(t, 200, staff.get("/staff/documents/new?lang="+c.lang).status)
		p := staff.post("/staff/documents", form("591-0000009-99", c.d, c.m, c.y))
		require.Equal(t, http.StatusBadRequest, p.status, name)
		assert.Contains(t, p.body, `<p class="field-error" id="e-holder_birth_date">`+c.want+`</p>`, name)
		assert.Contains(t, p.body, `<a href="#`+c.anchor+`">`+c.want+`</a>`, name)
		assert.Contains(t, p.body, `aria-describedby="h-holder_birth_date e-holder_birth_date"`, name)
		for _, v := range []struct{ field, value string }{{"day", c.d}, {"month", c.m}, {"year", c.y}} {
			assert.Regexp(t, `name="holder_birth_date_`+v.field+`"[^>]*value="`+regexp.QuoteMeta(v.value)+`"`, p.body, "%s: what was typed stays", name)
		}
		var got []string
		for _, m := range marked.FindAllString(p.body, -1) {
			got = append(got, m[:strings.Index(m, " ")])
		}
		assert.Equal(t, c.bad, got, "%s: the fields to correct", name)
	}
	var n int
	require.NoError(t, e.pool().QueryRow(context.Background(), `SELECT count(*) FROM documents`).Scan(&n))
	assert.Zero(t, n, "nothing registered")

	// Typed with leading zeros and spaces, in French: the date.
	require.Equal(t, 200, staff.get("/staff/documents/new?lang=fr").status)
	p := staff.post("/staff/documents", form("591-0000009-99", " 05", "06 ", "1988"))
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	id := strings.TrimPrefix(strings.SplitN(p.location, "?", 2)[0], "/staff/documents/")
	assert.Equal(t, "1988-06-05T00:00:00Z", e.document(id)["holder_birth_date"])
	assert.Contains(t, staff.get("/staff/documents/"+id).body, "<dd>05/06/1988</dd>", "shown as French writes dates")
}

// A compartment with a document behind its door is opened remotely by an
// admin only: a technician is told so on the form (no reason or
// confirmation asked), a confirmed post is refused, nothing is sent, and
// the attempt is audited compartment.open_refused and shown on the
// device's timeline; an admin's confirmation says a citizen's document is
// inside and the opening is audited with it.
func TestOccupiedCompartmentOpensForAdminsOnly(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	doc := e.register("591-0000077-77", false)
	require.NoError(t, e.b.Call(context.Background(), "POST", "/api/v1/documents/"+doc+"/load", nil, nil))
	path := fmt.Sprintf("/staff/devices/%s/compartments/%d/open", lockerID, e.compartmentOf(doc))

	tech := e.client()
	tech.login(auth.RoleTechnician)
	for _, lang := range web.Languages {
		p := tech.get(path + "?lang=" + lang)
		require.Equal(t, http.StatusForbidden, p.status, snippet(p.body))
		assert.Contains(t, html.UnescapeString(p.body), web.CatalogueText(lang, "error.occupied"), lang)
		assert.NotContains(t, p.body, `id="reason"`, lang)
	}
	p := tech.post(path, url.Values{"reason": {"door check"}})
	require.Equal(t, http.StatusForbidden, p.status, snippet(p.body))
	p = tech.post(path, url.Values{"reason": {"door check"}, "confirm": {"yes"}})
	require.Equal(t, http.StatusForbidden, p.status, snippet(p.body))
	assert.Zero(t, e.dev.openCount())
	assert.Equal(t, 1, strings.Count(e.audit("device:"+lockerID), `"action":"compartment.open_refused"`))
	assert.Contains(t, html.UnescapeString(tech.get("/staff/devices/"+lockerID+"?lang=en").body), "refused: a document is inside")

	admin := e.client()
	admin.login(auth.RoleAdmin)
	p = admin.get(path + "?lang=en")
	require.Equal(t, http.StatusOK, p.status, snippet(p.body))
	assert.Contains(t, html.UnescapeString(p.body), web.CatalogueText("en", "open.occupied"))
	p = admin.post(path+"?lang=en", url.Values{"reason": {"door stuck, ticket 4711"}})
	require.Equal(t, http.StatusOK, p.status, snippet(p.body))
	assert.Contains(t, html.UnescapeString(p.body), web.CatalogueText("en", "open.occupied"), "the confirmation says so")
	p = admin.post(path, url.Values{"reason": {"door stuck, ticket 4711"}, "confirm": {"yes"}})
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	assert.Equal(t, 1, e.dev.openCount())
	assert.Contains(t, e.audit("device:"+lockerID), `"document":"`+doc+`"`)
}

// TestForgedFormRefusalsAreLoggedAndCounted: a console post from another
// site (Origin: https://evil.example) was refused 403 with no log line,
// while a wrong csrf token logged a WARN. Both now log one WARN
// (structured: the path, the origin's host; no cookie or token value) and
// count in kluis_web_forged_forms_refused_total{reason="origin"|"token"};
// neither is audited (any website could fill the audit trail).
func TestForgedFormRefusalsAreLoggedAndCounted(t *testing.T) {
	logs := &servertest.SyncBuffer{}
	e := newEnv(t, server.Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	c := e.client()
	c.login(auth.RoleStaff)
	p := c.get("/staff/documents/new")
	require.Equal(t, 200, p.status)
	require.NotEmpty(t, c.csrf)
	before := logs.String()
	counted := func(reason string) string { t.Helper(); return forgedRefused(t, e, reason) }
	assert.Equal(t, "0", counted("origin"))
	assert.Equal(t, "0", counted("token"))

	form := url.Values{"csrf": {c.csrf}, "number": {"591-0000001-01"}}
	p = c.postRaw("/staff/documents", form, http.Header{"Origin": {"https://evil.example"}})
	assert.Equal(t, http.StatusForbidden, p.status)
	assert.Equal(t, "1", counted("origin"))
	assert.Equal(t, "0", counted("token"))
	form.Set("csrf", "not-the-token")
	p = c.postRaw("/staff/documents", form, nil)
	assert.Equal(t, http.StatusForbidden, p.status)
	assert.Equal(t, "1", counted("token"))

	got := strings.TrimPrefix(logs.String(), before)
	origin := linesWith(got, "cross-origin form refused")
	require.Len(t, origin, 1, "one line for the cross-origin post: %s", got)
	assert.Contains(t, origin[0], "level=WARN")
	assert.Contains(t, origin[0], "path=/staff/documents")
	assert.Contains(t, origin[0], "origin_host=evil.example")
	assert.Equal(t, 1, strings.Count(got, "form without a valid CSRF token refused"))
	assert.NotContains(t, got, c.csrf, "no csrf token in the log")
	u, err := url.Parse(e.b.URL("/staff/"))
	require.NoError(t, err)
	for _, ck := range c.hc.Jar.Cookies(u) {
		assert.NotContains(t, got, ck.Value, "no cookie value (%s) in the log", ck.Name)
	}
	assert.NotContains(t, e.audit("user:"+itoa(e.ids[auth.RoleStaff])), "csrf", "not audited")
}

// forgedRefused is kluis_web_forged_forms_refused_total{reason} as
// /metrics exposes it.
func forgedRefused(t *testing.T, e *env, reason string) string {
	t.Helper()
	res, err := http.Get(e.b.URL("/metrics"))
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^kluis_web_forged_forms_refused_total\{reason="` + reason + `"\} (\S+)$`).FindStringSubmatch(string(b))
	require.NotNil(t, m, "the counter with reason %s is exposed", reason)
	return m[1]
}

// TestLoginFormForgedTokenLoggedAndCounted: the login form's wrong or
// missing double-submit token was refused 403 with no log line and no
// count. It now logs one WARN per refusal (whether the cookie and the
// field came, never their values) and counts in
// kluis_web_forged_forms_refused_total{reason="login_token"}; not audited.
func TestLoginFormForgedTokenLoggedAndCounted(t *testing.T) {
	logs := &servertest.SyncBuffer{}
	e := newEnv(t, server.Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	c := e.client()
	p := c.get("/staff/login")
	require.Equal(t, 200, p.status)
	tok := csrfField.FindStringSubmatch(p.body)[1]
	before := logs.String()
	assert.Equal(t, "0", forgedRefused(t, e, "login_token"))

	user := e.users[auth.RoleStaff]
	p = c.postRaw("/staff/login", url.Values{"login_token": {"not-the-token"}, "username": {user}, "password": {password(auth.RoleStaff)}}, nil)
	assert.Equal(t, http.StatusForbidden, p.status)
	p = c.postRaw("/staff/login", url.Values{"username": {user}, "password": {password(auth.RoleStaff)}}, nil)
	assert.Equal(t, http.StatusForbidden, p.status)
	assert.Equal(t, "2", forgedRefused(t, e, "login_token"))
	assert.Equal(t, "0", forgedRefused(t, e, "token"))
	assert.Equal(t, "0", forgedRefused(t, e, "origin"))

	got := strings.TrimPrefix(logs.String(), before)
	lines := linesWith(got, "login form without a valid token refused")
	require.Len(t, lines, 2, "one line per refusal: %s", got)
	for _, l := range lines {
		assert.Contains(t, l, "level=WARN")
		assert.Contains(t, l, "path=/staff/login")
		assert.Contains(t, l, "cookie_present=true")
	}
	assert.Contains(t, lines[0], "token_present=true")
	assert.Contains(t, lines[1], "token_present=false")
	assert.NotContains(t, got, tok, "no token in the log")
	assert.NotContains(t, got, "not-the-token", "no posted token in the log")
	assert.NotContains(t, got, password(auth.RoleStaff), "no password in the log")
	u, err := url.Parse(e.b.URL("/staff/"))
	require.NoError(t, err)
	for _, ck := range c.hc.Jar.Cookies(u) {
		assert.NotContains(t, got, ck.Value, "no cookie value (%s) in the log", ck.Name)
	}
	assert.NotContains(t, e.audit("user:"+itoa(e.ids[auth.RoleStaff])), "login_token", "not audited")
	assert.NotContains(t, e.audit("user:"+itoa(e.ids[auth.RoleStaff])), "login.failed", "not audited as a failed login")
}

// linesWith is the lines of log holding msg.
func linesWith(log, msg string) []string {
	var lines []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, msg) {
			lines = append(lines, l)
		}
	}
	return lines
}

// Served over HTTPS the console's cookies are __Host- cookies (Secure,
// Path=/, no Domain): a sibling subdomain cannot plant a session or login
// cookie the console takes, and a cookie without the prefix is not read.
// Over plain HTTP (development on loopback) they keep their names and
// Path=/staff/ (TestLoginSessionCSRFAndHeaders): browsers refuse a
// __Host- cookie there.
func TestConsoleCookiesAreHostCookiesOverHTTPS(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{PublicURL: "https://kluis.example"})
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, form url.Values, cookies ...*http.Cookie) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, e.b.URL(path), strings.NewReader(form.Encode()))
		require.NoError(t, err)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for _, c := range cookies {
			req.AddCookie(c)
		}
		res, err := hc.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res
	}
	set := func(res *http.Response, name string) *http.Cookie {
		t.Helper()
		for _, c := range res.Cookies() {
			if c.Name == name {
				return c
			}
		}
		t.Fatalf("no cookie %s in %v", name, res.Header.Values("Set-Cookie"))
		return nil
	}
	hostCookie := func(c *http.Cookie) {
		t.Helper()
		assert.True(t, c.Secure, c.Name)
		assert.Equal(t, "/", c.Path, c.Name)
		assert.Empty(t, c.Domain, c.Name)
		assert.True(t, c.HttpOnly, c.Name)
	}

	res := do("GET", "/staff/login", nil)
	require.Equal(t, 200, res.StatusCode)
	login := set(res, "__Host-kluis_staff_login")
	hostCookie(login)
	form := url.Values{"login_token": {login.Value}, "username": {e.users[auth.RoleStaff]}, "password": {password(auth.RoleStaff)}}
	res = do("POST", "/staff/login", form, &http.Cookie{Name: "kluis_staff_login", Value: login.Value})
	assert.Equal(t, http.StatusForbidden, res.StatusCode, "a login cookie without the prefix is not read")
	res = do("POST", "/staff/login", form, &http.Cookie{Name: login.Name, Value: login.Value})
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	sess := set(res, "__Host-kluis_staff")
	hostCookie(sess)

	res = do("GET", "/staff/documents", nil, &http.Cookie{Name: sess.Name, Value: sess.Value})
	assert.Equal(t, 200, res.StatusCode)
	res = do("GET", "/staff/documents", nil, &http.Cookie{Name: "kluis_staff", Value: sess.Value})
	assert.Equal(t, http.StatusSeeOther, res.StatusCode, "a session cookie without the prefix (planted by a sibling) is not read")
	res = do("GET", "/staff/documents?lang=fr", nil, &http.Cookie{Name: sess.Name, Value: sess.Value})
	hostCookie(set(res, "__Host-kluis_staff_lang"))
}
