package api_test

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/api"
	"kluis/backend/audit"
	"kluis/backend/auth"
	"kluis/backend/codes"
	"kluis/backend/deviceops"
	"kluis/backend/notify"
	"kluis/backend/store"
	"kluis/controller/pickupcode"
)

// recordingOpener stands in for the device link: it records calls and
// fails when told to.
type recordingOpener struct {
	mu    sync.Mutex
	calls []string
	fail  error
}

func (o *recordingOpener) snapshot() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.calls...)
}

func (o *recordingOpener) failWith(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.fail = err
}

func (o *recordingOpener) OpenCompartment(ctx context.Context, deviceID string, number int, reason, actor string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, fmt.Sprintf("%s/%d %s by %s", deviceID, number, reason, actor))
	return o.fail
}

// setupSite creates site "kortrijk" and device "kortrijk-1" with n compartments via the API.
func (e *env) setupSite(n int) {
	e.t.Helper()
	admin := e.tokens[auth.RoleAdmin]
	r := e.do("POST", "/api/v1/sites", admin, map[string]string{"id": "kortrijk", "name": "Stadhuis Kortrijk"})
	require.Equal(e.t, 201, r.status, string(r.body))
	comps := []map[string]any{}
	for i := 0; i < n; i++ {
		comps = append(comps, map[string]any{"channel": i, "size": "M", "height_cm": 150})
	}
	r = e.do("POST", "/api/v1/devices", admin, map[string]any{"id": "kortrijk-1", "site_id": "kortrijk", "kind": "locker", "compartments": comps})
	require.Equal(e.t, 201, r.status, string(r.body))
}

func newDoc(number string) map[string]any {
	return map[string]any{
		"kind": "eid", "number": number, "holder_first_name": "Jan", "holder_last_name": "Peeters",
		"holder_birth_date": "1980-04-12", "language": "nl", "email": "jan@example.be", "site_id": "kortrijk",
	}
}

func (e *env) register(number string) store.Document {
	e.t.Helper()
	r := e.do("POST", "/api/v1/documents", e.tokens[auth.RoleStaff], newDoc(number))
	require.Equal(e.t, 201, r.status, string(r.body))
	var d store.Document
	r.decode(e.t, &d)
	return d
}

