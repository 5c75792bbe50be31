package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/codes"
	"kluis/backend/server"
)

// DNS rebinding: a page on a name of the attacker's that now resolves to
// the backend's address is, for the browser of someone on the city's
// network, the backend's own origin, and read /metrics (public without
// -metrics-token-file), the login page and the API's answers. The
// backend answers only a Host that is an IP literal, localhost, the
// public URL's host or one of -allowed-hosts; any other gets 421 in plain
// text, counted and logged (a few lines a minute). Before, every Host was
// answered: /metrics was 200 for "rebind.evil.example".
func TestBackendAnswersOnlyItsOwnHostNames(t *testing.T) {
	s := startBackend(t, server.Options{PublicURL: "https://kluis.example/", AllowedHosts: []string{"Scrape.Kluis.LAN"}})
	get := func(host, path string) (int, string, http.Header) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, s.URL(path), nil)
		require.NoError(t, err)
		if host != "" {
			req.Host = host
		}
		res, err := s.client.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b), res.Header
	}
	refused := 0
	for _, host := range []string{"rebind.evil.example", "rebind.evil.example:8080", "kluis.example.evil.example",
		"localhost.evil.example", "scrape.kluis.lan.evil.example", "evil"} {
		for _, path := range []string{"/metrics", "/readyz", "/healthz", "/staff/login", "/api/v1/me", "/t/abc"} {
			code, body, h := get(host, path)
			refused++
			require.Equal(t, http.StatusMisdirectedRequest, code, "%s %s: %s", host, path, body)
			require.Equal(t, server.MisdirectedText, body, "%s %s", host, path)
			require.Equal(t, "text/plain; charset=utf-8", h.Get("Content-Type"))
			require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"))
			require.NotContains(t, body, "kluis_")
		}
	}
	// The backend's own names, IP literals and localhost, with or without
	// a port, in any case, with the trailing dot of a fully qualified name.
	for _, host := range []string{"", "kluis.example", "KLUIS.example:443", "kluis.example.", "scrape.kluis.lan:9090",
		"localhost", "LOCALHOST:8080", "[::1]:8080", "10.20.30.40", "127.0.0.1:1"} {
		code, body, _ := get(host, "/metrics")
		require.Equal(t, http.StatusOK, code, "%q: %s", host, body)
		require.Contains(t, body, "kluis_http_misdirected_requests_total", host)
		code, _, _ = get(host, "/staff/login")
		require.Equal(t, http.StatusOK, code, host)
	}
	assert.Equal(t, float64(refused), s.metric("kluis_http_misdirected_requests_total"))
	// Logged, a few lines a minute: 36 refusals are not 36 lines.
	lines := strings.Count(s.Log.String(), "request for a host name not answered (421)")
	assert.Equal(t, 5, lines, s.Log.String())
	assert.Contains(t, s.Log.String(), "host=rebind.evil.example")
}

// An allowed host that could never match is refused at the start.
func TestNewRefusesAnAllowedHostThatIsNotAName(t *testing.T) {
	k, err := codes.GenerateKeys()
	require.NoError(t, err)
	for _, h := range []string{"https://kluis.example", "kluis.example:8080", "*.kluis.example", "kluis.example/staff"} {
		_, err := server.New(server.Options{DatabaseURL: "postgres://x", Keys: k, AllowedHosts: []string{h}})
		require.ErrorContains(t, err, "a host name only", h)
	}
	hosts, err := server.ParseAllowedHosts(" scrape.kluis.lan, ,kluis-1.lan ")
	require.NoError(t, err)
	require.Equal(t, []string{"scrape.kluis.lan", "kluis-1.lan"}, hosts)
}
