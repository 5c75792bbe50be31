package kiosk

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/controller/engine"
	"kluis/deploy/dev/testenv"
)

// GET /kiosk/v1/diagnostics shows the doors, the item sensors and the
// last alarms: which compartments hold something. It answers a
// technician or an admin logged in at the kiosk, as the technician's
// panel (/screen/tech) does; nobody logged in, or counter staff, get 403
// and nothing of it. Before, any local process read it without a login.
func TestDiagnosticsNeedATechnicianLoggedIn(t *testing.T) {
	r := newLiveRig(t, "session: 60s")
	srv := httptest.NewServer(r.s.Handler())
	t.Cleanup(srv.Close)
	diag := func() (int, string) {
		t.Helper()
		resp, err := testenv.HTTPClient().Get(srv.URL + "/kiosk/v1/diagnostics")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	login := func(badge string) {
		t.Helper()
		resp, err := testenv.HTTPClient().Post(srv.URL+"/kiosk/v1/staff/login", "application/json", strings.NewReader(`{"badge":"`+badge+`"}`))
		require.NoError(t, err)
		var scr engine.Screen
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&scr))
		resp.Body.Close()
		require.Equal(t, engine.StateStaff, scr.State, badge)
	}
	logout := func() {
		t.Helper()
		resp, err := testenv.HTTPClient().Post(srv.URL+"/kiosk/v1/staff/logout", "application/json", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	refused := func(who string) {
		t.Helper()
		code, body := diag()
		require.Equal(t, http.StatusForbidden, code, "%s: %s", who, body)
		require.JSONEq(t, `{"error":"diagnostics are for a technician or an admin logged in at the kiosk"}`, body, who)
	}
	refused("nobody logged in")
	login("B-1")
	refused("counter staff")
	logout()
	for _, badge := range []string{"T-1", "A-1"} {
		login(badge)
		code, body := diag()
		require.Equal(t, http.StatusOK, code, "%s: %s", badge, body)
		var d engine.Diagnostics
		require.NoError(t, json.Unmarshal([]byte(body), &d))
		require.True(t, d.Ready, badge)
		require.Len(t, d.Doors, 16, badge) // the fake board's channels
		logout()
		refused("after " + badge + " logged out")
	}
}