func TestDocumentLifecycleOverHTTP(t *testing.T) {
	e := newEnv(t)
	e.setupSite(1)
	staff := e.tokens[auth.RoleStaff]

	doc := e.register("591-1234567-89")
	assert.Equal(t, "registered", string(doc.State))

	r := e.do("GET", "/api/v1/documents/"+doc.ID, staff, nil)
	require.Equal(t, 200, r.status)
	var view struct {
		State   string           `json:"state"`
		History []map[string]any `json:"history"`
	}
	r.decode(t, &view)
	assert.Equal(t, "registered", view.State)

	// Forbidden transition: retrieve a registered document.
	r = e.do("POST", "/api/v1/documents/"+doc.ID+"/retrieve", staff, nil)
	assert.Equal(t, 409, r.status)
	assert.Equal(t, "forbidden_transition", r.errCode())
	assert.Contains(t, string(r.body), "cannot retrieve a document that is registered")

	r = e.do("POST", "/api/v1/documents/"+doc.ID+"/reserve", staff, map[string]string{"device_id": "kortrijk-1"})
	require.Equal(t, 200, r.status, string(r.body))
	var d store.Document
	r.decode(t, &d)
	assert.Equal(t, "reserved", string(d.State))
	assert.Equal(t, "kortrijk-1", d.DeviceID)

	// The only compartment is taken: a second document finds none.
	doc2 := e.register("591-7654321-00")
	r = e.do("POST", "/api/v1/documents/"+doc2.ID+"/reserve", staff, nil)
	assert.Equal(t, 409, r.status)
	assert.Equal(t, "no_compartment", r.errCode())

	r = e.do("POST", "/api/v1/documents/"+doc.ID+"/load", staff, "")
	require.Equal(t, 200, r.status, string(r.body))
	r.decode(t, &d)
	assert.Equal(t, "loaded", string(d.State))
	assert.NotNil(t, d.Deadline)

	r = e.do("POST", "/api/v1/documents/"+doc.ID+"/reissue", staff, map[string]any{})
	require.Equal(t, 200, r.status, string(r.body))
	var re api.Reissued
	r.decode(t, &re)
	assert.Equal(t, doc.ID, re.ID)
	assert.True(t, re.OldCodeOpensOffline, "the device never connected: the old code still opens there offline")
	assert.Equal(t, api.ReissueOfflineWarning, re.Warning)
	r = e.do("POST", "/api/v1/documents/"+doc.ID+"/renotify", staff, nil)
	assert.Equal(t, 409, r.status, "renotify needs a notified document")
	r = e.do("POST", "/api/v1/documents/"+doc.ID+"/reserve", staff, map[string]any{"device": "x"})
	assert.Equal(t, 400, r.status)
	assert.Equal(t, "unknown_field", r.errCode())

	r = e.do("POST", "/api/v1/documents/"+doc.ID+"/retrieve", staff, nil)
	require.Equal(t, 200, r.status, string(r.body))
	r = e.do("POST", "/api/v1/documents/"+doc.ID+"/cancel", staff, map[string]string{"reason": "too late"})
	assert.Equal(t, 409, r.status)
	assert.Equal(t, "forbidden_transition", r.errCode())

	// doc2 gets the compartment after doc is retrieved; unreserve gives it back.
	r = e.do("POST", "/api/v1/documents/"+doc2.ID+"/reserve", staff, nil)
	require.Equal(t, 200, r.status, string(r.body))
	r = e.do("POST", "/api/v1/documents/"+doc2.ID+"/unreserve", staff, nil)
	require.Equal(t, 200, r.status, string(r.body))
	d = store.Document{}
	r.decode(t, &d)
	assert.Equal(t, "registered", string(d.State))
	assert.Empty(t, d.DeviceID, "an unreserved document has no device")
	assert.Zero(t, d.CompartmentID)
	r = e.do("GET", "/api/v1/documents/"+doc2.ID, staff, nil)
	require.Equal(t, 200, r.status)
	assert.NotContains(t, string(r.body), `"device_id":"kortrijk-1"`, "nor when read back")
	r = e.do("POST", "/api/v1/documents/"+doc2.ID+"/collect", staff, nil)
	assert.Equal(t, 409, r.status, "a registered document cannot be collected")
	assert.Equal(t, "forbidden_transition", r.errCode())

	r = e.do("POST", "/api/v1/documents/"+doc2.ID+"/cancel", staff, map[string]string{"reason": "holder moved"})
	require.Equal(t, 200, r.status, string(r.body))

	r = e.do("GET", "/api/v1/documents/"+doc.ID, staff, nil)
	require.Equal(t, 200, r.status)
	r.decode(t, &view)
	assert.Equal(t, "retrieved", view.State)
	require.Len(t, view.History, 5) // register, reserve, load, reissue, retrieve
	assert.Equal(t, "register", view.History[0]["action"])
	assert.Equal(t, fmt.Sprintf("user:%d", e.users[auth.RoleStaff].ID), view.History[0]["actor"])

	r = e.do("GET", "/api/v1/documents/00000000-0000-0000-0000-000000000000", staff, nil)
	assert.Equal(t, 404, r.status)
	assert.Equal(t, "not_found", r.errCode())

	// The gauge counts documents by state from the database.
	r = e.do("GET", "/metrics", "", nil)
	assert.Contains(t, string(r.body), `kluis_documents{state="retrieved"} 1`)
	assert.Contains(t, string(r.body), `kluis_documents{state="cancelled"} 1`)
}

