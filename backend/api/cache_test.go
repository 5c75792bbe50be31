package api_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
)

// Every answer of the REST API is personal or secret (tokens, holders'
// names, dates of birth, addresses, device passwords) or says who may see
// what: no shared or browser cache may keep one. Each is sent with
// Cache-Control: no-store, errors and idempotent replays included.
func TestAPIAnswersAreNotCached(t *testing.T) {
	e := newEnv(t)
	admin := e.tokens[auth.RoleAdmin]
	check := func(what string, r resp) {
		t.Helper()
		require.Equal(t, "no-store", r.header.Get("Cache-Control"), "%s: %d %s", what, r.status, r.body)
	}
	r := e.do("POST", "/api/v1/sessions", "", map[string]string{"username": "test-staff", "password": "password-of-staff"})
	require.Equal(t, 201, r.status, string(r.body))
	check("login (session token)", r)
	r = e.do("POST", "/api/v1/sessions", "", map[string]string{"username": "test-staff", "password": "wrong password"})
	require.Equal(t, 401, r.status)
	check("failed login", r)
	r = e.do("POST", "/api/v1/tokens", admin, map[string]any{"name": "cache-check"})
	require.Equal(t, 201, r.status, string(r.body))
	check("API token", r)
	for _, path := range []string{"/api/v1/me", "/api/v1/documents", "/api/v1/users", "/api/v1/tokens", "/api/v1/devices", "/api/v1/audit"} {
		r = e.do("GET", path, admin, nil)
		require.Equal(t, 200, r.status, "%s: %s", path, r.body)
		check(path, r)
	}
	r = e.do("GET", "/api/v1/documents", "", nil)
	require.Equal(t, 401, r.status)
	check("no token", r)
	r = e.do("GET", "/api/v1/no-such-thing", admin, nil)
	require.Equal(t, 404, r.status)
	check("unmatched", r)
	site := map[string]any{"id": "cache-site", "name": "Cache", "address": "Grote Markt 1, Kortrijk"}
	for i := 0; i < 2; i++ {
		r = e.do("POST", "/api/v1/sites", admin, site, "Idempotency-Key", "cache-check-1")
		require.Equal(t, 201, r.status, string(r.body))
		check("create (replayed the second time)", r)
	}
	require.Equal(t, "true", r.header.Get("Idempotent-Replayed"))
}
