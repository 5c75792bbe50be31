package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/api"
	"kluis/backend/auth"
	"kluis/backend/service"
	"kluis/backend/store/storetest"
	"kluis/backend/web"
)

// A device's live stream looked the device up before the role: 404 for
// an unknown id, 403 for a known one, so a signed-in user whose role may
// not see devices could list which ids exist (the newcomer's attack,
// 2026-12-07). The role is checked first: such a role gets 403 for every
// id; a role that may see devices still gets 404 for an unknown one.
// Today every role may see devices, so the console is built here on a
// role table where only admins may.
func TestDeviceStreamChecksTheRoleFirst(t *testing.T) {
	t.Parallel() // its own database
	ctx := context.Background()
	console, as, srv := bareConsole(t, map[string][]auth.Role{"GET /api/v1/devices/{id}": {auth.RoleAdmin}},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	hs := httptest.NewServer(console.Handler())
	t.Cleanup(hs.Close)
	apiHS := httptest.NewServer(srv.Handler())
	t.Cleanup(apiHS.Close)

	admin, err := as.CreateUser(ctx, "admin", "password of the admin", auth.RoleAdmin)
	require.NoError(t, err)
	staff, err := as.CreateUser(ctx, "staff", "password of the staff", auth.RoleStaff)
	require.NoError(t, err)
	tok, err := as.CreateAPIToken(ctx, admin.ID, "setup")
	require.NoError(t, err)
	call := func(path string, body any) {
		t.Helper()
		b, err := json.Marshal(body)
		require.NoError(t, err)
		req, err := http.NewRequestWithContext(ctx, "POST", apiHS.URL+path, bytes.NewReader(b))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		out, _ := io.ReadAll(res.Body)
		res.Body.Close()
		require.Equal(t, 201, res.StatusCode, string(out))
	}
	call("/api/v1/sites", map[string]string{"id": siteID, "name": "Stadhuis Kortrijk", "address": "Grote Markt 54"})
	call("/api/v1/devices", map[string]any{"id": lockerID, "site_id": siteID, "kind": "locker", "name": "Kluis inkomhal",
		"compartments": []map[string]any{{"number": 1, "board": 0, "channel": 0, "size": "M", "height_cm": 100}}})

	status := func(u auth.User, device string) int {
		t.Helper()
		ws, err := as.StartWebSession(ctx, u, "127.0.0.1")
		require.NoError(t, err)
		rctx, cancel := context.WithCancel(ctx)
		defer cancel() // a stream that opened ends here
		req, err := http.NewRequestWithContext(rctx, "GET", hs.URL+web.Prefix+"devices/"+device+"/events", nil)
		require.NoError(t, err)
		req.AddCookie(&http.Cookie{Name: "kluis_staff", Value: ws.Token})
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	assert.Equal(t, http.StatusForbidden, status(staff, lockerID), "a device that exists")
	assert.Equal(t, http.StatusForbidden, status(staff, "no-such-device"), "the same answer for one that does not")
	assert.Equal(t, http.StatusOK, status(admin, lockerID))
	assert.Equal(t, http.StatusNotFound, status(admin, "no-such-device"), "a role that may see devices is told")
}

// bareConsole is the console alone on a throw-away database (no broker, no
// device link), with the REST API's roles but for the routes in roles,
// logging to log; it returns the console, its auth service and the REST
// API (whose handler a test may serve to set things up).
func bareConsole(t *testing.T, roles map[string][]auth.Role, log *slog.Logger) (*web.Web, *auth.Service, *api.Server) {
	t.Helper()
	st := storetest.New(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	as, err := auth.New(auth.Options{Pool: st.Pool(), Logger: quiet, Params: auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1}})
	require.NoError(t, err)
	svc, err := service.New(service.Options{Store: st, Logger: quiet})
	require.NoError(t, err)
	srv, err := api.New(api.Options{Logger: quiet, Registry: prometheus.NewRegistry(), Pool: st.Pool(), Auth: as, Service: svc})
	require.NoError(t, err)
	apiRoles := web.RouteRolesOf(srv.Routes())
	console, err := web.New(web.Options{Pool: st.Pool(), Auth: as, Service: svc, Logger: log,
		RouteRoles: func(route string) ([]auth.Role, bool) {
			if r, ok := roles[route]; ok {
				return r, true
			}
			return apiRoles(route)
		}})
	require.NoError(t, err)
	return console, as, srv
}