func TestRegisterValidation(t *testing.T) {
	e := newEnv(t)
	e.setupSite(1)
	staff := e.tokens[auth.RoleStaff]
	bad := newDoc("x")
	bad["language"] = "xx"
	delete(bad, "email")
	r := e.do("POST", "/api/v1/documents", staff, bad)
	require.Equal(t, 400, r.status, string(r.body))
	assert.Equal(t, "invalid_input", r.errCode())
	var body struct {
		Error struct {
			Details struct {
				Fields []store.FieldError `json:"fields"`
			} `json:"details"`
		} `json:"error"`
	}
	r.decode(t, &body)
	var fields []string
	for _, f := range body.Error.Details.Fields {
		fields = append(fields, f.Field)
	}
	assert.Contains(t, fields, "number")
	assert.Contains(t, fields, "language")
	assert.Contains(t, fields, "email")

	bad = newDoc("591-1234567-89")
	bad["holder_birth_date"] = "12/04/1980"
	r = e.do("POST", "/api/v1/documents", staff, bad)
	assert.Equal(t, 400, r.status)
	assert.Equal(t, "invalid_input", r.errCode())
	assert.Contains(t, string(r.body), "holder_birth_date")

	// 0001-01-01 is Go's zero time: it is a date before 1900, not a
	// missing one; the other refused fields are named with it.
	for _, date := range []string{"0001-01-01", "0001-01-02", "1899-12-31"} {
		bad = newDoc("591-1234567-89")
		bad["holder_birth_date"] = date
		bad["language"] = "xx"
		r = e.do("POST", "/api/v1/documents", staff, bad)
		require.Equal(t, 400, r.status, string(r.body))
		assert.Equal(t, "invalid_input", r.errCode())
		body.Error.Details.Fields = nil
		r.decode(t, &body)
		assert.Contains(t, body.Error.Details.Fields, store.FieldError{Field: "holder_birth_date", Message: "is before 1900"}, date)
		assert.Contains(t, fieldNames(body.Error.Details.Fields), "language", date)
	}
	bad = newDoc("591-1234567-89")
	delete(bad, "holder_birth_date")
	r = e.do("POST", "/api/v1/documents", staff, bad)
	require.Equal(t, 400, r.status, string(r.body))
	body.Error.Details.Fields = nil
	r.decode(t, &body)
	assert.Contains(t, body.Error.Details.Fields, store.FieldError{Field: "holder_birth_date", Message: "is required"})

	bad = newDoc("591-1234567-89")
	bad["wants_low"] = "yes"
	r = e.do("POST", "/api/v1/documents", staff, bad)
	assert.Equal(t, 400, r.status)
	assert.Equal(t, "wrong_type", r.errCode())
	assert.Contains(t, string(r.body), "wants_low")

	bad = newDoc("591-1234567-89")
	bad["site_id"] = "nowhere"
	r = e.do("POST", "/api/v1/documents", staff, bad)
	assert.Contains(t, []int{400, 404}, r.status, "unknown site: %s", r.body)

	r = e.do("POST", "/api/v1/devices", e.tokens[auth.RoleAdmin], map[string]any{"id": "d9", "site_id": "nowhere", "kind": "locker",
		"compartments": []map[string]any{{"channel": 0, "size": "S"}}})
	assert.Contains(t, []int{400, 404}, r.status, "device at unknown site: %s", r.body)
	r = e.do("POST", "/api/v1/devices/kortrijk-1/compartments/1/open", e.tokens[auth.RoleAdmin], map[string]any{"reason": "line\nbreak\u0000"})
	assert.Equal(t, 400, r.status, string(r.body))
	assert.Equal(t, "invalid_input", r.errCode())

	r = e.do("GET", "/api/v1/documents?state=lost", staff, nil)
	assert.Equal(t, 400, r.status)
	assert.Equal(t, "invalid_filter", r.errCode())

	// Duplicate site: 409 conflict, not 500.
	r = e.do("POST", "/api/v1/sites", e.tokens[auth.RoleAdmin], map[string]string{"id": "kortrijk", "name": "again"})
	assert.Equal(t, 409, r.status, string(r.body))
}

func TestDocumentRegistrationIdempotent(t *testing.T) {
	e := newEnv(t)
	e.setupSite(1)
	staff := e.tokens[auth.RoleStaff]
	r1 := e.do("POST", "/api/v1/documents", staff, newDoc("591-1111111-11"), "Idempotency-Key", "reg-1")
	require.Equal(t, 201, r1.status, string(r1.body))
	r2 := e.do("POST", "/api/v1/documents", staff, newDoc("591-1111111-11"), "Idempotency-Key", "reg-1")
	require.Equal(t, 201, r2.status)
	assert.Equal(t, "true", r2.header.Get(api.ReplayedHeader))
	assert.JSONEq(t, string(r1.body), string(r2.body))
	r3 := e.do("POST", "/api/v1/documents", staff, newDoc("591-2222222-22"), "Idempotency-Key", "reg-1")
	assert.Equal(t, 422, r3.status)
	assert.Equal(t, "idempotency_key_reused", r3.errCode())

	r := e.do("GET", "/api/v1/documents", staff, nil)
	var page struct {
		Total int `json:"total"`
	}
	r.decode(t, &page)
	assert.Equal(t, 1, page.Total, "the replay must not register a second document")
}

func TestDocumentPagination(t *testing.T) {
	e := newEnv(t)
	e.setupSite(1)
	staff := e.tokens[auth.RoleStaff]
	want := map[string]bool{}
	for i := 0; i < 5; i++ {
		want[e.register(fmt.Sprintf("591-000000%d-00", i)).ID] = true
	}
	got := map[string]bool{}
	path := "/api/v1/documents?state=registered&limit=2"
	pages := 0
	for path != "" && pages < 10 {
		r := e.do("GET", path, staff, nil)
		require.Equal(t, 200, r.status, string(r.body))
		var p struct {
			api.Page[store.Document]
			Total int `json:"total"`
		}
		r.decode(t, &p)
		assert.Equal(t, 5, p.Total)
		for _, d := range p.Items {
			assert.False(t, got[d.ID], "document %s on two pages", d.ID)
			got[d.ID] = true
		}
		if p.Next != "" {
			assert.Contains(t, p.Next, "state=registered")
		}
		path = p.Next
		pages++
	}
	assert.Equal(t, 3, pages)
	assert.Equal(t, want, got)

	r := e.do("GET", "/api/v1/documents?state=loaded", staff, nil)
	var p api.Page[store.Document]
	r.decode(t, &p)
	assert.Empty(t, p.Items)
	assert.Empty(t, p.NextCursor)

	r = e.do("GET", "/api/v1/devices?limit=1", staff, nil)
	require.Equal(t, 200, r.status)
	var dp api.Page[store.Device]
	r.decode(t, &dp)
	require.Len(t, dp.Items, 1)
	assert.Empty(t, dp.NextCursor)
}

