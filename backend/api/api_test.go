package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"kluis/backend/api"
	"kluis/backend/audit"
	"kluis/backend/auth"
	"kluis/backend/store/storetest"
)

var methods = map[string]bool{"get": true, "put": true, "post": true, "delete": true, "patch": true, "head": true, "options": true}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t)
	var doc struct {
		OpenAPI string                          `yaml:"openapi"`
		Paths   map[string]map[string]yaml.Node `yaml:"paths"`
	}
	require.NoError(t, yaml.Unmarshal(api.OpenAPI(), &doc))
	assert.True(t, strings.HasPrefix(doc.OpenAPI, "3."), "OpenAPI 3 document")

	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for m := range ops {
			if methods[m] {
				documented[strings.ToUpper(m)+" "+path] = true
			}
		}
	}
	registered := map[string]bool{}
	for _, r := range e.srv.Routes() {
		registered[r.Method+" "+r.Path] = true
	}
	for k := range registered {
		assert.True(t, documented[k], "route %s is registered but not in openapi.yaml", k)
	}
	for k := range documented {
		assert.True(t, registered[k], "openapi.yaml documents %s but no such route is registered", k)
	}

	// The document is served as is.
	r := e.do("GET", "/api/v1/openapi.yaml", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, api.OpenAPI(), r.body)
}

// TestOpenAPIIdempotencyDocumented checks every idempotent route documents the header.
func TestOpenAPIIdempotencyDocumented(t *testing.T) {
	e := newEnv(t)
	text := string(api.OpenAPI())
	var doc struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(text), &doc))
	for _, r := range e.srv.Routes() {
		var op struct {
			Parameters []struct {
				Ref string `yaml:"$ref"`
			} `yaml:"parameters"`
		}
		node := doc.Paths[r.Path][strings.ToLower(r.Method)]
		require.NoError(t, node.Decode(&op), r.Path)
		has := false
		for _, p := range op.Parameters {
			if p.Ref == "#/components/parameters/IdempotencyKey" {
				has = true
			}
		}
		assert.Equal(t, r.Idempotent, has, "%s %s: Idempotency-Key documented iff accepted", r.Method, r.Path)
	}
}

// expectedRoles is the authorisation policy, written independently of the
// route table: every route must be listed here.
var expectedRoles = map[string]string{
	"GET /healthz":                                         "public",
	"GET /readyz":                                          "public",
	"GET /metrics":                                         "public",
	"GET /api/v1/openapi.yaml":                             "public",
	"POST /api/v1/sessions":                                "public",
	"DELETE /api/v1/sessions/current":                      "staff technician admin",
	"GET /api/v1/me":                                       "staff technician admin",
	"POST /api/v1/me/kiosk-pin":                            "staff technician admin",
	"POST /api/v1/me/password":                             "staff technician admin",
	"GET /api/v1/users":                                    "admin",
	"POST /api/v1/users":                                   "admin",
	"GET /api/v1/users/{id}":                               "admin",
	"PATCH /api/v1/users/{id}":                             "admin",
	"POST /api/v1/users/{id}/clear-login-lockout":          "admin",
	"GET /api/v1/users/{id}/tokens":                        "admin",
	"DELETE /api/v1/users/{id}/tokens/{token}":             "admin",
	"GET /api/v1/tokens":                                   "staff technician admin",
	"POST /api/v1/tokens":                                  "staff technician admin",
	"DELETE /api/v1/tokens/{id}":                           "staff technician admin",
	"GET /api/v1/sites":                                    "staff technician admin",
	"POST /api/v1/sites":                                   "admin",
	"GET /api/v1/sites/{id}":                               "staff technician admin",
	"GET /api/v1/devices":                                  "staff technician admin",
	"POST /api/v1/devices":                                 "admin",
	"GET /api/v1/devices/{id}":                             "staff technician admin",
	"PATCH /api/v1/devices/{id}":                           "admin",
	"PATCH /api/v1/devices/{id}/service":                   "technician admin",
	"POST /api/v1/devices/{id}/mqtt-password":              "admin",
	"PATCH /api/v1/devices/{id}/compartments/{number}":     "technician admin",
	"POST /api/v1/devices/{id}/compartments/{number}/open": "technician admin",
	"POST /api/v1/devices/{id}/clear-lockout":              "staff technician admin",
	"GET /api/v1/devices/{id}/alarms":                      "staff technician admin",
	"POST /api/v1/devices/{id}/alarms/{alarm}/ack":         "technician admin",
	"GET /api/v1/documents":                                "staff admin",
	"POST /api/v1/documents":                               "staff admin",
	"GET /api/v1/documents/{id}":                           "staff admin",
	"GET /api/v1/documents/{id}/slip":                      "staff admin",
	"POST /api/v1/documents/{id}/reserve":                  "staff admin",
	"POST /api/v1/documents/{id}/load":                     "staff admin",
	"POST /api/v1/documents/{id}/cancel":                   "staff admin",
	"POST /api/v1/documents/{id}/renotify":                 "staff admin",
	"POST /api/v1/documents/{id}/reissue":                  "staff admin",
	"POST /api/v1/documents/{id}/retrieve":                 "staff admin",
	"POST /api/v1/documents/{id}/unreserve":                "staff admin",
	"POST /api/v1/documents/{id}/collect":                  "staff admin",
	"GET /t/{trackingID}":                                  "public",
	"GET /api/v1/audit":                                    "admin",
	"GET /api/v1/audit/verify":                             "admin",
}

