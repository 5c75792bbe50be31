package web_test

import (
	"bytes"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
	var logs testenv.SyncBuffer
	console, _, _ := bareConsole(t, nil, slog.New(slog.NewTextHandler(&logs, nil)))
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