func TestCompartmentServiceAndRemoteOpen(t *testing.T) {
	opener := &recordingOpener{}
	e := newEnv(t, func(o *api.Options) { o.Opener = opener })
	e.setupSite(2)
	tech := e.tokens[auth.RoleTechnician]

	r := e.do("GET", "/api/v1/devices/kortrijk-1", tech, nil)
	require.Equal(t, 200, r.status)
	var dev store.Device
	r.decode(t, &dev)
	require.Len(t, dev.Compartments, 2)

	r = e.do("PATCH", "/api/v1/devices/kortrijk-1/compartments/2", tech, map[string]any{"out_of_service": true, "reason": "lock jammed"})
	require.Equal(t, 200, r.status, string(r.body))
	var c store.Compartment
	r.decode(t, &c)
	assert.Equal(t, store.CompartmentOutOfService, c.State)
	r = e.do("PATCH", "/api/v1/devices/kortrijk-1/compartments/9", tech, map[string]any{"out_of_service": true})
	assert.Equal(t, 404, r.status)
	r = e.do("PATCH", "/api/v1/devices/kortrijk-1/compartments/0", tech, map[string]any{"out_of_service": true})
	assert.Equal(t, 400, r.status)
	r = e.do("PATCH", "/api/v1/devices/kortrijk-1/compartments/1", tech, map[string]any{})
	assert.Equal(t, 400, r.status)
	assert.Equal(t, "missing_field", r.errCode())

	r = e.do("POST", "/api/v1/devices/kortrijk-1/compartments/1/open", tech, map[string]any{})
	assert.Equal(t, 400, r.status)
	assert.Equal(t, "missing_field", r.errCode())
	r = e.do("POST", "/api/v1/devices/kortrijk-1/compartments/1/open", tech, map[string]any{"reason": strings.Repeat("x", 201)})
	assert.Equal(t, 400, r.status)
	r = e.do("POST", "/api/v1/devices/kortrijk-1/compartments/1/open", tech, map[string]any{"reason": strings.Repeat("€", 100)})
	assert.Equal(t, 400, r.status, "300 bytes exceed the device protocol's limit")
	r = e.do("POST", "/api/v1/devices/nowhere/compartments/1/open", tech, map[string]any{"reason": "test"})
	assert.Equal(t, 404, r.status)
	require.Empty(t, opener.snapshot(), "refused requests must not reach the device")

	// A device that never connected (no presence row) is refused: the
	// command could only expire. Nothing is sent and nothing audited.
	r = e.do("POST", "/api/v1/devices/kortrijk-1/compartments/1/open", tech, map[string]any{"reason": "door check"})
	assert.Equal(t, 409, r.status)
	assert.Equal(t, "never_connected", r.errCode())
	require.Empty(t, opener.snapshot(), "an open to a device that never connected must not be sent")
	// Once it connected, offline now or not, the open is sent as before.
	_, err := e.st.Pool().Exec(context.Background(), `INSERT INTO device_presence (device_id, state, changed_at) VALUES ('kortrijk-1', 'offline', now())`)
	require.NoError(t, err)

	r = e.do("POST", "/api/v1/devices/kortrijk-1/compartments/1/open", tech, map[string]any{"reason": "door check"})
	require.Equal(t, 200, r.status, string(r.body))
	calls := opener.snapshot()
	require.Len(t, calls, 1)
	assert.Equal(t, fmt.Sprintf("kortrijk-1/1 door check by user:%d", e.users[auth.RoleTechnician].ID), calls[0])

	opener.failWith(errors.New("no ack within 10s"))
	r = e.do("POST", "/api/v1/devices/kortrijk-1/compartments/1/open", tech, map[string]any{"reason": "second try"})
	assert.Equal(t, 503, r.status)
	assert.Equal(t, "device_unreachable", r.errCode())

	recs, err := audit.List(context.Background(), e.st.Pool(), audit.ListOptions{Subject: "device:kortrijk-1"})
	require.NoError(t, err)
	var results []string
	for _, rc := range recs {
		if rc.Action == "compartment.remote_open" {
			results = append(results, string(rc.Details))
		}
	}
	require.Len(t, results, 2)
	assert.Contains(t, results[0], `"result":"opened"`)
	assert.Contains(t, results[0], `"reason":"door check"`)
	assert.Contains(t, results[1], `"result":"failed"`)
}

