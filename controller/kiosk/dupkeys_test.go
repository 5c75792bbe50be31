package kiosk

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A body with a key twice in one object is refused before anything is
// evaluated: encoding/json keeps the last and matches names ignoring
// case, so {"pin":"1…","PIN":"2…"} was taken as the second PIN (found
// black-box) while a log or another reader sees the first.
func TestKioskRefusesRepeatedJSONKeys(t *testing.T) {
	be := &lockoutBackend{} // every PIN wrong, badge STAFF-1 logs in
	r := newRigWith(t, be)
	for _, c := range []struct{ path, body string }{
		{"/kiosk/v1/pickup", `{"pin":"111111111","PIN":"222222222","lang":"en"}`},
		{"/kiosk/v1/pickup", `{"qr":"K1.x.y","qr":"K1.a.b"}`},
		{"/kiosk/v1/staff/login", `{"badge":"NOBODY","Badge":"STAFF-1"}`},
	} {
		code, out := r.post(t, c.path, c.body)
		require.Equal(t, http.StatusBadRequest, code, "%s %s: %v", c.path, c.body, out)
		require.True(t, strings.Contains(out["error"].(string), "twice"), "%v", out)
	}
	be.mu.Lock()
	require.Empty(t, be.ops, "the backend was asked")
	be.mu.Unlock()
	code, out := r.post(t, "/kiosk/v1/staff/login", `{"badge":"STAFF-1"}`)
	require.Equal(t, http.StatusOK, code, out)
}