func concrete(path string) string {
	r := strings.NewReplacer("{id}", "1", "{token}", "1", "{trackingID}", "unknown-tracking", "{number}", "1", "{alarm}", "a1", "{device}", "d1", "{site}", "s1")
	return r.Replace(path)
}

func TestAuthorisationMatrix(t *testing.T) {
	e := newEnv(t)
	routes := e.srv.Routes()
	seen := map[string]bool{}
	for _, rt := range routes {
		key := rt.Method + " " + rt.Path
		seen[key] = true
		policy, ok := expectedRoles[key]
		if !assert.True(t, ok, "route %s has no expected policy in the test", key) {
			continue
		}
		path := concrete(rt.Path)
		if policy == "public" {
			assert.Empty(t, rt.Roles, key)
			r := e.do(rt.Method, path, "", nil)
			assert.NotEqual(t, http.StatusUnauthorized, r.status, "%s without token: %s", key, r.body)
			assert.NotEqual(t, http.StatusForbidden, r.status, "%s without token: %s", key, r.body)
			continue
		}
		r := e.do(rt.Method, path, "", nil)
		assert.Equal(t, http.StatusUnauthorized, r.status, "%s without token", key)
		assert.Equal(t, "unauthenticated", r.errCode(), key)
		assert.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer", key)

		r = e.do(rt.Method, path, "kls_not-a-real-token", nil)
		assert.Equal(t, http.StatusUnauthorized, r.status, "%s with bad token", key)
		assert.Equal(t, "invalid_token", r.errCode(), key)

		for _, role := range auth.Roles() {
			allowed := strings.Contains(" "+policy+" ", " "+string(role)+" ")
			r := e.do(rt.Method, path, e.freshToken(role), nil)
			if allowed {
				assert.NotContains(t, []int{401, 403}, r.status, "%s as %s must be allowed: %s", key, role, r.body)
				assert.Less(t, r.status, 500, "%s as %s: %s", key, role, r.body)
			} else {
				assert.Equal(t, http.StatusForbidden, r.status, "%s as %s must be forbidden: %s", key, role, r.body)
				assert.Equal(t, "forbidden", r.errCode(), key)
			}
		}
	}
	for k := range expectedRoles {
		assert.True(t, seen[k], "expected policy for %s but no such route", k)
	}
}

func TestBadInputGetsClearErrors(t *testing.T) {
	e := newEnv(t)
	admin := e.tokens[auth.RoleAdmin]
	big := `{"username":"` + strings.Repeat("a", 2<<20) + `"}`
	cases := []struct {
		name, body, ctype string
		status            int
		code              string
	}{
		{"malformed", `{"username": "x",`, "application/json", 400, "malformed_json"},
		{"syntax", `{"username" "x"}`, "application/json", 400, "malformed_json"},
		{"unknown field", `{"username":"x","password":"long password 1","role":"staff","admin":true}`, "application/json", 400, "unknown_field"},
		{"wrong type", `{"username":42,"password":"long password 1","role":"staff"}`, "application/json", 400, "wrong_type"},
		{"array", `[1,2]`, "application/json", 400, "wrong_type"},
		{"two objects", `{"username":"a"} {"username":"b"}`, "application/json", 400, "malformed_json"},
		{"empty", ``, "application/json", 400, "empty_body"},
		{"oversized", big, "application/json", 413, "body_too_large"},
		{"content type", `username=x`, "application/x-www-form-urlencoded", 415, "unsupported_media_type"},
		{"missing fields", `{"username":"x"}`, "application/json", 400, "missing_field"},
		{"bad role", `{"username":"x","password":"long password 1","role":"root"}`, "application/json", 400, "invalid_role"},
		{"bad username", `{"username":"X Y","password":"long password 1","role":"staff"}`, "application/json", 400, "invalid_username"},
		{"weak password", `{"username":"xy","password":"short","role":"staff"}`, "application/json", 400, "weak_password"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/users", admin, c.body, "Content-Type", c.ctype)
			assert.Equal(t, c.status, r.status, string(r.body))
			assert.Equal(t, c.code, r.errCode(), string(r.body))
			assert.Contains(t, r.header.Get("Content-Type"), "application/json")
		})
	}
	// The same limits apply on the idempotent path.
	r := e.do("POST", "/api/v1/users", admin, big, "Idempotency-Key", "k-big")
	assert.Equal(t, 413, r.status)
	assert.Equal(t, "body_too_large", r.errCode())

	r = e.do("POST", "/api/v1/users", admin, `{}`, "Idempotency-Key", strings.Repeat("k", 201))
	assert.Equal(t, 400, r.status)
	assert.Equal(t, "invalid_idempotency_key", r.errCode())

	r = e.do("GET", "/api/v1/users/abc", admin, nil)
	assert.Equal(t, 400, r.status)
	assert.Equal(t, "invalid_id", r.errCode())
	r = e.do("GET", "/api/v1/users/999999", admin, nil)
	assert.Equal(t, 404, r.status)
	assert.Equal(t, "not_found", r.errCode())

	r = e.do("GET", "/api/v1/nothing-here", admin, nil)
	assert.Equal(t, 404, r.status)
	assert.Equal(t, "not_found", r.errCode())
	r = e.do("PUT", "/api/v1/users", admin, `{}`)
	assert.Equal(t, 405, r.status)
	assert.Equal(t, "method_not_allowed", r.errCode())
	assert.Contains(t, r.header.Get("Allow"), "POST")

	r = e.do("GET", "/api/v1/users", admin, nil, "Authorization", "Basic YWRtaW46YWRtaW4=")
	assert.Equal(t, 401, r.status)
	assert.Equal(t, "unauthenticated", r.errCode())
}