func TestRemoteOpenWithoutDeviceLink(t *testing.T) {
	e := newEnv(t)
	e.setupSite(1)
	r := e.do("POST", "/api/v1/devices/kortrijk-1/compartments/1/open", e.tokens[auth.RoleAdmin], map[string]any{"reason": "test"})
	assert.Equal(t, 503, r.status)
	assert.Equal(t, "device_link_unavailable", r.errCode())
}

func TestSlipAndTrackPage(t *testing.T) {
	e := newEnv(t, func(o *api.Options) {
		o.Notifications = func(ctx context.Context, id string) ([]api.NotificationRecord, error) {
			return []api.NotificationRecord{{Kind: "loaded", Channel: "slip", Status: "sent"}}, nil
		}
		o.Slip = func(ctx context.Context, d store.Document) ([]byte, error) {
			return []byte("<html>slip " + d.ID + "</html>"), nil
		}
		o.TrackPage = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, "<html>track %s</html>", r.PathValue("trackingID"))
		})
	})
	e.setupSite(1)
	doc := e.register("591-3333333-33")
	r := e.do("GET", "/api/v1/documents/"+doc.ID, e.tokens[auth.RoleStaff], nil)
	require.Equal(t, 200, r.status)
	assert.Contains(t, string(r.body), `"notifications":[{"kind":"loaded","channel":"slip","status":"sent"`)
	r = e.do("GET", "/api/v1/documents/"+doc.ID+"/slip", e.tokens[auth.RoleStaff], nil)
	require.Equal(t, 200, r.status, string(r.body))
	assert.Equal(t, "text/html; charset=utf-8", r.header.Get("Content-Type"))
	assert.Equal(t, "<html>slip "+doc.ID+"</html>", string(r.body))

	r = e.do("GET", "/t/abc123", "", nil)
	require.Equal(t, 200, r.status)
	assert.Equal(t, "<html>track abc123</html>", string(r.body))

	r = e.do("GET", "/metrics", "", nil)
	assert.Contains(t, string(r.body), `route="GET /t/{trackingID}"`)
	assert.NotContains(t, string(r.body), "abc123")
}

func TestDevicePresence(t *testing.T) {
	since := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	e := newEnv(t, func(o *api.Options) {
		o.Presence = func(ctx context.Context, id string) (api.Presence, bool, error) {
			if id != "kortrijk-1" {
				return api.Presence{}, false, nil
			}
			return api.Presence{Online: true, Since: since, Software: "kluisd 1.0"}, true, nil
		}
	})
	e.setupSite(1)
	admin := e.tokens[auth.RoleAdmin]
	r := e.do("POST", "/api/v1/devices", admin, map[string]any{"id": "kortrijk-2", "site_id": "kortrijk", "kind": "automaton",
		"compartments": []map[string]any{{"channel": 0, "size": "S"}}})
	require.Equal(t, 201, r.status, string(r.body))

	r = e.do("GET", "/api/v1/devices/kortrijk-1", e.tokens[auth.RoleTechnician], nil)
	require.Equal(t, 200, r.status)
	var d struct {
		Presence *api.Presence `json:"presence"`
	}
	r.decode(t, &d)
	require.NotNil(t, d.Presence)
	assert.True(t, d.Presence.Online)
	assert.Equal(t, since, d.Presence.Since)

	r = e.do("GET", "/api/v1/devices", e.tokens[auth.RoleTechnician], nil)
	require.Equal(t, 200, r.status)
	var page struct {
		Items []struct {
			ID       string        `json:"id"`
			Presence *api.Presence `json:"presence"`
		} `json:"items"`
	}
	r.decode(t, &page)
	require.Len(t, page.Items, 2)
	for _, it := range page.Items {
		if it.ID == "kortrijk-1" {
			assert.NotNil(t, it.Presence)
		} else {
			assert.Nil(t, it.Presence, it.ID)
		}
	}
}

// Devices take directions per language on create and answer with them.
func TestDeviceDirections(t *testing.T) {
	e := newEnv(t)
	e.setupSite(1)
	admin := e.tokens[auth.RoleAdmin]
	r := e.do("POST", "/api/v1/devices", admin, map[string]any{"id": "kortrijk-2", "site_id": "kortrijk", "kind": "locker",
		"directions":   map[string]string{"nl": "In de inkomhal, links van de trap.", "en": "In the entrance hall, left of the stairs."},
		"compartments": []map[string]any{{"channel": 0, "size": "S"}}})
	require.Equal(t, 201, r.status, string(r.body))
	r = e.do("GET", "/api/v1/devices/kortrijk-2", e.tokens[auth.RoleStaff], nil)
	require.Equal(t, 200, r.status)
	var d struct {
		Directions map[string]string `json:"directions"`
	}
	r.decode(t, &d)
	assert.Equal(t, map[string]string{"nl": "In de inkomhal, links van de trap.", "en": "In the entrance hall, left of the stairs."}, d.Directions)
	r = e.do("GET", "/api/v1/devices/kortrijk-1", e.tokens[auth.RoleStaff], nil)
	assert.Contains(t, string(r.body), `"directions":{}`, "none: an empty object")

	r = e.do("POST", "/api/v1/devices", admin, map[string]any{"id": "kortrijk-3", "site_id": "kortrijk", "kind": "locker",
		"directions":   map[string]string{"es": "en el vestíbulo"},
		"compartments": []map[string]any{{"channel": 0, "size": "S"}}})
	assert.Equal(t, 400, r.status, string(r.body))
	assert.Equal(t, "invalid_input", r.errCode())
	assert.Contains(t, string(r.body), "directions")
}

