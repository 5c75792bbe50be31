package kiosk

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/deploy/dev/testenv"
)

// Every answer of the kiosk's listener, the screen's page and files, the
// API, the event stream and each refusal, tells the browser not to sniff
// the type (X-Content-Type-Options: nosniff) and not to keep it
// (Cache-Control: no-store): the 403 (cross-origin) and 421 (a
// rebinding page's Host) refusals as much as the API's answers.
func TestKioskAnswersSayNosniff(t *testing.T) {
	r := newLiveRig(t, "session: 60s")
	srv := httptest.NewServer(r.s.Handler())
	t.Cleanup(srv.Close)
	for _, c := range []struct {
		method, path, host, body string
		hdr                      map[string]string
		code                     int
	}{
		{"GET", "/", "", "", nil, http.StatusOK},
		{"GET", "/?lang=de&large=1", "", "", nil, http.StatusOK},
		{"GET", "/screen/static/screen.js", "", "", nil, http.StatusOK},
		{"GET", "/screen/static/screen.css", "", "", nil, http.StatusOK},
		{"GET", "/screen/static/nothing.js", "", "", nil, http.StatusNotFound},
		{"GET", "/screen/tech", "", "", nil, http.StatusForbidden},
		{"GET", "/kiosk/v1/session", "", "", nil, http.StatusOK},
		{"GET", "/kiosk/v1/session?wait=x", "", "", nil, http.StatusBadRequest},
		{"GET", "/kiosk/v1/diagnostics", "", "", nil, http.StatusForbidden},
		{"GET", "/kiosk/v1/events", "", "", nil, http.StatusOK},
		{"POST", "/kiosk/v1/pickup", "", `{"qr":"K1.x.y"}`, map[string]string{"Content-Type": "application/json"}, http.StatusOK},
		{"POST", "/kiosk/v1/pickup", "", `{"qr":`, map[string]string{"Content-Type": "application/json"}, http.StatusBadRequest},
		{"POST", "/kiosk/v1/pickup", "", `{"qr":"K1.x.y"}`, nil, http.StatusUnsupportedMediaType},
		{"POST", "/kiosk/v1/pickup", "", `{"qr":"K1.x.y"}`, map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"GET", "/kiosk/v1/session", "evil.example", "", nil, http.StatusMisdirectedRequest},
		{"GET", "/kiosk/v1/nothing", "", "", nil, http.StatusNotFound},
		{"DELETE", "/kiosk/v1/session", "", "", nil, http.StatusMethodNotAllowed},
	} {
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		req, err := http.NewRequest(c.method, srv.URL+c.path, body)
		require.NoError(t, err)
		if c.host != "" {
			req.Host = c.host
		}
		for k, v := range c.hdr {
			req.Header.Set(k, v)
		}
		resp, err := testenv.HTTPClient().Do(req)
		require.NoError(t, err, "%s %s", c.method, c.path)
		// The event stream does not end: its headers are enough.
		resp.Body.Close()
		require.Equal(t, c.code, resp.StatusCode, "%s %s (Host %q)", c.method, c.path, c.host)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), "%s %s (Host %q)", c.method, c.path, c.host)
		require.Equal(t, "no-store", resp.Header.Get("Cache-Control"), "%s %s (Host %q)", c.method, c.path, c.host)
	}
	// A peer that is not on loopback (the listener is, so only a
	// misconfiguration lets one in) is refused with both headers too.
	req := httptest.NewRequest(http.MethodGet, "/kiosk/v1/session", nil)
	req.RemoteAddr = "192.0.2.7:40000"
	rec := httptest.NewRecorder()
	r.s.Handler().ServeHTTP(rec, req)
	require.Equal(t, http.StatusForbidden, rec.Code)
	require.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
	require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
}