func TestIdempotency(t *testing.T) {
	e := newEnv(t)
	admin := e.tokens[auth.RoleAdmin]
	body := map[string]string{"username": "idem", "password": "long password 1", "role": "staff"}

	first := e.do("POST", "/api/v1/users", admin, body, "Idempotency-Key", "key-1")
	require.Equal(t, 201, first.status, string(first.body))
	assert.Empty(t, first.header.Get(api.ReplayedHeader))

	again := e.do("POST", "/api/v1/users", admin, body, "Idempotency-Key", "key-1")
	require.Equal(t, 201, again.status, string(again.body))
	assert.Equal(t, "true", again.header.Get(api.ReplayedHeader))
	assert.JSONEq(t, string(first.body), string(again.body))

	other := map[string]string{"username": "idem2", "password": "long password 1", "role": "staff"}
	r := e.do("POST", "/api/v1/users", admin, other, "Idempotency-Key", "key-1")
	assert.Equal(t, 422, r.status)
	assert.Equal(t, "idempotency_key_reused", r.errCode())

	// Without a key the same body is a new request: the username is taken.
	r = e.do("POST", "/api/v1/users", admin, body)
	assert.Equal(t, 409, r.status)
	assert.Equal(t, "user_exists", r.errCode())

	// Error responses (4xx) are kept and replayed too.
	r1 := e.do("POST", "/api/v1/users", admin, body, "Idempotency-Key", "key-2")
	r2 := e.do("POST", "/api/v1/users", admin, body, "Idempotency-Key", "key-2")
	assert.Equal(t, 409, r1.status)
	assert.Equal(t, 409, r2.status)
	assert.Equal(t, "true", r2.header.Get(api.ReplayedHeader))

	// Keys are per user: another admin's key-1 is a new request.
	u, err := e.auth.CreateUser(context.Background(), "admin2", "long password 2", auth.RoleAdmin)
	require.NoError(t, err)
	iss, err := e.auth.CreateAPIToken(context.Background(), u.ID, "t")
	require.NoError(t, err)
	r = e.do("POST", "/api/v1/users", iss.Token, other, "Idempotency-Key", "key-1")
	assert.Equal(t, 201, r.status, string(r.body))

	// Exactly one "idem" user exists.
	users, err := e.auth.ListUsers(context.Background(), 0, 100)
	require.NoError(t, err)
	n := 0
	for _, u := range users {
		if u.Username == "idem" {
			n++
		}
	}
	assert.Equal(t, 1, n)
}

func TestPagination(t *testing.T) {
	e := newEnv(t)
	admin := e.tokens[auth.RoleAdmin]
	ctx := context.Background()
	for i := 0; i < 7; i++ {
		_, err := e.auth.CreateUser(ctx, fmt.Sprintf("page-%d", i), "long password 1", auth.RoleStaff)
		require.NoError(t, err)
	}
	// 3 role users + 7 = 10 users; pages of 3: 3, 3, 3, 1.
	var names []string
	path := "/api/v1/users?limit=3"
	pages := 0
	for path != "" && pages < 20 {
		r := e.do("GET", path, admin, nil)
		require.Equal(t, 200, r.status, string(r.body))
		var p api.Page[auth.User]
		r.decode(t, &p)
		assert.LessOrEqual(t, len(p.Items), 3)
		for _, u := range p.Items {
			names = append(names, u.Username)
		}
		if p.NextCursor == "" {
			assert.Empty(t, p.Next)
		} else {
			assert.Contains(t, p.Next, "cursor="+p.NextCursor)
			assert.Contains(t, p.Next, "limit=3")
		}
		path = p.Next
		pages++
	}
	assert.Equal(t, 4, pages)
	require.Len(t, names, 10)
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	seen := map[string]bool{}
	for _, n := range names {
		assert.False(t, seen[n], "duplicate %s", n)
		seen[n] = true
	}

	for _, q := range []string{"limit=0", "limit=201", "limit=x"} {
		r := e.do("GET", "/api/v1/users?"+q, admin, nil)
		assert.Equal(t, 400, r.status, q)
		assert.Equal(t, "invalid_limit", r.errCode(), q)
	}
	for _, q := range []string{"cursor=!!", "cursor=Zm9v", "cursor=YzE6LTU"} { // "foo", "c1:-5"
		r := e.do("GET", "/api/v1/users?"+q, admin, nil)
		assert.Equal(t, 400, r.status, q)
		assert.Equal(t, "invalid_cursor", r.errCode(), q)
	}
}

