package kiosk

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/engine"
	"kluis/deploy/dev/testenv"
)

// send makes one request to the rig's real HTTP listener with the given
// Host and headers (nil body when body is "").
func (r *rig) send(t *testing.T, method, path, host, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	var req *http.Request
	var err error
	if rd != nil {
		req, err = http.NewRequest(method, r.srv.URL+path, rd)
	} else {
		req, err = http.NewRequest(method, r.srv.URL+path, nil)
	}
	require.NoError(t, err)
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := testenv.HTTPClient().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return resp.StatusCode, out
}

// A web page in a browser on the kiosk's machine reaches 127.0.0.1 too.
// Its cross-site POSTs (a "no-cors" fetch of an untyped body needs no
// preflight) must not type PINs: five of them would lock PIN entry for
// 15 minutes, fifty for a day. A DNS-rebinding page (same origin for the
// browser, but asking for its own host name) is refused as well.
func TestKioskRefusesBrowserCrossOriginAndRebinding(t *testing.T) {
	be := &lockoutBackend{} // every PIN wrong, badge STAFF-1 logs in
	r := newRigWith(t, be)
	u, err := url.Parse(r.srv.URL)
	require.NoError(t, err)
	port := u.Port()
	wrong := `{"pin":"111111111","birth_date":"1990-01-01","lang":"en"}`

	// Modern browser, cross-site, untyped body.
	for i := 0; i < 6; i++ {
		code, out := r.send(t, http.MethodPost, "/kiosk/v1/pickup", "", wrong, map[string]string{
			"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Origin": "https://evil.example"})
		require.Equal(t, http.StatusForbidden, code, "cross-site attempt %d: %v", i, out)
	}
	// A browser that sends Origin but no Sec-Fetch-Site.
	code, out := r.send(t, http.MethodPost, "/kiosk/v1/pickup", "", wrong, map[string]string{
		"Origin": "http://evil.example", "Content-Type": "application/json"})
	require.Equal(t, http.StatusForbidden, code, out)
	// Same site but another origin (another port on 127.0.0.1).
	code, out = r.send(t, http.MethodPost, "/kiosk/v1/staff/logout", "", "", map[string]string{
		"Sec-Fetch-Site": "same-site"})
	require.Equal(t, http.StatusForbidden, code, out)
	// An untyped body without any browser header: refused before decoding.
	code, out = r.send(t, http.MethodPost, "/kiosk/v1/pickup", "", wrong, nil)
	require.Equal(t, http.StatusUnsupportedMediaType, code, out)

	// DNS rebinding: evil.example now resolves to 127.0.0.1; the browser
	// calls it same-origin, the Host header still says evil.example.
	for _, host := range []string{"evil.example:" + port, "evil.example", "127.0.0.1.nip.io:" + port, "localhost.evil.example:" + port} {
		code, out = r.send(t, http.MethodGet, "/kiosk/v1/diagnostics", host, "", nil)
		require.Equal(t, http.StatusMisdirectedRequest, code, "%s: %v", host, out)
		code, out = r.send(t, http.MethodPost, "/kiosk/v1/pickup", host, wrong, map[string]string{
			"Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"})
		require.Equal(t, http.StatusMisdirectedRequest, code, "%s: %v", host, out)
	}

	// None of the above was evaluated: the first real wrong PIN is just
	// wrong, PIN entry is not locked.
	code, out = r.send(t, http.MethodPost, "/kiosk/v1/pickup", "", wrong, map[string]string{
		"Sec-Fetch-Site": "same-origin", "Origin": r.srv.URL, "Content-Type": "application/json"})
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, engine.StateWrongCode, out["state"])
	require.Nil(t, r.e.Diagnostics(context.Background()).LockedUntil)

	// Staff logged in at the kiosk: a cross-site page cannot act in the
	// session (the backend is asked nothing, the screen stays staff).
	code, out = r.post(t, "/kiosk/v1/staff/login", `{"badge":"STAFF-1"}`)
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, engine.StateStaff, out["state"])
	be.mu.Lock()
	asked := len(be.ops)
	be.mu.Unlock()
	for _, p := range []struct{ path, body string }{
		{"/kiosk/v1/staff/load", `{"document_number":"591-1"}`},
		{"/kiosk/v1/staff/retrieve", `{"document_number":"591-1"}`},
		{"/kiosk/v1/tech/test-open", `{"compartment":1}`},
		{"/kiosk/v1/staff/clear-lockout", `{}`},
		{"/kiosk/v1/staff/logout", ""},
	} {
		code, out = r.send(t, http.MethodPost, p.path, "", p.body, map[string]string{
			"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
		require.Equal(t, http.StatusForbidden, code, "%s: %v", p.path, out)
	}
	be.mu.Lock()
	require.Len(t, be.ops, asked)
	be.mu.Unlock()
	require.Empty(t, r.f.Pulses())
	code, out = r.send(t, http.MethodGet, "/kiosk/v1/session", "", "", nil)
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, engine.StateStaff, out["state"])

	// The kiosk's own page and local clients keep working, by any
	// loopback name.
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST", "[::1]:" + port, "127.0.0.2:" + port} {
		code, out = r.send(t, http.MethodGet, "/kiosk/v1/session", host, "", nil)
		require.Equal(t, http.StatusOK, code, "%s: %v", host, out)
	}
	code, out = r.send(t, http.MethodPost, "/kiosk/v1/staff/logout", "localhost:"+port, "", map[string]string{
		"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost:" + port})
	require.Equal(t, http.StatusOK, code, out)
	code, out = r.post(t, "/kiosk/v1/pickup", `{"qr":"K1.x.y"}`)
	require.Equal(t, http.StatusOK, code, out)
}

