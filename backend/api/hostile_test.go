package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"kluis/backend/api"
	"kluis/backend/auth"
	"kluis/backend/notify"
	"kluis/backend/store"
)

// Every route, fed malformed, oversized or nonsensical input by an
// authorised user, answers a 4xx JSON error with a code, not to be
// cached (Cache-Control: no-store): never a 5xx, never a panic. Each
// request carries a fresh admin token (a route may revoke the one it is
// called with) and must not answer 401 or 403: a
// walk that lost its token would test nothing.
func TestHostileInputOnEveryRouteIsA4xx(t *testing.T) {
	e := newEnv(t, func(o *api.Options) {
		o.TrackPage = &notify.TrackHandler{DB: o.Pool, Logger: quietLogger()}
		o.DevicePassword = func(context.Context, string, string) error { return nil }
	})
	e.setupSite(2)
	doc := e.register("591-1234567-89")
	ids := []string{"0", "-1", "99999999999999999999999", "%00", "%ff%fe", "a%2Fb", "..", strings.Repeat("x", 5000),
		"00000000-0000-0000-0000-000000000000", "kortrijk-1%0Aevil"}
	bodies := []struct{ body, ctype string }{
		{`{`, "application/json"},
		{`[]`, "application/json"},
		{`null`, "application/json"},
		{`{"x":1}`, "application/json"},
		{`{"reason":"` + strings.Repeat("r", 3<<20) + `"}`, "application/json"},
		{"\x00\xff\xfe", "application/json"},
		{`reason=x`, "application/x-www-form-urlencoded"},
	}
	for _, rt := range e.srv.Routes() {
		if len(rt.Roles) == 0 {
			continue // public: health, metrics, track page (below)
		}
		for _, id := range ids {
			path := strings.NewReplacer("{id}", id, "{number}", id, "{trackingID}", id, "{token}", id).Replace(rt.Path)
			if !strings.Contains(rt.Path, "{") {
				path = rt.Path + "?limit=" + id + "&cursor=" + id + "&state=" + id + "&subject=" + id
			}
			r := e.do(rt.Method, path, e.freshToken(auth.RoleAdmin), nil)
			check(t, rt.Method+" "+path[:min(len(path), 120)], r)
		}
		if rt.Method == http.MethodGet || rt.Method == http.MethodDelete {
			continue
		}
		path := strings.NewReplacer("{id}", doc.ID, "{number}", "1", "{token}", "1").Replace(rt.Path)
		if strings.HasPrefix(rt.Path, "/api/v1/devices/{id}") {
			path = strings.NewReplacer("{id}", "kortrijk-1", "{number}", "1").Replace(rt.Path)
		}
		for bi, b := range bodies {
			r := e.do(rt.Method, path, e.freshToken(auth.RoleAdmin), b.body, "Content-Type", b.ctype)
			if r.status < 300 && (b.body == `{"x":1}` || strings.HasPrefix(b.body, "\x00")) {
				t.Errorf("%s %s with %.20q: accepted (%d): %s", rt.Method, path, b.body, r.status, r.body)
				continue
			}
			if r.status >= 300 {
				check(t, rt.Method+" "+path+" body "+b.body[:min(len(b.body), 20)], r)
			}
			r = e.do(rt.Method, path, e.freshToken(auth.RoleAdmin), b.body, "Content-Type", b.ctype, "Idempotency-Key", fmt.Sprintf("hostile-%s-%d", rt.Path, bi))
			if r.status >= 300 {
				check(t, rt.Method+" "+path+" (idempotent) body "+b.body[:min(len(b.body), 20)], r)
			}
		}
	}
	for _, id := range ids {
		r := e.do("GET", "/t/"+id, "", nil)
		assert.Less(t, r.status, 500, "track page %.40q: %.200s", id, r.body)
		assert.GreaterOrEqual(t, r.status, 400, "track page %.40q", id)
	}
}