func TestDeviceMQTTPassword(t *testing.T) {
	var mu sync.Mutex
	set := map[string]string{}
	e := newEnv(t, func(o *api.Options) {
		o.DevicePassword = func(ctx context.Context, id, pw string) error {
			mu.Lock()
			defer mu.Unlock()
			set[id] = pw
			return nil
		}
	})
	e.setupSite(1)
	admin := e.tokens[auth.RoleAdmin]
	r := e.do("POST", "/api/v1/devices/kortrijk-1/mqtt-password", admin, nil)
	require.Equal(t, 201, r.status, string(r.body))
	var got map[string]string
	r.decode(t, &got)
	assert.Equal(t, "kortrijk-1", got["username"])
	assert.GreaterOrEqual(t, len(got["password"]), 32)
	mu.Lock()
	assert.Equal(t, got["password"], set["kortrijk-1"])
	mu.Unlock()
	r = e.do("POST", "/api/v1/devices/nowhere/mqtt-password", admin, nil)
	assert.Equal(t, 404, r.status)

	recs, err := audit.List(context.Background(), e.st.Pool(), audit.ListOptions{Subject: "device:kortrijk-1"})
	require.NoError(t, err)
	require.NotEmpty(t, recs)
	assert.Equal(t, "device.mqtt_password_set", recs[len(recs)-1].Action)
	assert.NotContains(t, string(recs[len(recs)-1].Details), got["password"])

	// Without the embedded broker the route says so.
	e2 := newEnv(t)
	e2.setupSite(1)
	r = e2.do("POST", "/api/v1/devices/kortrijk-1/mqtt-password", e2.tokens[auth.RoleAdmin], nil)
	assert.Equal(t, 503, r.status)
	assert.Equal(t, "unavailable", r.errCode())
}

// Names shown to people (site, device, holder and token names) and the
// reasons of staff actions refuse control and bidirectional-control
// characters over HTTP, with a 400 that names the field.
func TestNamesRefuseBidiOverHTTP(t *testing.T) {
	e := newEnv(t)
	e.setupSite(1)
	admin, staff := e.tokens[auth.RoleAdmin], e.tokens[auth.RoleStaff]
	for _, bad := range []string{"evil\u202Etxt.exe", "iso\u2067late", "nul\u0000", "esc\u001b[2J", "zw\u200Bsp"} {
		r := e.do("POST", "/api/v1/sites", admin, map[string]string{"id": "gent", "name": bad})
		assert.Equal(t, 400, r.status, "site %q: %s", bad, r.body)
		assert.Equal(t, "invalid_input", r.errCode())
		assert.Contains(t, string(r.body), `"field":"name"`)

		r = e.do("POST", "/api/v1/devices", admin, map[string]any{"id": "gent-1", "site_id": "kortrijk", "kind": "locker", "name": bad,
			"compartments": []map[string]any{{"channel": 0, "size": "M"}}})
		assert.Equal(t, 400, r.status, "device %q: %s", bad, r.body)
		assert.Contains(t, string(r.body), `"field":"name"`)

		doc := newDoc("591-7654321-00")
		doc["holder_last_name"] = bad
		r = e.do("POST", "/api/v1/documents", staff, doc)
		assert.Equal(t, 400, r.status, "holder %q: %s", bad, r.body)
		assert.Contains(t, string(r.body), `"field":"holder_last_name"`)

		r = e.do("POST", "/api/v1/tokens", staff, map[string]string{"name": bad})
		assert.Equal(t, 400, r.status, "token %q: %s", bad, r.body)
		// A NUL is refused for every body field before the name rule.
		assert.Contains(t, []string{"invalid_name", "invalid_input"}, r.errCode())
		if !strings.Contains(bad, "\u0000") {
			assert.Equal(t, "invalid_name", r.errCode())
		}

		r = e.do("PATCH", "/api/v1/devices/kortrijk-1/compartments/1", e.tokens[auth.RoleTechnician],
			map[string]any{"out_of_service": true, "reason": bad})
		assert.Equal(t, 400, r.status, "reason %q: %s", bad, r.body)
	}
	r := e.do("POST", "/api/v1/sites", admin, map[string]string{"id": "gent", "name": "Hôtel de Ville — Gent"})
	assert.Equal(t, 201, r.status, string(r.body))
	r = e.do("POST", "/api/v1/tokens", staff, map[string]string{"name": "   "})
	assert.Equal(t, 400, r.status)
	assert.Equal(t, "invalid_name", r.errCode())
}

