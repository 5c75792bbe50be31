package api

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/store/storetest"
)

func TestPanicBecomes500(t *testing.T) {
	st := storetest.New(t)
	as, err := auth.New(auth.Options{Pool: st.Pool(), Params: auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1}})
	require.NoError(t, err)
	s, err := New(Options{Pool: st.Pool(), Auth: as, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	h := s.wrap(route{method: "GET", path: "/boom", h: func(w http.ResponseWriter, r *http.Request) error { panic("boom") }})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/boom", nil))
	assert.Equal(t, 500, rec.Code)
	assert.JSONEq(t, `{"error":{"code":"internal","message":"internal error; the incident was logged"}}`, rec.Body.String())
	assert.Equal(t, 1.0, testutil.ToFloat64(s.panics))
}
