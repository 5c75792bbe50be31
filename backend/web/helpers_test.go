package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"kluis/backend/api/apiclient"
	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/server/servertest"
	"kluis/backend/store"
	"kluis/backend/web"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

// env is a real backend (in-process, private database, embedded broker)
// with a site, a locker "k1" whose kluisd is played by a fake device over
// MQTT, an automaton "a1" that never connected, and a user of each role.
type env struct {
	t     *testing.T
	b     *servertest.Backend
	users map[auth.Role]string // role -> user name; password = password(role)
	ids   map[auth.Role]int64
	dev   *fakeDevice
}

func password(r auth.Role) string { return "a long " + string(r) + " password" }

const (
	siteID   = "kortrijk"
	lockerID = "k1"
	autoID   = "a1"
)

func newEnv(t *testing.T, o server.Options) *env {
	t.Helper()
	e := &env{t: t, b: servertest.Start(t, o), users: map[auth.Role]string{}, ids: map[auth.Role]int64{}}
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		require.NoError(t, err)
	}
	for _, r := range auth.Roles() {
		name := "web-" + string(r)
		var u struct {
			ID int64 `json:"id"`
		}
		must(e.b.Call(ctx, "POST", "/api/v1/users", map[string]string{"username": name, "password": password(r), "role": string(r)}, &u))
		e.users[r], e.ids[r] = name, u.ID
	}
	must(e.b.Call(ctx, "POST", "/api/v1/sites", map[string]string{"id": siteID, "name": "Stadhuis Kortrijk", "address": "Grote Markt 54"}, nil))
	var comps []map[string]any
	for i, h := range []int{40, 80, 110, 150, 170, 190} {
		comps = append(comps, map[string]any{"number": i + 1, "board": 0, "channel": i, "size": "M", "height_cm": h})
	}
	must(e.b.Call(ctx, "POST", "/api/v1/devices", map[string]any{"id": lockerID, "site_id": siteID, "kind": "locker",
		"name": "Kluis inkomhal", "compartments": comps,
		"layout": map[string]any{"columns": 3, "rows": 3, "screen": map[string]any{"column": 2, "row": 1, "height": 3}}}, nil))
	var slots []map[string]any
	for i := 0; i < 4; i++ {
		slots = append(slots, map[string]any{"board": 0, "channel": i, "size": "M", "height_cm": 100})
	}
	must(e.b.Call(ctx, "POST", "/api/v1/devices", map[string]any{"id": autoID, "site_id": siteID, "kind": "automaton",
		"name": "Automaat", "compartments": slots}, nil))
	pw, err := e.b.DevicePassword(ctx, lockerID)
	must(err)
	e.dev = connectDevice(t, e.b.Broker, lockerID, pw)
	e.dev.publish(wire.KindPresence, &wire.Presence{V: 1, State: wire.Online, Software: "kluisd 1.4.2"})
	e.dev.heartbeat(nil)
	// The automatic choice of a compartment only considers devices online
	// now: wait until the link has recorded k1's presence.
	e.waitPresence(wire.Online)
	return e
}

// waitPresence waits until the link has recorded k1's presence as state.
func (e *env) waitPresence(state wire.PresenceState) {
	e.t.Helper()
	pool := e.pool()
	testenv.Eventually(e.t, "k1's presence "+string(state), func() bool {
		var got string
		err := pool.QueryRow(context.Background(), `SELECT state FROM device_presence WHERE device_id = $1`, lockerID).Scan(&got)
		return err == nil && got == string(state)
	})
}

// goOffline has k1 tell the backend it is offline (as the broker's will
// does when its network goes) and waits until the link has recorded it.
func (e *env) goOffline() {
	e.t.Helper()
	e.dev.publish(wire.KindPresence, &wire.Presence{V: 1, State: wire.Offline, Software: "kluisd 1.4.2"})
	e.waitPresence(wire.Offline)
}

// presenceSince is when k1's presence last changed, as the console
// writes it in lang on a server whose clock reads now (consoleTime).
func (e *env) presenceSince(lang string, now time.Time) string {
	e.t.Helper()
	var since time.Time
	require.NoError(e.t, e.pool().QueryRow(context.Background(), `SELECT changed_at FROM device_presence WHERE device_id = $1`, lockerID).Scan(&since))
	return consoleTime(e.t, lang, since, now)
}