func TestLoginLogoutAndAudit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	r := e.do("POST", "/api/v1/sessions", "", map[string]string{"username": "test-staff", "password": "wrong password"})
	assert.Equal(t, 401, r.status)
	assert.Equal(t, "invalid_credentials", r.errCode())
	r = e.do("POST", "/api/v1/sessions", "", map[string]string{"username": "ghost", "password": "whatever123"})
	assert.Equal(t, 401, r.status)
	r = e.do("POST", "/api/v1/sessions", "", map[string]string{"username": "test-staff"})
	assert.Equal(t, 400, r.status)
	assert.Equal(t, "missing_field", r.errCode())

	r = e.do("POST", "/api/v1/sessions", "", map[string]string{"username": "test-staff", "password": "password-of-staff"})
	require.Equal(t, 201, r.status, string(r.body))
	var iss auth.Issued
	r.decode(t, &iss)
	require.NotEmpty(t, iss.Token)
	assert.Equal(t, auth.RoleStaff, iss.User.Role)

	r = e.do("GET", "/api/v1/me", iss.Token, nil)
	require.Equal(t, 200, r.status)
	var me struct {
		Username  string `json:"username"`
		TokenKind string `json:"token_kind"`
	}
	r.decode(t, &me)
	assert.Equal(t, "test-staff", me.Username)
	assert.Equal(t, "session", me.TokenKind)

	r = e.do("DELETE", "/api/v1/sessions/current", iss.Token, nil)
	assert.Equal(t, 204, r.status)
	r = e.do("GET", "/api/v1/me", iss.Token, nil)
	assert.Equal(t, 401, r.status)
	assert.Equal(t, "invalid_token", r.errCode())

	recs, err := audit.List(ctx, e.st.Pool(), audit.ListOptions{Limit: 100})
	require.NoError(t, err)
	var actions []string
	for _, rc := range recs {
		actions = append(actions, rc.Action)
		assert.NotContains(t, string(rc.Details), "password")
		assert.NotContains(t, string(rc.Details), "ghost")
	}
	assert.Equal(t, []string{"login.failed", "login.failed", "login"}, actions)
	assert.Equal(t, fmt.Sprintf("user:%d", e.users[auth.RoleStaff].ID), recs[0].Actor)
	assert.Equal(t, "anonymous", recs[1].Actor)

	// The admin sees the chain verify.
	r = e.do("GET", "/api/v1/audit/verify", e.tokens[auth.RoleAdmin], nil)
	require.Equal(t, 200, r.status)
	var rep struct {
		OK      bool `json:"ok"`
		Records int  `json:"records"`
	}
	r.decode(t, &rep)
	assert.True(t, rep.OK)
	assert.Equal(t, 3, rep.Records)

	r = e.do("GET", "/api/v1/audit?limit=2", e.tokens[auth.RoleAdmin], nil)
	require.Equal(t, 200, r.status)
	var page struct {
		Items      []map[string]any `json:"items"`
		NextCursor string           `json:"next_cursor"`
	}
	r.decode(t, &page)
	assert.Len(t, page.Items, 2)
	assert.NotEmpty(t, page.NextCursor)
}

// TestAPITokenCannotMakeTokens: an API token made API tokens, so one
// taken (from a CI's settings, a log) renewed itself before each expiry
// for good, and a password reset left API tokens alone: found
// black-box, a session made a 365-day token and that one made the next.
// A new token now needs a session (the password); nothing is made or
// audited for a refused one.
func TestAPITokenCannotMakeTokens(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/api/v1/tokens", e.session(auth.RoleStaff), map[string]any{"name": "ci", "expires_in_days": 365, "current_password": "password-of-staff"})
	require.Equal(t, 201, r.status, string(r.body))
	var ci auth.Issued
	r.decode(t, &ci)
	r = e.do("POST", "/api/v1/tokens", ci.Token, map[string]any{"name": "ci-renewed", "expires_in_days": 365})
	assert.Equal(t, http.StatusForbidden, r.status, string(r.body))
	assert.Equal(t, "session_required", r.errCode())
	r = e.do("GET", "/api/v1/tokens", ci.Token, nil)
	require.Equal(t, 200, r.status)
	assert.NotContains(t, string(r.body), "ci-renewed")
	recs, err := audit.List(context.Background(), e.st.Pool(), audit.ListOptions{Subject: fmt.Sprintf("user:%d", e.users[auth.RoleStaff].ID)})
	require.NoError(t, err)
	made := 0
	for _, rec := range recs {
		if rec.Action == "token.create" {
			made++
		}
	}
	assert.Equal(t, 1, made, "only the session's token was made")
	// The token still does what its role may.
	assert.Equal(t, 200, e.do("GET", "/api/v1/documents", ci.Token, nil).status)
}