func TestLoopbackHost(t *testing.T) {
	for h, want := range map[string]bool{
		"127.0.0.1": true, "127.0.0.1:8088": true, "localhost": true, "LocalHost:1": true,
		"[::1]:8088": true, "::1": true, "127.9.9.9:80": true,
		"": false, "evil.example": false, "evil.example:8088": false, "localhost.evil.example": false,
		"10.0.0.1:8088": false, "0.0.0.0:8088": false, "[::]:8088": false, "127.0.0.1.nip.io": false,
	} {
		require.Equal(t, want, LoopbackHost(h), "%q", h)
	}
}

// Go's cross-origin protection looks at unsafe methods only, so a web
// page in a browser on the kiosk's machine could still send GETs to
// 127.0.0.1 (an img, a no-cors fetch): it reads no answer, but
// /screen/tech counts as a staff action, so such a page could keep a
// technician's kiosk session from its idle logout for as long as it
// liked, and its event streams and long polls took the places the
// screen needs (MaxStreams each). A request the browser marks cross-site
// or same-site (another port on 127.0.0.1) is refused whatever its
// method; only a navigation to the screen's page itself is let through
// (a link that opens the kiosk's screen).
func TestKioskRefusesCrossSiteReads(t *testing.T) {
	r := newLiveRig(t, "session: 60s")
	srv := httptest.NewServer(r.s.Handler())
	t.Cleanup(srv.Close)
	get := func(path string, hdr map[string]string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := testenv.HTTPClient().Do(req)
		require.NoError(t, err)
		resp.Body.Close() // the event stream does not end
		return resp.StatusCode
	}
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/kiosk/v1/staff/login", strings.NewReader(`{"badge":"T-1"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := testenv.HTTPClient().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	seen := r.s.lastStaffAction()

	for _, site := range []string{"cross-site", "same-site"} {
		for _, path := range []string{"/screen/tech", "/kiosk/v1/events", "/kiosk/v1/session?wait=0", "/kiosk/v1/session",
			"/kiosk/v1/diagnostics", "/screen/static/screen.js"} {
			assert.Equal(t, http.StatusForbidden, get(path, map[string]string{"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "no-cors"}),
				"%s from a %s page", path, site)
		}
		assert.Equal(t, http.StatusForbidden, get("/screen/tech", map[string]string{"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate"}),
			"a navigation to the technician's panel")
		assert.Equal(t, http.StatusOK, get("/", map[string]string{"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate"}),
			"a link to the screen's page")
	}
	assert.Equal(t, seen, r.s.lastStaffAction(), "no refused request counted as a staff action")

	// The screen itself (same origin, or typed in: none) and clients
	// that are not browsers go on as before.
	for _, hdr := range []map[string]string{{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}, {"Sec-Fetch-Site": "none"}, nil} {
		assert.Equal(t, http.StatusOK, get("/screen/tech", hdr), "%v", hdr)
		assert.Equal(t, http.StatusOK, get("/kiosk/v1/session", hdr), "%v", hdr)
		assert.Equal(t, http.StatusOK, get("/kiosk/v1/events", hdr), "%v", hdr)
	}
}
