package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"kluis/backend/api"
	"kluis/backend/auth"
	"kluis/backend/notify"
)

// Every route, fed malformed, oversized or nonsensical input by an
// authorised user, answers a 4xx JSON error with a code: never a 5xx,
// never a panic.
func TestHostileInputOnEveryRouteIsA4xx(t *testing.T) {
	e := newEnv(t, func(o *api.Options) { o.TrackPage = &notify.TrackHandler{DB: o.Pool, Logger: quietLogger()} })
	e.setupSite(2)
	doc := e.register("591-1234567-89")
	admin := e.tokens[auth.RoleAdmin]
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
			path := strings.NewReplacer("{id}", id, "{number}", id, "{trackingID}", id).Replace(rt.Path)
			if !strings.Contains(rt.Path, "{") {
				path = rt.Path + "?limit=" + id + "&cursor=" + id + "&state=" + id + "&subject=" + id
			}
			r := e.do(rt.Method, path, admin, nil)
			check(t, rt.Method+" "+path[:min(len(path), 120)], r)
		}
		if rt.Method == http.MethodGet || rt.Method == http.MethodDelete {
			continue
		}
		path := strings.NewReplacer("{id}", doc.ID, "{number}", "1").Replace(rt.Path)
		if strings.HasPrefix(rt.Path, "/api/v1/devices/{id}") {
			path = strings.NewReplacer("{id}", "kortrijk-1", "{number}", "1").Replace(rt.Path)
		}
		for bi, b := range bodies {
			r := e.do(rt.Method, path, admin, b.body, "Content-Type", b.ctype)
			if r.status < 300 && (b.body == `{"x":1}` || strings.HasPrefix(b.body, "\x00")) {
				t.Errorf("%s %s with %.20q: accepted (%d): %s", rt.Method, path, b.body, r.status, r.body)
				continue
			}
			if r.status >= 300 {
				check(t, rt.Method+" "+path+" body "+b.body[:min(len(b.body), 20)], r)
			}
			r = e.do(rt.Method, path, admin, b.body, "Content-Type", b.ctype, "Idempotency-Key", fmt.Sprintf("hostile-%s-%d", rt.Path, bi))
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
}