func TestAPITokensAndUserAdmin(t *testing.T) {
	e := newEnv(t)
	tech := e.session(auth.RoleTechnician)
	r := e.do("POST", "/api/v1/tokens", tech, map[string]string{"name": "monitoring", "current_password": "password-of-technician"})
	require.Equal(t, 201, r.status, string(r.body))
	var iss auth.Issued
	r.decode(t, &iss)
	assert.Equal(t, "api", iss.Kind)
	require.NotNil(t, iss.ExpiresAt, "every API token expires")
	assert.WithinDuration(t, time.Now().Add(auth.DefaultAPITokenTTL), *iss.ExpiresAt, time.Minute)

	r = e.do("POST", "/api/v1/tokens", tech, map[string]string{"name": "bad\u001b[31mname"})
	assert.Equal(t, 400, r.status)
	assert.Equal(t, "invalid_name", r.errCode())

	r = e.do("GET", "/api/v1/tokens", iss.Token, nil)
	require.Equal(t, 200, r.status)
	assert.NotContains(t, string(r.body), iss.Token)
	assert.Contains(t, string(r.body), "monitoring")

	// Another user cannot revoke it.
	r = e.do("DELETE", fmt.Sprintf("/api/v1/tokens/%d", iss.ID), e.tokens[auth.RoleStaff], nil)
	assert.Equal(t, 404, r.status)
	r = e.do("DELETE", fmt.Sprintf("/api/v1/tokens/%d", iss.ID), tech, nil)
	assert.Equal(t, 204, r.status)
	r = e.do("GET", "/api/v1/me", iss.Token, nil)
	assert.Equal(t, 401, r.status)

	// The revoked token is still listed (until the retention prunes
	// it), not among the active ones.
	names := func(q string) []string {
		t.Helper()
		r := e.do("GET", "/api/v1/tokens"+q, tech, nil)
		require.Equal(t, 200, r.status, string(r.body))
		var p api.Page[auth.TokenInfo]
		r.decode(t, &p)
		out := []string{}
		for _, tk := range p.Items {
			out = append(out, tk.Kind+":"+tk.Name)
		}
		return out
	}
	assert.Contains(t, names(""), "api:monitoring")
	assert.Contains(t, names("?active=false"), "api:monitoring")
	active := names("?active=true")
	assert.NotContains(t, active, "api:monitoring")
	assert.Contains(t, active, "session:", "the caller's session is active")
	r = e.do("GET", "/api/v1/tokens?active=yes", tech, nil)
	assert.Equal(t, 400, r.status)
	assert.Equal(t, "invalid_filter", r.errCode())

	// Admin disables the technician: its tokens stop working.
	admin := e.tokens[auth.RoleAdmin]
	techID := e.users[auth.RoleTechnician].ID
	r = e.do("PATCH", fmt.Sprintf("/api/v1/users/%d", techID), admin, map[string]bool{"disabled": true})
	require.Equal(t, 200, r.status, string(r.body))
	r = e.do("GET", "/api/v1/me", tech, nil)
	assert.Equal(t, 401, r.status)
	r = e.do("PATCH", fmt.Sprintf("/api/v1/users/%d", e.users[auth.RoleAdmin].ID), admin, map[string]bool{"disabled": true})
	assert.Equal(t, 409, r.status)
	assert.Equal(t, "cannot_disable_self", r.errCode())
	r = e.do("PATCH", fmt.Sprintf("/api/v1/users/%d", techID), admin, map[string]string{"password": "new tech password"})
	require.Equal(t, 200, r.status, string(r.body))
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/healthz", "", nil)
	assert.Equal(t, 200, r.status)
	r = e.do("GET", "/readyz", "", nil)
	assert.Equal(t, 200, r.status)

	e.do("GET", fmt.Sprintf("/api/v1/users/%d", e.users[auth.RoleStaff].ID), e.tokens[auth.RoleAdmin], nil)
	e.do("GET", "/api/v1/nowhere/secret-path", "", nil)
	r = e.do("GET", "/metrics", "", nil)
	require.Equal(t, 200, r.status)
	text := string(r.body)
	assert.Contains(t, text, `kluis_api_request_duration_seconds_count{code="200",route="GET /api/v1/users/{id}"} 1`)
	assert.Contains(t, text, `route="unmatched"`)
	assert.NotContains(t, text, "secret-path", "raw paths must not become labels")
	assert.NotContains(t, text, fmt.Sprintf("/api/v1/users/%d", e.users[auth.RoleStaff].ID))
	for _, tok := range e.tokens {
		assert.NotContains(t, text, tok)
	}
}

func TestReadyzWithoutDatabase(t *testing.T) {
	e := newEnv(t)
	dead, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	require.NoError(t, err)
	t.Cleanup(dead.Close)
	srv, err := api.New(api.Options{Logger: quietLogger(), Pool: dead, Auth: e.auth})
	require.NoError(t, err)
	rec := newRecorder()
	req, _ := http.NewRequest("GET", "/readyz", nil)
	srv.Handler().ServeHTTP(rec, req)
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Contains(t, rec.Body.String(), "database_unavailable")
	rec = newRecorder()
	req, _ = http.NewRequest("GET", "/healthz", nil)
	srv.Handler().ServeHTTP(rec, req)
	assert.Equal(t, http.StatusOK, rec.Code)
}

// login posts a login from the client address src (X-Forwarded-For, which
// the server trusts from loopback in these tests).
func (e *env) login(src, username, password string) resp {
	e.t.Helper()
	return e.do("POST", "/api/v1/sessions", "", map[string]string{"username": username, "password": password}, "X-Forwarded-For", src)
}