// Staff, technicians and admins lift a device's PIN lockout over HTTP
// (issue 10: the documented staff unlock had no route): the backend's lock
// goes at once, audited with who, which device and why; the answer says
// what the device was told (here: no device link).
func TestClearDeviceLockoutOverHTTP(t *testing.T) {
	var lockouts *deviceops.Lockouts
	e := newEnv(t, func(o *api.Options) { o.Lockouts = lockoutsFunc(func() api.LockoutClearer { return lockouts }) })
	keys, err := codes.GenerateKeys()
	require.NoError(t, err)
	cs, err := codes.New(codes.Options{Pool: e.st.Pool(), Keys: keys, Logger: quietLogger(), Argon: pickupcode.ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1}})
	require.NoError(t, err)
	lockouts, err = deviceops.NewLockouts(deviceops.LockoutsOptions{Codes: cs, Pool: e.st.Pool(), Logger: quietLogger()})
	require.NoError(t, err)
	e.setupSite(1)
	ctx := context.Background()
	lock := func() {
		for i := 0; i < pickupcode.DeviceMaxFailures; i++ {
			_, err := cs.Verify(ctx, codes.Attempt{DeviceID: "kortrijk-1", PIN: "000000001", BirthDate: "1990-01-01"})
			require.ErrorIs(t, err, pickupcode.ErrWrongCode)
		}
		until, err := cs.LockedUntil(ctx, "kortrijk-1")
		require.NoError(t, err)
		require.False(t, until.IsZero(), "locked")
	}
	path := "/api/v1/devices/kortrijk-1/clear-lockout"
	r := e.do("POST", path, e.tokens[auth.RoleStaff], map[string]any{})
	assert.Equal(t, 400, r.status, "a reason is required")
	assert.Equal(t, "missing_field", r.errCode())
	r = e.do("POST", "/api/v1/devices/nowhere/clear-lockout", e.tokens[auth.RoleStaff], map[string]any{"reason": "x"})
	assert.Equal(t, 404, r.status)

	for _, role := range []auth.Role{auth.RoleStaff, auth.RoleTechnician, auth.RoleAdmin} {
		lock()
		r = e.do("POST", path, e.tokens[role], map[string]any{"reason": "citizen at the desk, ticket " + string(role)})
		require.Equal(t, 200, r.status, "%s: %s", role, r.body)
		var res api.LockoutCleared
		r.decode(t, &res)
		assert.True(t, res.WasLocked, role)
		assert.Nil(t, res.LockedUntil, role)
		assert.Equal(t, deviceops.DeviceNotSent, res.Device.Status, role)
		until, err := cs.LockedUntil(ctx, "kortrijk-1")
		require.NoError(t, err)
		assert.True(t, until.IsZero(), "%s: PIN entry is open again", role)
	}
	recs, err := audit.List(ctx, e.st.Pool(), audit.ListOptions{Subject: "device:kortrijk-1"})
	require.NoError(t, err)
	var who []string
	for _, rc := range recs {
		if rc.Action == "device.pin_unlocked" {
			who = append(who, rc.Actor)
			assert.Contains(t, string(rc.Details), "citizen at the desk")
		}
	}
	assert.Equal(t, []string{fmt.Sprintf("user:%d", e.users[auth.RoleStaff].ID), fmt.Sprintf("user:%d", e.users[auth.RoleTechnician].ID),
		fmt.Sprintf("user:%d", e.users[auth.RoleAdmin].ID)}, who)

	e2 := newEnv(t)
	e2.setupSite(1)
	r = e2.do("POST", path, e2.tokens[auth.RoleStaff], map[string]any{"reason": "x"})
	assert.Equal(t, 503, r.status)
	assert.Equal(t, "unavailable", r.errCode())
}

// lockoutsFunc resolves the clearer late (it needs the env's database).
type lockoutsFunc func() api.LockoutClearer

func (f lockoutsFunc) ClearLockout(ctx context.Context, deviceID, reason, actor string) (api.LockoutCleared, error) {
	return f().ClearLockout(ctx, deviceID, reason, actor)
}

