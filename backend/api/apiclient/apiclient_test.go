package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDoJSON(t *testing.T) {
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		switch r.URL.Path {
		case "/api/v1/echo":
			assert.Equal(t, "Bearer tok", r.Header.Get("Authorization"))
			assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
			var in map[string]int
			assert.NoError(t, json.NewDecoder(r.Body).Decode(&in))
			_ = json.NewEncoder(w).Encode(map[string]int{"n": in["n"] + 1})
		case "/api/v1/conflict":
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"error":{"code":"no_compartment","message":"no free compartment"}}`))
		case "/v1/garbage":
			_, _ = w.Write([]byte("not json"))
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	var out map[string]int
	require.NoError(t, DoJSON(ctx, srv.Client(), "POST", srv.URL+"/api/v1/echo", "tok", map[string]int{"n": 41}, &out))
	require.Equal(t, 42, out["n"])
	require.NoError(t, DoJSON(ctx, srv.Client(), "POST", srv.URL+"/api/v1/echo", "tok", map[string]int{"n": 1}, nil))
	require.Len(t, keys, 2)
	require.NotEmpty(t, keys[0])
	require.NotEqual(t, keys[0], keys[1], "a fresh Idempotency-Key per call")

	err := DoJSON(ctx, srv.Client(), "POST", srv.URL+"/api/v1/conflict", "", nil, nil)
	require.Equal(t, http.StatusConflict, StatusOf(err))
	var se *StatusError
	require.ErrorAs(t, err, &se)
	require.Contains(t, se.Body, "no_compartment")
	require.Contains(t, err.Error(), "409")

	err = DoJSON(ctx, srv.Client(), "GET", srv.URL+"/v1/garbage", "", nil, &out)
	require.ErrorContains(t, err, "decode")
	require.Equal(t, 0, StatusOf(err))
	require.Empty(t, keys[len(keys)-1], "no Idempotency-Key outside POST /api/v1/")

	require.Error(t, DoJSON(ctx, srv.Client(), "GET", "http://127.0.0.1:1/x", "", nil, nil))
}