// Issue 10: five wrong passwords used to lock any known account for 15
// minutes. Now they lock the guesser's address; the user gets in from
// elsewhere.
func TestLoginThrottleLocksTheSourceNotTheAccount(t *testing.T) {
	clock := storetest.NewClock(time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC))
	e := newEnv(t, func(o *api.Options) {
		o.Clock = clock.Now
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	const attacker, office = "203.0.113.9", "198.51.100.7"
	for i := 0; i < 5; i++ {
		r := e.login(attacker, "test-admin", "wrong password")
		require.Equal(t, 401, r.status, "attempt %d", i+1)
	}
	r := e.login(attacker, "test-admin", "password-of-admin")
	assert.Equal(t, 429, r.status, "the guesser's address is locked, even with the right password")
	assert.Equal(t, "too_many_attempts", r.errCode())
	assert.Contains(t, r.errCode()+string(r.body), "from your address")
	retry, err := strconv.Atoi(r.header.Get("Retry-After"))
	require.NoError(t, err)
	assert.InDelta(t, 15*60, retry, 2)
	r = e.login(attacker, " TEST-ADMIN", "x")
	assert.Equal(t, 429, r.status, "the username is matched case-insensitively")

	r = e.login(office, "test-admin", "password-of-admin")
	assert.Equal(t, 201, r.status, "the admin logs in from another address: %s", r.body)

	// A success clears only its own source; the locked address waits.
	r = e.login(attacker, "test-admin", "password-of-admin")
	assert.Equal(t, 429, r.status)
	clock.Set(clock.Now().Add(15*time.Minute + time.Second))
	r = e.login(attacker, "test-admin", "password-of-admin")
	assert.Equal(t, 201, r.status, string(r.body))

	// The failed logins are audited with their source.
	recs, err := audit.List(context.Background(), e.st.Pool(), audit.ListOptions{Subject: fmt.Sprintf("user:%d", e.users[auth.RoleAdmin].ID)})
	require.NoError(t, err)
	require.NotEmpty(t, recs)
	assert.Equal(t, "login.failed", recs[0].Action)
	assert.Contains(t, string(recs[0].Details), attacker)
}

// Guessing from many addresses meets a per-username back-off that grows to
// a minute but never locks: the rightful user waits at most that, or not at
// all from an address they logged in from before; an admin clears it all.
func TestLoginBackoffAcrossSources(t *testing.T) {
	clock := storetest.NewClock(time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC))
	e := newEnv(t, func(o *api.Options) {
		o.Clock = clock.Now
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
	})
	const home, hotel = "198.51.100.7", "192.0.2.44"
	r := e.login(home, "test-staff", "password-of-staff")
	require.Equal(t, 201, r.status, "the clerk logged in from home once")

	// A botnet: one wrong password per address, 30 addresses, each one
	// sent as soon as the back-off allows.
	var waits []int
	for i := 0; i < 30; i++ {
		src := fmt.Sprintf("203.0.113.%d", i+1)
		r = e.login(src, "test-staff", "wrong password")
		if r.status == 429 {
			secs, err := strconv.Atoi(r.header.Get("Retry-After"))
			require.NoError(t, err)
			waits = append(waits, secs)
			clock.Set(clock.Now().Add(time.Duration(secs) * time.Second))
			r = e.login(src, "test-staff", "wrong password")
		}
		require.Equal(t, 401, r.status, "attempt %d: %s", i+1, r.body)
	}
	require.NotEmpty(t, waits, "the back-off started")
	for i, w := range waits {
		assert.LessOrEqual(t, w, 61, "wait %d never above a minute", i)
	}
	assert.GreaterOrEqual(t, waits[len(waits)-1], 59, "it grows to a minute")
	assert.Less(t, waits[0], 3, "it starts small")

	// From a new address the clerk waits at most a minute, from home not at all.
	r = e.login(hotel, "test-staff", "password-of-staff")
	require.Equal(t, 429, r.status)
	assert.Contains(t, string(r.body), "many failed logins for this user")
	secs, _ := strconv.Atoi(r.header.Get("Retry-After"))
	assert.LessOrEqual(t, secs, 61)
	r = e.login(home, "test-staff", "password-of-staff")
	assert.Equal(t, 201, r.status, "a known address does not wait: %s", r.body)
	clock.Set(clock.Now().Add(time.Duration(secs) * time.Second))
	r = e.login(hotel, "test-staff", "password-of-staff")
	assert.Equal(t, 201, r.status, "after the back-off: %s", r.body)

	// An admin clears the back-off at once (audited with the reason).
	for i := 0; i < 12; i++ {
		src := fmt.Sprintf("203.0.113.%d", 100+i)
		if r := e.login(src, "test-staff", "wrong password"); r.status == 429 {
			secs, _ := strconv.Atoi(r.header.Get("Retry-After"))
			clock.Set(clock.Now().Add(time.Duration(secs) * time.Second))
			require.Equal(t, 401, e.login(src, "test-staff", "wrong password").status)
		}
	}
	r = e.login("192.0.2.99", "test-staff", "password-of-staff")
	require.Equal(t, 429, r.status)
	staffID := e.users[auth.RoleStaff].ID
	path := fmt.Sprintf("/api/v1/users/%d/clear-login-lockout", staffID)
	r = e.do("POST", path, e.tokens[auth.RoleStaff], map[string]string{"reason": "me"})
	assert.Equal(t, 403, r.status, "admins only")
	r = e.do("POST", path, e.tokens[auth.RoleAdmin], map[string]string{"reason": "ticket 77: clerk locked out"})
	require.Equal(t, 200, r.status, string(r.body))
	r = e.login("192.0.2.99", "test-staff", "password-of-staff")
	assert.Equal(t, 201, r.status, string(r.body))
	recs, err := audit.List(context.Background(), e.st.Pool(), audit.ListOptions{Subject: fmt.Sprintf("user:%d", staffID)})
	require.NoError(t, err)
	var cleared *audit.Record
	for i := range recs {
		if recs[i].Action == "login.lockout_cleared" {
			cleared = &recs[i]
		}
	}
	require.NotNil(t, cleared)
	assert.Equal(t, fmt.Sprintf("user:%d", e.users[auth.RoleAdmin].ID), cleared.Actor)
	assert.Contains(t, string(cleared.Details), "ticket 77")
	r = e.do("POST", "/api/v1/users/999999/clear-login-lockout", e.tokens[auth.RoleAdmin], nil)
	assert.Equal(t, 404, r.status)
}

