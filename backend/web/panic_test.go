package web_test

import (
	"bytes"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/api"
	"kluis/backend/auth"
	"kluis/backend/service"
	"kluis/backend/store/storetest"
	"kluis/backend/web"
	"kluis/deploy/dev/testenv"
)

// A console handler that panics (a bug) left it to net/http: the
// connection was cut (the browser shows an empty answer, not the
// console's page) and the panic's value, which may quote the request (a
// holder's name, a search), went to the standard logger. The console now
// answers its own 500 page in the person's language and logs the panic's
// type and stack, never its value, as the REST API does.
func TestConsolePanicAnswersItsPageAndLogsNoValue(t *testing.T) {
	t.Parallel() // its own database
	st := storetest.New(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	as, err := auth.New(auth.Options{Pool: st.Pool(), Logger: quiet, Params: auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1}})
	require.NoError(t, err)
	svc, err := service.New(service.Options{Store: st, Logger: quiet})
	require.NoError(t, err)
	srv, err := api.New(api.Options{Logger: quiet, Registry: prometheus.NewRegistry(), Pool: st.Pool(), Auth: as, Service: svc})
	require.NoError(t, err)
	var logs testenv.SyncBuffer
	console, err := web.New(web.Options{Pool: st.Pool(), Auth: as, Service: svc, RouteRoles: web.RouteRolesOf(srv.Routes()),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	console.HandleForTest("GET /staff/boom", func(w http.ResponseWriter, r *http.Request) {
		panic("bug while showing " + r.URL.Query().Get("q"))
	})
	hs := httptest.NewServer(console.Handler())
	t.Cleanup(hs.Close)

	res, err := http.Get(hs.URL + "/staff/boom?lang=en&q=Jan+Peeters")
	require.NoError(t, err, "an answer, not a cut connection")
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	assert.Equal(t, http.StatusInternalServerError, res.StatusCode)
	assert.Contains(t, html.UnescapeString(string(body)), web.CatalogueText("en", "error.internal"))
	assert.Equal(t, "no-store", res.Header.Get("Cache-Control"))
	out := logs.String()
	assert.Contains(t, out, "panic.type=string")
	assert.NotContains(t, out, "Jan Peeters", "the panic's value is not logged")
	assert.False(t, bytes.Contains(body, []byte("Jan Peeters")), "nor shown")
}