// consoleTime is ts as the console writes it in lang when the server's
// clock reads now: the clock time (fmt.clock) when ts is that day in
// Europe/Brussels, the date and clock time (fmt.datetime) otherwise. A
// test that expects it holds the server's clock (heldClock) and passes
// the moment held: on the real clock, a run crossing midnight there
// between the expectation and a page drawn later expected "23:59" where
// the page rightly wrote yesterday's date (TestLateDeviceSaysWhenAndAsks
// BeforeOpening from 22:59:50 UTC).
func consoleTime(t testing.TB, lang string, ts, now time.Time) string {
	t.Helper()
	brussels, err := time.LoadLocation("Europe/Brussels")
	require.NoError(t, err)
	ts, now = ts.In(brussels), now.In(brussels)
	layout := "fmt.datetime"
	if ts.Year() == now.Year() && ts.YearDay() == now.YearDay() {
		layout = "fmt.clock"
	}
	return ts.Format(web.Text(lang, layout))
}

// fakeDevice speaks the device side of the MQTT contract: it answers every
// open command "done" and counts them.
type fakeDevice struct {
	t  *testing.T
	c  paho.Client
	id string

	mu    sync.Mutex
	opens []wire.Command
	// answer is what it answers an open (default done); silent: nothing.
	answer wire.CommandStatus
	silent bool
}

// answerOpens sets what the device answers the next opens: status, or
// nothing at all when silent.
func (d *fakeDevice) answerOpens(status wire.CommandStatus, silent bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.answer, d.silent = status, silent
}

func connectDevice(t *testing.T, brokerAddr, id, pass string) *fakeDevice {
	t.Helper()
	d := &fakeDevice{t: t, id: id}
	o := paho.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID(id).SetUsername(id).SetPassword(pass).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
	d.c = paho.NewClient(o)
	tok := d.c.Connect()
	require.True(t, tok.WaitTimeout(20*time.Second), "connect timeout")
	require.NoError(t, tok.Error())
	t.Cleanup(func() { d.c.Disconnect(100) })
	topic, err := wire.TopicFor(id, wire.KindCommand)
	require.NoError(t, err)
	st := d.c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
		var c wire.Command
		if json.Unmarshal(m.Payload(), &c) != nil || c.Kind != wire.CmdOpen {
			return
		}
		d.mu.Lock()
		d.opens = append(d.opens, c)
		status, silent := d.answer, d.silent
		d.mu.Unlock()
		if silent {
			return
		}
		if status == "" {
			status = wire.StatusDone
		}
		res := &wire.CommandResult{V: 1, ID: c.ID, Status: status, At: time.Now().UTC()}
		if status != wire.StatusDone {
			res.Detail = "compartment out_of_order"
		}
		go d.publish(wire.KindCmdResult, res)
	})
	require.True(t, st.WaitTimeout(20*time.Second))
	require.NoError(t, st.Error())
	return d
}

func (d *fakeDevice) publish(kind wire.Kind, m wire.Message) {
	b, err := wire.Encode(m)
	if err != nil {
		d.t.Errorf("encode: %v", err)
		return
	}
	topic, _ := wire.TopicFor(d.id, kind)
	tok := d.c.Publish(topic, 1, false, b)
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		d.t.Errorf("publish %s: %v", kind, tok.Error())
	}
}

// heartbeat reports one board and six doors, those in open open.
func (d *fakeDevice) heartbeat(open map[int]bool) {
	var doors []hardware.ChannelState
	for ch := 0; ch < 6; ch++ {
		doors = append(doors, hardware.ChannelState{Addr: hardware.Address{Board: 0, Channel: ch}, Locked: !open[ch], DoorOpen: open[ch]})
	}
	d.publish(wire.KindHeartbeat, &wire.Heartbeat{V: 1, At: time.Now().UTC(), UptimeS: 3600, Backlog: 2, OfflineCache: 0,
		Boards: []wire.BoardHealth{{Address: 0, Online: true, Firmware: "kluisfw 2.1", Errors: 3, Reboots: 1, WatchdogRelocks: 2}}, Doors: doors, Software: "kluisd 1.4.2"})
}

func (d *fakeDevice) event(ev wire.Event) {
	ev.V = 1
	if ev.ID == "" {
		ev.ID = wire.NewID(time.Now())
	}
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	d.publish(wire.KindEvent, &ev)
}

func (d *fakeDevice) openCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.opens)
}

// client is a person's browser without JavaScript: cookies, forms.
type client struct {
	t    *testing.T
	e    *env
	hc   *http.Client
	csrf string
}

