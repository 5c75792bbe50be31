package api_test

import (
	"encoding/json"
	"strings"
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
	r = e.do("POST", "/api/v1/tokens", e.session(auth.RoleAdmin), map[string]any{"name": "cache-check", "current_password": "password-of-admin"})
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

// Every refusal of the REST API, whatever refuses it (the router, the
// body limit, authentication, the role check, the decoder, the
// idempotency store, the handler), is a JSON error with a stable code and
// a message for people, and is not cached either.
func TestAPIErrorsAreJSONAndNotCached(t *testing.T) {
	e := newEnv(t)
	admin, staff := e.tokens[auth.RoleAdmin], e.tokens[auth.RoleStaff]
	big := `{"username":"` + strings.Repeat("a", 2<<20) + `"}`
	user := map[string]any{"username": "cache-dup", "password": "long password 1", "role": "staff"}
	r := e.do("POST", "/api/v1/users", admin, user)
	require.Equal(t, 201, r.status, string(r.body))
	for _, c := range []struct {
		what, method, path, token string
		body                      any
		hdr                       []string
		status                    int
	}{
		{"no token", "GET", "/api/v1/documents", "", nil, nil, 401},
		{"bad token", "GET", "/api/v1/documents", "kls_nonsense", nil, nil, 401},
		{"wrong scheme", "GET", "/api/v1/users", "", nil, []string{"Authorization", "Basic YWRtaW46YWRtaW4="}, 401},
		{"role", "GET", "/api/v1/users", staff, nil, nil, 403},
		{"unmatched", "GET", "/api/v1/no-such-thing", admin, nil, nil, 404},
		{"unmatched, no token", "GET", "/api/v1/no-such-thing", "", nil, nil, 404},
		{"the API's root", "GET", "/api", "", nil, nil, 404},
		{"the API's root, POST", "POST", "/api/", "", `{}`, nil, 404},
		{"no such user", "GET", "/api/v1/users/999999", admin, nil, nil, 404},
		{"bad id", "GET", "/api/v1/users/abc", admin, nil, nil, 400},
		{"method", "PUT", "/api/v1/users", admin, `{}`, nil, 405},
		{"NUL in the query", "GET", "/api/v1/documents?state=%00", admin, nil, nil, 400},
		{"malformed JSON", "POST", "/api/v1/users", admin, `{"username":`, nil, 400},
		{"unknown field", "POST", "/api/v1/users", admin, `{"username":"x","nope":1}`, nil, 400},
		{"weak password", "POST", "/api/v1/users", admin, map[string]any{"username": "xy", "password": "short", "role": "staff"}, nil, 400},
		{"exists", "POST", "/api/v1/users", admin, user, nil, 409},
		{"too large", "POST", "/api/v1/users", admin, big, nil, 413},
		{"too large, idempotent", "POST", "/api/v1/users", admin, big, []string{"Idempotency-Key", "cache-big"}, 413},
		{"bad idempotency key", "POST", "/api/v1/users", admin, `{}`, []string{"Idempotency-Key", strings.Repeat("k", 201)}, 400},
		{"media type", "POST", "/api/v1/users", admin, `username=x`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415},
	} {
		r := e.do(c.method, c.path, c.token, c.body, c.hdr...)
		require.Equal(t, c.status, r.status, "%s: %s", c.what, r.body)
		require.Equal(t, "no-store", r.header.Get("Cache-Control"), "%s: %d %s", c.what, r.status, r.body)
		require.Contains(t, r.header.Get("Content-Type"), "application/json", c.what)
		require.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"), c.what)
		var body struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal(r.body, &body), "%s: %s", c.what, r.body)
		require.NotEmpty(t, body.Error.Code, "%s: %s", c.what, r.body)
		require.Greater(t, len(body.Error.Message), 10, "%s: a message for people: %s", c.what, r.body)
	}
}
