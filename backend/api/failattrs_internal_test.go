package api

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A 500 names its cause in the log: the SQLSTATE of a PostgreSQL error
// (here a real one, division by zero: 22012) and an ended request
// context; the answer stays the generic internal error.
func TestFailLogsTheSQLState(t *testing.T) {
	var logs bytes.Buffer
	s := bareServer(t, slog.New(slog.NewTextHandler(&logs, nil)))
	var n int
	pgErr := s.pool.QueryRow(context.Background(), "SELECT 1/0").Scan(&n)
	require.Error(t, pgErr)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := httptest.NewRecorder()
	s.fail(w, httptest.NewRequest("POST", "/api/v1/documents/x/load", nil).WithContext(ctx), "POST /api/v1/documents/{id}/load",
		fmt.Errorf("service: issue codes: %w", pgErr))
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Contains(t, logs.String(), "sqlstate=22012")
	assert.Contains(t, logs.String(), `request_context="context canceled"`)
	assert.NotContains(t, w.Body.String(), "22012", "the cause is logged, not shown")

	logs.Reset()
	w = httptest.NewRecorder()
	s.fail(w, httptest.NewRequest("POST", "/x", nil), "POST /x", fmt.Errorf("plain"))
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.NotContains(t, logs.String(), "sqlstate")
	assert.NotContains(t, logs.String(), "request_context")
}
