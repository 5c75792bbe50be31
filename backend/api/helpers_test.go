package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"kluis/backend/api"
	"kluis/backend/auth"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
	"kluis/deploy/dev/testenv"
)

// env is one API server on a private database.
type env struct {
	// errors holds every error-level line the server, auth and service logged.
	errors *testenv.SyncBuffer
	t      *testing.T
	st     *store.Store
	auth   *auth.Service
	srv    *api.Server
	http   *httptest.Server
	reg    *prometheus.Registry
	users  map[auth.Role]auth.User
	tokens map[auth.Role]string
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEnv(t *testing.T, mutate ...func(*api.Options)) *env {
	t.Helper()
	st := storetest.New(t)
	sink := &testenv.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelError}))
	as, err := auth.New(auth.Options{Pool: st.Pool(), Logger: logger, Params: auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1},
		KioskKey: []byte("kiosk-test-key-0123456789abcdef")})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	svc, err := service.New(service.Options{Store: st, Logger: logger})
	require.NoError(t, err)
	opts := api.Options{Logger: logger, Registry: reg, Pool: st.Pool(), Auth: as, Service: svc}
	for _, m := range mutate {
		m(&opts)
	}
	srv, err := api.New(opts)
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	e := &env{errors: sink, t: t, st: st, auth: as, srv: srv, http: hs, reg: reg, users: map[auth.Role]auth.User{}, tokens: map[auth.Role]string{}}
	ctx := context.Background()
	for _, r := range auth.Roles() {
		u, err := as.CreateUser(ctx, "test-"+string(r), "password-of-"+string(r), r)
		require.NoError(t, err)
		iss, err := as.CreateAPIToken(ctx, u.ID, "test")
		require.NoError(t, err)
		e.users[r] = u
		e.tokens[r] = iss.Token
	}
	return e
}

// session logs role in: a session token (API tokens are made with one).
func (e *env) session(role auth.Role) string {
	iss, err := e.auth.IssueSession(context.Background(), e.users[role])
	require.NoError(e.t, err)
	return iss.Token
}

// signIn logs user in over the API (POST /api/v1/sessions) and returns
// the session token.
func (e *env) signIn(user, pw string) string {
	e.t.Helper()
	r := e.do("POST", "/api/v1/sessions", "", map[string]string{"username": user, "password": pw})
	require.Equal(e.t, 201, r.status, string(r.body))
	var iss auth.Issued
	r.decode(e.t, &iss)
	return iss.Token
}

// freshToken issues a new API token for role (for requests that revoke theirs).
func (e *env) freshToken(role auth.Role) string {
	iss, err := e.auth.CreateAPIToken(context.Background(), e.users[role].ID, "fresh")
	require.NoError(e.t, err)
	return iss.Token
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) errCode() string {
	var b struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.body, &b)
	return b.Error.Code
}

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.body, v), string(r.body))
}

// do sends a request; body may be nil, a string (sent raw) or a value (JSON).
func (e *env) do(method, path, token string, body any, headers ...string) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		js, err := json.Marshal(b)
		require.NoError(e.t, err)
		rd = bytes.NewReader(js)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, e.http.URL+path, rd)
	require.NoError(e.t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.http.Client().Do(req)
	require.NoError(e.t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(e.t, err)
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