func check(t *testing.T, what string, r resp) {
	t.Helper()
	if r.status == http.StatusUnauthorized || r.status == http.StatusForbidden {
		t.Errorf("%s: status %d for an admin: the walk lost its token: %.300s", what, r.status, r.body)
		return
	}
	if r.status < 400 || r.status >= 500 {
		if r.status < 300 {
			return // a harmless read (e.g. an empty page) is fine
		}
		t.Errorf("%s: status %d: %.300s", what, r.status, r.body)
		return
	}
	if r.errCode() == "" {
		t.Errorf("%s: status %d without an error code: %.300s", what, r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: status %d with Cache-Control %q, want no-store", what, r.status, r.header.Get("Cache-Control"))
	}
}

// hostileText are path and query values PostgreSQL text cannot hold: NUL
// and invalid UTF-8 (a lone continuation byte, a bad sequence, an encoded
// surrogate, a code point past U+10FFFF).
var hostileText = []string{"%00", "x%00y", "%ff", "%c3%28", "%ed%a0%80", "%f4%90%80%80"}

// openAPIInputs reads, per "METHOD path" of openapi.yaml, the query
// parameter names and the string properties of the JSON request body.
func openAPIInputs(t *testing.T) (query map[string][]string, bodyStrings map[string][]string) {
	t.Helper()
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(api.OpenAPI(), &doc))
	comps, _ := doc["components"].(map[string]any)
	resolve := func(v any) map[string]any {
		m, _ := v.(map[string]any)
		for i := 0; i < 5 && m != nil; i++ {
			ref, ok := m["$ref"].(string)
			if !ok {
				break
			}
			parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
			sec, _ := comps[parts[0]].(map[string]any)
			m, _ = sec[parts[1]].(map[string]any)
		}
		return m
	}
	query, bodyStrings = map[string][]string{}, map[string][]string{}
	paths, _ := doc["paths"].(map[string]any)
	for path, v := range paths {
		item, _ := v.(map[string]any)
		for method, ov := range item {
			if !methods[method] {
				continue
			}
			op, _ := ov.(map[string]any)
			key := strings.ToUpper(method) + " " + path
			params, _ := op["parameters"].([]any)
			shared, _ := item["parameters"].([]any)
			for _, p := range append(params, shared...) {
				pm := resolve(p)
				if pm["in"] == "query" {
					query[key] = append(query[key], pm["name"].(string))
				}
			}
			rb := resolve(op["requestBody"])
			content, _ := rb["content"].(map[string]any)
			js, _ := content["application/json"].(map[string]any)
			schema := resolve(js["schema"])
			props, _ := schema["properties"].(map[string]any)
			for name, pv := range props {
				if ps := resolve(pv); ps["type"] == "string" {
					bodyStrings[key] = append(bodyStrings[key], name)
				}
			}
			sort.Strings(bodyStrings[key])
		}
	}
	return query, bodyStrings
}

