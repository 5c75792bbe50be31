package api

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/store/storetest"
)

func TestPanicBecomes500(t *testing.T) {
	s := bareServer(t, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h := s.wrap(route{method: "GET", path: "/boom", h: func(w http.ResponseWriter, r *http.Request) error { panic("boom") }})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/boom", nil))
	assert.Equal(t, 500, rec.Code)
	assert.JSONEq(t, `{"error":{"code":"internal","message":"internal error; the incident was logged"}}`, rec.Body.String())
	assert.Equal(t, 1.0, testutil.ToFloat64(s.panics))
}

// A panicking handler is logged with the panic's type and stack, not its
// value, which may quote the request (a password, a holder's name, a
// token), as the device link's catchers do (2f01a0c, 4f93f12).
func TestPanicLogsNoValue(t *testing.T) {
	var logs bytes.Buffer
	s := bareServer(t, slog.New(slog.NewTextHandler(&logs, nil)))
	h := s.wrap(route{method: "POST", path: "/boom", h: func(w http.ResponseWriter, r *http.Request) error {
		b, _ := io.ReadAll(r.Body)
		panic("handler bug with body " + string(b))
	}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/boom", strings.NewReader(`{"password":"Secret-password-77"}`)))
	assert.Equal(t, 500, rec.Code)
	out := logs.String()
	assert.Contains(t, out, "handler panic")
	assert.Contains(t, out, "panic.type=string")
	assert.NotContains(t, out, "Secret-password-77", "the panic's value is not logged")
}

// bareServer is a Server on a throw-away database with its required parts
// only (no service: those routes answer 503), logging to log.
func bareServer(t *testing.T, log *slog.Logger) *Server {
	t.Helper()
	st := storetest.New(t)
	as, err := auth.New(auth.Options{Pool: st.Pool(), Params: auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1}})
	require.NoError(t, err)
	s, err := New(Options{Pool: st.Pool(), Auth: as, Logger: log})
	require.NoError(t, err)
	return s
}
