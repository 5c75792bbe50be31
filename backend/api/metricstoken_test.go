package api_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/backend/api"
	"kluis/backend/auth"
)

// The backend's listener also serves citizens (track pages) and, behind
// the city's proxy, the internet: with a metrics token /metrics (which
// devices are offline, which alarms are active) answers only its holder.
// Without one it stays public, as before.
func TestMetricsToken(t *testing.T) {
	const tok = "metrics-0123456789abcdef"
	e := newEnv(t, func(o *api.Options) { o.MetricsToken = tok })
	for _, h := range []string{"", "Bearer ", "Bearer wrong-0123456789abcdef", "Basic " + tok, "Bearer " + tok + "x", tok} {
		var hdr []string
		if h != "" {
			hdr = []string{"Authorization", h}
		}
		r := e.do("GET", "/metrics", "", nil, hdr...)
		require.Equal(t, 401, r.status, "%q: %s", h, r.body)
		require.Equal(t, "invalid_token", r.errCode())
		require.NotContains(t, string(r.body), "kluis_", "%q", h)
	}
	// A user's API token is not the metrics token either.
	r := e.do("GET", "/metrics", e.tokens[auth.RoleAdmin], nil)
	require.Equal(t, 401, r.status)
	r = e.do("GET", "/metrics", "", nil, "Authorization", "Bearer "+tok)
	require.Equal(t, 200, r.status, string(r.body))
	require.True(t, strings.Contains(string(r.body), "kluis_api_request_duration_seconds"), "the registry is served")
	// Health stays public for load balancers.
	require.Equal(t, 200, e.do("GET", "/healthz", "", nil).status)

	open := newEnv(t)
	r = open.do("GET", "/metrics", "", nil)
	require.Equal(t, 200, r.status, "no token configured: public as before")
}
