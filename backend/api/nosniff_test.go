package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"kluis/backend/api"
	"kluis/backend/notify"
)

// Every answer of the API's listener says nosniff, the public ones that
// are not JSON included: /metrics (text) and /api/v1/openapi.yaml
// (YAML) did not (found black-box), so a browser could take them for
// another type; kluisd's metrics listener already said it.
func TestEveryAPIAnswerSaysNosniff(t *testing.T) {
	e := newEnv(t, func(o *api.Options) { o.TrackPage = &notify.TrackHandler{DB: o.Pool, Logger: quietLogger()} })
	paths := []string{"/nothing", "/api/v1/nothing"}
	for _, rt := range e.srv.Routes() {
		if rt.Method == http.MethodGet && len(rt.Roles) == 0 {
			paths = append(paths, strings.ReplaceAll(rt.Path, "{trackingID}", "unknown"))
		}
	}
	assert.Contains(t, paths, "/metrics")
	assert.Contains(t, paths, "/api/v1/openapi.yaml")
	for _, p := range paths {
		r := e.do(http.MethodGet, p, "", nil)
		assert.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"), "GET %s (%d)", p, r.status)
	}
}