func (e *env) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: e.t, e: e, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// page is an answer.
type page struct {
	status   int
	body     string
	location string
	header   http.Header
}

// notice is the key of the notice a redirect leaves for its page (in
// the one-shot notice cookie), "" when none.
func (p page) notice() string {
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		if c.Name == "kluis_staff_notice" && c.MaxAge > 0 {
			v, err := url.ParseQuery(c.Value)
			if err != nil {
				return ""
			}
			return v.Get("key")
		}
	}
	return ""
}

var csrfField = regexp.MustCompile(`name="(?:csrf|login_token)" value="([^"]+)"`)

func (c *client) do(req *http.Request) page {
	c.t.Helper()
	res, err := c.hc.Do(req)
	require.NoError(c.t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	p := page{status: res.StatusCode, body: string(b), location: res.Header.Get("Location"), header: res.Header}
	if m := csrfField.FindStringSubmatch(p.body); m != nil && strings.Contains(m[0], `"csrf"`) {
		c.csrf = m[1]
	}
	return p
}

func (c *client) get(path string) page {
	c.t.Helper()
	req, err := http.NewRequest("GET", c.e.b.URL(path), nil)
	require.NoError(c.t, err)
	return c.do(req)
}

// post sends a form; the session's CSRF token is added unless the form has one.
func (c *client) post(path string, form url.Values) page {
	c.t.Helper()
	copied := url.Values{}
	for k, v := range form {
		copied[k] = append([]string(nil), v...)
	}
	form = copied
	if _, ok := form["csrf"]; !ok && c.csrf != "" {
		form.Set("csrf", c.csrf)
	}
	return c.postRaw(path, form, nil)
}

func (c *client) postRaw(path string, form url.Values, hdr http.Header) page {
	c.t.Helper()
	req, err := http.NewRequest("POST", c.e.b.URL(path), strings.NewReader(form.Encode()))
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	return c.do(req)
}

// login signs in as role and opens the start page (for the CSRF token).
func (c *client) login(role auth.Role) {
	c.t.Helper()
	p := c.get("/staff/login")
	require.Equal(c.t, 200, p.status, p.body)
	m := csrfField.FindStringSubmatch(p.body)
	require.NotNil(c.t, m, "login token")
	p = c.postRaw("/staff/login", url.Values{"login_token": {m[1]}, "username": {c.e.users[role]}, "password": {password(role)}}, nil)
	require.Equal(c.t, http.StatusSeeOther, p.status, p.body)
	p = c.get("/staff/devices")
	require.Equal(c.t, 200, p.status, p.body)
	require.NotEmpty(c.t, c.csrf)
}

// register registers a document through the API as admin and reserves it
// on the locker.
func (e *env) register(number string, low bool) string {
	e.t.Helper()
	id := e.registerOnly(number, low)
	require.NoError(e.t, e.b.Call(context.Background(), "POST", "/api/v1/documents/"+id+"/reserve", map[string]string{"device_id": lockerID}, nil))
	return id
}

// signInAgain gives the API calls (e.b.Call) a new admin session, after
// the server's clock ran past the old one's end.
func (e *env) signInAgain() {
	e.t.Helper()
	sess, err := apiclient.Login(context.Background(), &http.Client{Timeout: 30 * time.Second}, e.b.URL(""), e.b.Options.AdminUser, e.b.Options.AdminPassword)
	require.NoError(e.t, err)
	e.b.Token = sess.Token
}

// registerOnly registers a document through the API as admin, without
// reserving it.
func (e *env) registerOnly(number string, low bool) string {
	e.t.Helper()
	var d struct {
		ID string `json:"id"`
	}
	require.NoError(e.t, e.b.Call(context.Background(), "POST", "/api/v1/documents", map[string]any{"kind": "eid", "number": number,
		"holder_first_name": "Jan", "holder_last_name": "Peeters", "holder_birth_date": "1980-04-12", "language": "nl",
		"email": "jan@example.be", "site_id": siteID, "wants_low": low}, &d))
	return d.ID
}

func (e *env) document(id string) map[string]any {
	e.t.Helper()
	var d map[string]any
	require.NoError(e.t, e.b.Call(context.Background(), "GET", "/api/v1/documents/"+id, nil, &d))
	return d
}

func (e *env) audit(subject string) string {
	e.t.Helper()
	var v any
	require.NoError(e.t, e.b.Call(context.Background(), "GET", "/api/v1/audit?limit=200&subject="+url.QueryEscape(subject), nil, &v))
	b, _ := json.Marshal(v)
	return string(b)
}

func (e *env) compartmentOf(id string) int {
	d := e.document(id)
	cid := int64(d["compartment_id"].(float64))
	var dev struct {
		Compartments []struct {
			ID     int64 `json:"id"`
			Number int   `json:"number"`
		} `json:"compartments"`
	}
	require.NoError(e.t, e.b.Call(context.Background(), "GET", "/api/v1/devices/"+lockerID, nil, &dev))
	for _, c := range dev.Compartments {
		if c.ID == cid {
			return c.Number
		}
	}
	e.t.Fatalf("compartment %d not found", cid)
	return 0
}

// newConsoleEnv is an env for consoleDocuments: a residence card's
// pickup period is a second and housekeeping runs every half second, so
// that its residence card expires.
func newConsoleEnv(t *testing.T) *env {
	return newConsoleEnvOn(t, nil)
}

// newConsoleEnvOn is newConsoleEnv on the clock now (nil: time.Now).
func newConsoleEnvOn(t *testing.T, now func() time.Time) *env {
	return newEnv(t, server.Options{PickupPeriods: map[store.DocumentKind]time.Duration{store.ResidenceCard: time.Second},
		HousekeepEvery: 500 * time.Millisecond, Clock: now})
}

// heldClock is the real time until Hold, then the moment it was held at.
// A test sets up in real time (a pickup period runs out, the housekeeping
// expires the document), then holds the server's clock before it reads
// words that depend on how old something is (a heartbeat late after
// service.LateAfter): however long a loaded machine takes over the rest,
// the server sees no time pass.
type heldClock struct {
	at atomic.Pointer[time.Time] // nil until Hold
}

// Now is the real time, or the moment the clock was held at.
func (c *heldClock) Now() time.Time {
	if at := c.at.Load(); at != nil {
		return *at
	}
	return time.Now()
}

// Hold stops the clock now (once) and returns the moment it stands at.
func (c *heldClock) Hold() time.Time {
	now := time.Now()
	c.at.CompareAndSwap(nil, &now)
	return *c.at.Load()
}

// beatSince has k1 send a heartbeat and waits until the backend recorded
// one at or after at. (The device link records it on the real clock.)
func (e *env) beatSince(at time.Time) {
	e.t.Helper()
	e.dev.heartbeat(nil)
	pool := e.pool()
	testenv.Eventually(e.t, "k1's heartbeat recorded", func() bool {
		var got time.Time
		err := pool.QueryRow(context.Background(), `SELECT last_heartbeat_at FROM device_presence WHERE device_id = $1`, lockerID).Scan(&got)
		return err == nil && !got.Before(at.Truncate(time.Microsecond))
	})
}

// consoleDocuments registers what every list of the console shows (in an
// env of newConsoleEnv): a reserved
// eid, a passport ready with a slip and a residence card that expired,
// and raises a forced-door alarm on the device. n (1-9) keeps the
// document numbers of different tests apart.
func (e *env) consoleDocuments(t *testing.T, n int) (reserved, slipDoc, expired string) {
	t.Helper()
	ctx := context.Background()
	reserved = e.register(fmt.Sprintf("591-00000%d0-%d0", n, n), false)
	slipDoc = e.registerWith(map[string]any{"kind": "passport", "number": fmt.Sprintf("EP00000%d1", n), "holder_first_name": "Marie",
		"holder_last_name": "Dubois", "holder_birth_date": "1975-11-30", "language": "fr", "no_contact": true, "site_id": siteID})
	require.NoError(t, e.b.Call(ctx, "POST", "/api/v1/documents/"+slipDoc+"/load", nil, nil))
	expired = e.registerWith(map[string]any{"kind": "residence_card", "number": fmt.Sprintf("B00000%d2", n), "holder_first_name": "Ahmed",
		"holder_last_name": "El Amrani", "holder_birth_date": "1990-02-03", "language": "en", "email": "a@example.org", "site_id": siteID})
	require.NoError(t, e.b.Call(ctx, "POST", "/api/v1/documents/"+expired+"/load", nil, nil))
	testenv.Eventually(t, "the residence card to expire", func() bool { return e.document(expired)["state"] == "expired" })
	e.dev.event(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, Addr: &wire.Address{Board: 0, Channel: 1}})
	return reserved, slipDoc, expired
}