// A NUL byte or invalid UTF-8 anywhere a request carries text (every path
// value, every documented query parameter, an undocumented one, every
// string field of every documented JSON body) answers a 4xx, never a 5xx,
// and an unauthenticated request never logs an error line (issue 10: a
// NUL in the login's username, GET /api/v1/sites/%00 and
// /api/v1/devices/%00 answered 500 with PostgreSQL's "invalid byte
// sequence" in the log). Authorised, the same requests reach the handlers:
// still no 5xx.
func TestNULAndInvalidUTF8AreRefusedEverywhere(t *testing.T) {
	e := newEnv(t, func(o *api.Options) {
		o.TrackPage = &notify.TrackHandler{DB: o.Pool, Logger: o.Logger}
		o.DevicePassword = func(context.Context, string, string) error { return nil }
		o.Slip = func(context.Context, store.Document) ([]byte, error) { return []byte("<p>slip</p>"), nil }
	})
	e.setupSite(2)
	doc := e.register("591-1234567-89")
	query, bodyStrings := openAPIInputs(t)
	require.Contains(t, bodyStrings["POST /api/v1/sessions"], "username", "the walk reads openapi.yaml")
	require.Contains(t, query["GET /api/v1/devices"], "site")

	type request struct {
		method, path, body string
		public             bool
	}
	var reqs []request
	for _, rt := range e.srv.Routes() {
		key := rt.Method + " " + rt.Path
		if rt.Method == "GET" && rt.Path == "/metrics" {
			continue // no input
		}
		for _, h := range hostileText {
			path := strings.NewReplacer("{id}", h, "{number}", h, "{trackingID}", h, "{token}", h).Replace(rt.Path)
			if path != rt.Path {
				reqs = append(reqs, request{rt.Method, path, "", len(rt.Roles) == 0})
			}
		}
		good := strings.NewReplacer("{id}", doc.ID, "{number}", "1", "{trackingID}", "unknown", "{token}", "1").Replace(rt.Path)
		if strings.HasPrefix(rt.Path, "/api/v1/devices/{id}") || strings.HasPrefix(rt.Path, "/api/v1/sites/{id}") {
			good = strings.NewReplacer("{id}", "kortrijk-1", "{number}", "1").Replace(rt.Path)
		}
		for _, q := range append(query[key], "undocumented") {
			for _, h := range []string{"%00", "%ff", "%ed%a0%80"} {
				reqs = append(reqs, request{rt.Method, good + "?" + q + "=" + h, "", len(rt.Roles) == 0})
			}
		}
		reqs = append(reqs, request{rt.Method, good + "?%00=1", "", len(rt.Roles) == 0}, request{rt.Method, good + "?%ff=1", "", len(rt.Roles) == 0})
		for _, f := range bodyStrings[key] {
			for _, h := range []string{`\u0000`, `a\u0000b`, "\xff\xfe", `\ud800`} {
				body := map[string]string{}
				for _, g := range bodyStrings[key] {
					body[g] = "x"
				}
				js, err := json.Marshal(body)
				require.NoError(t, err)
				reqs = append(reqs, request{rt.Method, good, strings.Replace(string(js), `"`+f+`":"x"`, `"`+f+`":"`+h+`"`, 1), len(rt.Roles) == 0})
			}
		}
	}
	require.Greater(t, len(reqs), 300)

	e.errors.Reset()
	for _, rq := range reqs {
		var body any
		if rq.body != "" {
			body = rq.body
		}
		r := e.do(rq.method, rq.path, "", body)
		what := fmt.Sprintf("anonymous %s %.80s %.60q", rq.method, rq.path, rq.body)
		assert.Less(t, r.status, 500, "%s: %s", what, r.body)
		switch {
		case strings.HasPrefix(rq.path, "/t/"): // the citizen's page answers its own HTML page
			assert.GreaterOrEqual(t, r.status, 400, what)
			assert.Equal(t, "text/html; charset=utf-8", r.header.Get("Content-Type"), what)
		case r.status >= 400:
			assert.NotEmpty(t, r.errCode(), what)
		}
		if log := e.errors.String(); log != "" {
			t.Errorf("%s logged an error: %s", what, log)
			e.errors.Reset()
		}
	}
	for _, rq := range reqs {
		var body any
		if rq.body != "" {
			body = rq.body
		}
		tok := e.freshToken(auth.RoleAdmin)
		if rq.method == http.MethodPost && (rq.path == "/api/v1/tokens" || rq.path == "/api/v1/me/password" || rq.path == "/api/v1/me/kiosk-pin") {
			// An API token may not make tokens nor set its user's
			// password or staff PIN (403 session_required).
			tok = e.session(auth.RoleAdmin)
		}
		r := e.do(rq.method, rq.path, tok, body)
		what := fmt.Sprintf("admin %s %.80s %.60q", rq.method, rq.path, rq.body)
		assert.Less(t, r.status, 500, "%s: %s", what, r.body)
		// A hostile current_password is a wrong password (JSON decoding
		// makes invalid UTF-8 U+FFFD): refused as such, past authorisation.
		if !rq.public && r.errCode() != "wrong_password" {
			assert.NotContains(t, []int{401, 403}, r.status, "%s: %s", what, r.body)
		}
	}
	assert.Empty(t, e.errors.String(), "no error lines for authorised hostile requests either")

	// The cases of the issue, exactly.
	r := e.do("POST", "/api/v1/sessions", "", `{"username":"\u0000","password":"x"}`)
	assert.Equal(t, 400, r.status, string(r.body))
	assert.Equal(t, "invalid_input", r.errCode())
	for _, p := range []string{"/api/v1/sites/%00", "/api/v1/devices/%00"} {
		r = e.do("GET", p, e.tokens[auth.RoleAdmin], nil)
		assert.Contains(t, []int{400, 404}, r.status, "%s: %s", p, r.body)
	}
}