// Without trusted proxies X-Forwarded-For is ignored: a guesser cannot
// dodge the per-source limit by inventing addresses.
func TestLoginThrottleIgnoresForwardedForByDefault(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 5; i++ {
		r := e.login(fmt.Sprintf("203.0.113.%d", i), "test-technician", "wrong password")
		require.Equal(t, 401, r.status)
	}
	r := e.login("198.51.100.1", "test-technician", "password-of-technician")
	assert.Equal(t, 429, r.status, "all five came from the same peer")
	// Other users are not affected.
	r = e.login("198.51.100.1", "test-admin", "password-of-admin")
	assert.Equal(t, 201, r.status)
}

func TestKioskCredentialsAndTokens(t *testing.T) {
	e := newEnv(t)
	admin := e.tokens[auth.RoleAdmin]
	staffID := e.users[auth.RoleStaff].ID
	path := fmt.Sprintf("/api/v1/users/%d", staffID)
	r := e.do("PATCH", path, admin, map[string]string{"kiosk_pin": "12x456"})
	assert.Equal(t, 400, r.status)
	assert.Equal(t, "invalid_kiosk_pin", r.errCode())
	r = e.do("PATCH", path, admin, map[string]string{"kiosk_pin": "48291637", "badge": "BADGE-1"})
	require.Equal(t, 200, r.status, string(r.body))
	assert.NotContains(t, string(r.body), "48291637")
	r = e.do("PATCH", fmt.Sprintf("/api/v1/users/%d", e.users[auth.RoleTechnician].ID), admin, map[string]string{"kiosk_pin": "48291637"})
	assert.Equal(t, 409, r.status)
	assert.Equal(t, "kiosk_credential_taken", r.errCode())

	// A kiosk session works at the kiosk, never on the HTTP API.
	iss, err := e.auth.KioskLogin(context.Background(), "48291637", "")
	require.NoError(t, err)
	r = e.do("GET", "/api/v1/me", iss.Token, nil)
	assert.Equal(t, 401, r.status)
	assert.Equal(t, "invalid_token", r.errCode())

	recs, err := audit.List(context.Background(), e.st.Pool(), audit.ListOptions{Subject: fmt.Sprintf("user:%d", staffID)})
	require.NoError(t, err)
	require.NotEmpty(t, recs)
	last := recs[len(recs)-1]
	assert.Equal(t, "user.update", last.Action)
	assert.NotContains(t, string(last.Details), "48291637")
	assert.NotContains(t, string(last.Details), "BADGE-1")
}

// GET /api/v1/tokens pages like every other list and refuses a bad limit
// or cursor (it ignored both).
func TestTokenListPagination(t *testing.T) {
	e := newEnv(t)
	tech := e.session(auth.RoleTechnician)
	for i := 0; i < 4; i++ {
		r := e.do("POST", "/api/v1/tokens", tech, map[string]string{"name": fmt.Sprintf("t%d", i), "current_password": "password-of-technician"})
		require.Equal(t, 201, r.status, string(r.body))
	}
	var names []string
	path, pages := "/api/v1/tokens?limit=2", 0
	for path != "" && pages < 10 {
		r := e.do("GET", path, tech, nil)
		require.Equal(t, 200, r.status, string(r.body))
		var p api.Page[auth.TokenInfo]
		r.decode(t, &p)
		assert.LessOrEqual(t, len(p.Items), 2)
		for _, tk := range p.Items {
			names = append(names, tk.Name)
		}
		path = p.Next
		pages++
	}
	assert.Equal(t, []string{"t3", "t2", "t1", "t0", "", "test"}, names, "newest first, each once (the session too)")
	assert.Equal(t, 3, pages)
	for _, q := range []string{"limit=0", "limit=201", "limit=x", "limit=-1"} {
		r := e.do("GET", "/api/v1/tokens?"+q, tech, nil)
		assert.Equal(t, 400, r.status, q)
		assert.Equal(t, "invalid_limit", r.errCode(), q)
	}
	for _, q := range []string{"cursor=!!", "cursor=Zm9v", "cursor=YzE6LTU"} {
		r := e.do("GET", "/api/v1/tokens?"+q, tech, nil)
		assert.Equal(t, 400, r.status, q)
		assert.Equal(t, "invalid_cursor", r.errCode(), q)
	}
}

