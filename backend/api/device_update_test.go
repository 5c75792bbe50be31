package api_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/store"
)

// A device gets a layout at registration and later (admin), is taken out
// of service and back (technician, with a reason), and then gets no
// reservation while out.
func TestDeviceLayoutAndService(t *testing.T) {
	e := newEnv(t)
	e.setupSite(3)
	admin, tech, staff := e.tokens[auth.RoleAdmin], e.tokens[auth.RoleTechnician], e.tokens[auth.RoleStaff]
	r := e.do("POST", "/api/v1/devices", admin, map[string]any{"id": "kortrijk-2", "site_id": "kortrijk", "kind": "locker",
		"layout":       map[string]any{"columns": 2, "rows": 1},
		"compartments": []map[string]any{{"channel": 0, "size": "S"}, {"channel": 1, "size": "S"}}})
	require.Equal(t, 201, r.status, string(r.body))
	var d store.Device
	r.decode(t, &d)
	require.Equal(t, &store.Layout{Columns: 2, Rows: 1}, d.Layout)

	r = e.do("POST", "/api/v1/devices", admin, map[string]any{"id": "kortrijk-3", "site_id": "kortrijk", "kind": "locker",
		"layout":       map[string]any{"columns": 1, "rows": 1},
		"compartments": []map[string]any{{"channel": 0, "size": "S"}, {"channel": 1, "size": "S"}}})
	assert.Equal(t, 400, r.status, string(r.body))
	assert.Contains(t, string(r.body), `"field":"layout"`)

	r = e.do("PATCH", "/api/v1/devices/kortrijk-1", admin, map[string]any{"name": "Kluis inkomhal",
		"layout": map[string]any{"columns": 3, "rows": 1, "places": []map[string]any{{"number": 3, "column": 1, "row": 1}}}})
	require.Equal(t, 200, r.status, string(r.body))
	r.decode(t, &d)
	assert.Equal(t, "Kluis inkomhal", d.Name)
	assert.Equal(t, 3, d.Layout.Columns)
	for _, bad := range []map[string]any{
		{"layout": map[string]any{"columns": 1, "rows": 1}},
		{"layout": map[string]any{"colour": "red"}},
		{"layout": map[string]any{"places": []map[string]any{{"number": 9, "column": 1, "row": 1}}}},
	} {
		r = e.do("PATCH", "/api/v1/devices/kortrijk-1", admin, bad)
		assert.Equal(t, 400, r.status, "%v: %s", bad, r.body)
		assert.Equal(t, "invalid_input", r.errCode())
	}
	r = e.do("PATCH", "/api/v1/devices/kortrijk-1", admin, map[string]any{})
	assert.Equal(t, 400, r.status)
	r = e.do("PATCH", "/api/v1/devices/kortrijk-1", admin, map[string]any{"layout": nil})
	require.Equal(t, 200, r.status, string(r.body))
	assert.Contains(t, string(r.body), `"layout":null`)
	assert.Contains(t, string(r.body), `"name":"Kluis inkomhal"`)
	r = e.do("PATCH", "/api/v1/devices/nope", admin, map[string]any{"name": "x"})
	assert.Equal(t, 404, r.status)
	r = e.do("PATCH", "/api/v1/devices/kortrijk-1", tech, map[string]any{"name": "x"})
	assert.Equal(t, 403, r.status, "a technician does not rename devices")

	// Out of service: a reason is required; staff may not.
	r = e.do("PATCH", "/api/v1/devices/kortrijk-1/service", tech, map[string]any{"out_of_service": true})
	assert.Equal(t, 400, r.status, string(r.body))
	r = e.do("PATCH", "/api/v1/devices/kortrijk-1/service", staff, map[string]any{"out_of_service": true, "reason": "x"})
	assert.Equal(t, 403, r.status)
	for _, id := range []string{"kortrijk-1", "kortrijk-2"} {
		r = e.do("PATCH", "/api/v1/devices/"+id+"/service", tech, map[string]any{"out_of_service": true, "reason": "water damage"})
		require.Equal(t, 200, r.status, string(r.body))
	}
	assert.Contains(t, string(r.body), `"reason":"water damage"`)
	doc := e.register("591-0000001-01")
	r = e.do("POST", "/api/v1/documents/"+doc.ID+"/reserve", staff, nil)
	assert.Equal(t, http.StatusConflict, r.status, "no reservation on a device out of service: %s", r.body)
	assert.Equal(t, "no_compartment", r.errCode())
	r = e.do("PATCH", "/api/v1/devices/kortrijk-1/service", tech, map[string]any{"out_of_service": false})
	require.Equal(t, 200, r.status, string(r.body))
	assert.Contains(t, string(r.body), `"out_of_service":null`)
	r = e.do("POST", "/api/v1/documents/"+doc.ID+"/reserve", staff, nil)
	require.Equal(t, 200, r.status, string(r.body))
	assert.Contains(t, string(r.body), `"device_id":"kortrijk-1"`)

	r = e.do("GET", "/api/v1/audit?subject=device:kortrijk-1", admin, nil)
	require.Equal(t, 200, r.status)
	for _, want := range []string{`"action":"device.update"`, `"action":"device.out_of_service"`, `"reason":"water damage"`, `"action":"device.in_service"`} {
		assert.Contains(t, string(r.body), want)
	}
}

// A holder without e-mail and mobile is registered with no_contact (the
// counter prints the slip); search finds documents by number and name.
func TestNoContactAndSearch(t *testing.T) {
	e := newEnv(t)
	e.setupSite(2)
	staff := e.tokens[auth.RoleStaff]
	body := newDoc("591-7777777-77")
	delete(body, "email")
	r := e.do("POST", "/api/v1/documents", staff, body)
	assert.Equal(t, 400, r.status, string(r.body))
	assert.Contains(t, string(r.body), "no_contact")
	body["no_contact"] = true
	body["mobile"] = "0470123456"
	r = e.do("POST", "/api/v1/documents", staff, body)
	assert.Equal(t, 400, r.status, string(r.body))
	delete(body, "mobile")
	r = e.do("POST", "/api/v1/documents", staff, body)
	require.Equal(t, 201, r.status, string(r.body))
	e.register("591-1234567-89")

	r = e.do("GET", "/api/v1/documents?q=7777777", staff, nil)
	require.Equal(t, 200, r.status, string(r.body))
	assert.Contains(t, string(r.body), `"total":1`)
	assert.Contains(t, string(r.body), `591-7777777-77`)
	r = e.do("GET", "/api/v1/documents?q=peeters+jan", staff, nil)
	assert.Contains(t, string(r.body), `"total":2`)
	r = e.do("GET", "/api/v1/documents?q=nobody", staff, nil)
	assert.Contains(t, string(r.body), `"total":0`)
}