// A compartment with a document behind its door (loaded, notified or
// expired) is opened remotely for an admin only: a technician is refused
// 403 compartment_occupied, nothing is sent, and the attempt is audited
// compartment.open_refused with the document and the reason; the
// admin's open is audited with the document. Before, a technician opened
// it like an empty one and the audit record did not say a document was
// inside. A reserved compartment (nothing loaded yet) stays a
// technician's.
func TestRemoteOpenOfAnOccupiedCompartmentIsForAdmins(t *testing.T) {
	opener := &recordingOpener{}
	e := newEnv(t, func(o *api.Options) { o.Opener = opener })
	e.setupSite(2)
	tech, staff, admin := e.tokens[auth.RoleTechnician], e.tokens[auth.RoleStaff], e.tokens[auth.RoleAdmin]
	_, err := e.st.Pool().Exec(context.Background(), `INSERT INTO device_presence (device_id, state, changed_at) VALUES ('kortrijk-1', 'online', now())`)
	require.NoError(t, err)
	doc := e.register("591-0000002-02")
	r := e.do("POST", "/api/v1/documents/"+doc.ID+"/reserve", staff, nil)
	require.Equal(t, 200, r.status, string(r.body))
	var d store.Document
	r.decode(t, &d)
	var number int
	require.NoError(t, e.st.Pool().QueryRow(context.Background(), `SELECT number FROM compartments WHERE id = $1`, d.CompartmentID).Scan(&number))
	path := fmt.Sprintf("/api/v1/devices/kortrijk-1/compartments/%d/open", number)

	r = e.do("POST", path, tech, map[string]any{"reason": "reserved, still empty"})
	require.Equal(t, 200, r.status, "a reserved compartment is empty: %s", r.body)

	r = e.do("POST", "/api/v1/documents/"+doc.ID+"/load", staff, nil)
	require.Equal(t, 200, r.status, string(r.body))
	r = e.do("POST", path, tech, map[string]any{"reason": "door check"})
	assert.Equal(t, 403, r.status, string(r.body))
	assert.Equal(t, "compartment_occupied", r.errCode())
	assert.Contains(t, string(r.body), "only an admin")
	require.Len(t, opener.snapshot(), 1, "the refused open was not sent")

	r = e.do("POST", path, admin, map[string]any{"reason": "door stuck, ticket 4711"})
	require.Equal(t, 200, r.status, string(r.body))
	require.Len(t, opener.snapshot(), 2)

	recs, err := audit.List(context.Background(), e.st.Pool(), audit.ListOptions{Subject: "device:kortrijk-1"})
	require.NoError(t, err)
	var refused, opened []string
	for _, rc := range recs {
		switch rc.Action {
		case "compartment.open_refused":
			refused = append(refused, rc.Actor+" "+string(rc.Details))
		case "compartment.remote_open":
			opened = append(opened, rc.Actor+" "+string(rc.Details))
		}
	}
	require.Len(t, refused, 1)
	assert.Contains(t, refused[0], fmt.Sprintf("user:%d ", e.users[auth.RoleTechnician].ID))
	assert.Contains(t, refused[0], `"document":"`+doc.ID+`"`)
	assert.Contains(t, refused[0], `"reason":"door check"`)
	require.Len(t, opened, 2)
	assert.NotContains(t, opened[0], `"occupied"`)
	assert.Contains(t, opened[1], fmt.Sprintf("user:%d ", e.users[auth.RoleAdmin].ID))
	assert.Contains(t, opened[1], `"document":"`+doc.ID+`"`)
	assert.Contains(t, opened[1], `"occupied":true`)
}

func fieldNames(fs []store.FieldError) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Field)
	}
	return out
}

// The citizen's track page with invalid UTF-8 or a NUL byte in its address
// (a link cut or typed wrong) answered the API's JSON 400, whose check ran
// before the page: it is the page's own HTML 400 in the person's language,
// saying to check the link, as the console answers it.
func TestTrackPageMalformedAddressIsAnHTMLPage(t *testing.T) {
	e := newEnv(t, func(o *api.Options) { o.TrackPage = &notify.TrackHandler{DB: o.Pool} })
	for lang, want := range map[string]string{"nl": "Controleer de link", "fr": "Vérifiez le lien", "en": "Check the link", "de": "Prüfen Sie den Link"} {
		for _, path := range []string{"/t/%ff", "/t/a%00b", "/t/%c3%28"} {
			r := e.do("GET", path+"?lang="+lang, "", nil)
			assert.Equal(t, http.StatusBadRequest, r.status, "%s in %s", path, lang)
			assert.Equal(t, "text/html; charset=utf-8", r.header.Get("Content-Type"), "%s in %s", path, lang)
			assert.Contains(t, html.UnescapeString(string(r.body)), want, "%s in %s", path, lang)
		}
	}
	r := e.do("GET", "/api/v1/documents/%ff", e.tokens[auth.RoleStaff], nil)
	assert.Equal(t, http.StatusBadRequest, r.status)
	assert.Contains(t, string(r.body), `"invalid_input"`, "the API keeps its JSON answer")
}