// API tokens expire: the default lifetime, a chosen one up to the
// configured maximum; an admin sees and revokes any user's tokens, audited.
func TestAPITokenExpiryAndAdminRevoke(t *testing.T) {
	clock := storetest.NewClock(time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC))
	st := storetest.New(t)
	as, err := auth.New(auth.Options{Pool: st.Pool(), Logger: quietLogger(), Clock: clock.Now, Params: auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1},
		APITokenTTL: 7 * 24 * time.Hour, APITokenMaxTTL: 30 * 24 * time.Hour})
	require.NoError(t, err)
	_, err = auth.New(auth.Options{Pool: st.Pool(), APITokenTTL: 31 * 24 * time.Hour, APITokenMaxTTL: 30 * 24 * time.Hour})
	require.Error(t, err, "a default above the maximum is refused")
	e := newEnv(t, func(o *api.Options) { o.Pool, o.Auth, o.Clock = st.Pool(), as, clock.Now })
	ctx := context.Background()
	admin, err := as.CreateUser(ctx, "boss", "password-of-boss", auth.RoleAdmin)
	require.NoError(t, err)
	adminTok, err := as.CreateAPITokenTTL(ctx, admin.ID, "admin", 30*24*time.Hour)
	require.NoError(t, err)
	staff, err := as.CreateUser(ctx, "clerk", "password-of-clerk", auth.RoleStaff)
	require.NoError(t, err)
	staffTok, err := as.CreateAPIToken(ctx, staff.ID, "first")
	require.NoError(t, err)
	assert.Equal(t, clock.Now().Add(7*24*time.Hour), *staffTok.ExpiresAt, "the configured default")

	staffSession, err := as.IssueSession(ctx, staff)
	require.NoError(t, err)
	r := e.do("POST", "/api/v1/tokens", staffSession.Token, map[string]any{"name": "nightly", "expires_in_days": 30, "current_password": "password-of-clerk"})
	require.Equal(t, 201, r.status, string(r.body))
	var nightly auth.Issued
	r.decode(t, &nightly)
	assert.Equal(t, clock.Now().Add(30*24*time.Hour), *nightly.ExpiresAt)
	for _, days := range []int{31, -1, 100000} {
		r = e.do("POST", "/api/v1/tokens", staffSession.Token, map[string]any{"name": "long", "expires_in_days": days})
		assert.Equal(t, 400, r.status, "%d days: %s", days, r.body)
		assert.Equal(t, "invalid_expiry", r.errCode())
	}
	_, err = as.CreateAPITokenTTL(ctx, staff.ID, "long", 31*24*time.Hour)
	assert.ErrorIs(t, err, auth.ErrInvalidExpiry)

	// The admin lists the clerk's tokens (paged) and revokes one.
	r = e.do("GET", fmt.Sprintf("/api/v1/users/%d/tokens?limit=1", staff.ID), adminTok.Token, nil)
	require.Equal(t, 200, r.status, string(r.body))
	var page api.Page[auth.TokenInfo]
	r.decode(t, &page)
	require.Len(t, page.Items, 1)
	assert.Equal(t, "nightly", page.Items[0].Name)
	assert.NotEmpty(t, page.NextCursor)
	assert.NotContains(t, string(r.body), nightly.Token)
	r = e.do("GET", "/api/v1/users/999999/tokens", adminTok.Token, nil)
	assert.Equal(t, 404, r.status)
	r = e.do("GET", fmt.Sprintf("/api/v1/users/%d/tokens", staff.ID), staffTok.Token, nil)
	assert.Equal(t, 403, r.status, "only admins see others' tokens")
	r = e.do("DELETE", fmt.Sprintf("/api/v1/users/%d/tokens/%d", admin.ID, nightly.ID), adminTok.Token, nil)
	assert.Equal(t, 404, r.status, "the token belongs to another user")
	r = e.do("DELETE", fmt.Sprintf("/api/v1/users/%d/tokens/%d", staff.ID, nightly.ID), adminTok.Token, nil)
	assert.Equal(t, 204, r.status, string(r.body))
	r = e.do("GET", "/api/v1/me", nightly.Token, nil)
	assert.Equal(t, 401, r.status)
	recs, err := audit.List(ctx, st.Pool(), audit.ListOptions{Subject: fmt.Sprintf("user:%d", staff.ID)})
	require.NoError(t, err)
	last := recs[len(recs)-1]
	assert.Equal(t, "token.revoke", last.Action)
	assert.Equal(t, fmt.Sprintf("user:%d", admin.ID), last.Actor)
	assert.Contains(t, string(last.Details), fmt.Sprint(nightly.ID))

	// Expiry is enforced.
	r = e.do("GET", "/api/v1/me", staffTok.Token, nil)
	assert.Equal(t, 200, r.status)
	clock.Set(clock.Now().Add(7*24*time.Hour + time.Second))
	r = e.do("GET", "/api/v1/me", staffTok.Token, nil)
	assert.Equal(t, 401, r.status)
	assert.Equal(t, "invalid_token", r.errCode())
}

// A JSON body must say so: without a Content-Type (it was read as JSON
// before) or with another type it is 415 unsupported_media_type with a
// message naming the header, and nothing is done; a route whose body is
// optional still takes an empty one without a Content-Type.
func TestJSONBodyNeedsItsContentType(t *testing.T) {
	e := newEnv(t)
	admin := e.tokens[auth.RoleAdmin]
	body := `{"username":"ctype1","password":"long password 1","role":"staff"}`
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		r := e.do("POST", "/api/v1/users", admin, body, "Content-Type", ct)
		assert.Equal(t, http.StatusUnsupportedMediaType, r.status, "%q: %s", ct, r.body)
		assert.Equal(t, "unsupported_media_type", r.errCode(), ct)
		assert.Contains(t, string(r.body), "Content-Type: application/json", ct)
	}
	r := e.do("GET", "/api/v1/users?limit=200", admin, nil)
	assert.NotContains(t, string(r.body), "ctype1", "nothing created")

	r = e.do("POST", "/api/v1/users", admin, body, "Content-Type", "application/json; charset=utf-8")
	assert.Equal(t, http.StatusCreated, r.status, string(r.body))
	var u struct{ ID int64 }
	require.NoError(t, json.Unmarshal(r.body, &u))
	r = e.do("POST", fmt.Sprintf("/api/v1/users/%d/clear-login-lockout", u.ID), admin, "", "Content-Type", "")
	assert.Equal(t, http.StatusOK, r.status, "an optional body left empty: %s", r.body)
}
