package kiosk

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// A body of the wrong JSON type is refused in the API's own words: a
// JSON array sent to /kiosk/v1/pickup was answered "field \"\" must be
// engine.PickupRequest", and a staff endpoint named an anonymous Go
// struct with its tags (found by the edge review).
func TestKioskWrongJSONTypeInTheAPIsWords(t *testing.T) {
	be := &lockoutBackend{}
	r := newRigWith(t, be)
	for _, c := range []struct{ path, body, want string }{
		{"/kiosk/v1/pickup", `[{"pin":"123456789"}]`, "invalid JSON: the body must be a JSON object, not an array"},
		{"/kiosk/v1/pickup", `"K1.x.y"`, "invalid JSON: the body must be a JSON object, not a string"},
		{"/kiosk/v1/staff/login", `[]`, "invalid JSON: the body must be a JSON object, not an array"},
		{"/kiosk/v1/staff/load", `42`, "invalid JSON: the body must be a JSON object, not a number"},
		{"/kiosk/v1/staff/clear-lockout", `true`, "invalid JSON: the body must be a JSON object, not true or false"},
		{"/kiosk/v1/activity", `[1]`, "invalid JSON: the body must be a JSON object, not an array"},
		{"/kiosk/v1/tech/test-open", `[]`, "invalid JSON: the body must be a JSON object, not an array"},
		{"/kiosk/v1/pickup", `{"pin":123456789}`, `invalid JSON: field "pin" must be a string, not a number`},
		{"/kiosk/v1/pickup", `{"qr":["K1.x.y"]}`, `invalid JSON: field "qr" must be a string, not an array`},
		{"/kiosk/v1/activity", `{"seq":-1}`, `invalid JSON: field "seq" must be a whole number from 0, not a negative number, a fraction or a number out of range`},
		{"/kiosk/v1/activity", `{"seq":"7"}`, `invalid JSON: field "seq" must be a whole number from 0, not a string`},
		{"/kiosk/v1/tech/test-open", `{"compartment":1.5}`, `invalid JSON: field "compartment" must be a whole number, not a fraction or a number out of range`},
		{"/kiosk/v1/tech/test-open", `{"compartment":{}}`, `invalid JSON: field "compartment" must be a whole number, not an object`},
	} {
		code, out := r.post(t, c.path, c.body)
		require.Equal(t, http.StatusBadRequest, code, "%s %s: %v", c.path, c.body, out)
		require.Equal(t, c.want, out["error"], "%s %s", c.path, c.body)
	}
	be.mu.Lock()
	require.Empty(t, be.ops, "the backend was asked")
	be.mu.Unlock()
}
