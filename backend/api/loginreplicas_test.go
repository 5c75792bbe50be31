package api_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/api"
	"kluis/backend/auth"
	"kluis/backend/service"
	"kluis/backend/store/storetest"
)

// Several replicas (and a restarted backend) share the login limits: the
// counts live in PostgreSQL, not in each process (docs/security.md, "Staff
// accounts: logins and tokens").
func TestLoginLimitsSharedByReplicasAndRestarts(t *testing.T) {
	clock := storetest.NewClock(time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC))
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	e := newEnv(t, func(o *api.Options) { o.Clock = clock.Now; o.TrustedProxies = trusted })
	svc, err := service.New(service.Options{Store: e.st, Logger: quietLogger()})
	require.NoError(t, err)
	replica := func() *env {
		srv, err := api.New(api.Options{Logger: quietLogger(), Registry: prometheus.NewRegistry(), Pool: e.st.Pool(), Auth: e.auth,
			Service: svc, Clock: clock.Now, TrustedProxies: trusted})
		require.NoError(t, err)
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)
		r := *e
		r.srv, r.http = srv, hs
		return &r
	}
	b := replica()
	const guesser = "203.0.113.9"
	for i := 0; i < 5; i++ {
		r := []*env{e, b}[i%2].login(guesser, "test-admin", "wrong password")
		require.Equal(t, 401, r.status, "attempt %d", i+1)
	}
	for _, x := range []*env{e, b, replica()} {
		r := x.login(guesser, "test-admin", "password-of-admin")
		assert.Equal(t, 429, r.status, "5 failures over two replicas lock the address on every replica and after a restart: %s", r.body)
	}
	r := b.do("POST", fmt.Sprintf("/api/v1/users/%d/clear-login-lockout", e.users[auth.RoleAdmin].ID), e.tokens[auth.RoleAdmin], map[string]string{"reason": "ticket 81"})
	require.Equal(t, 200, r.status, string(r.body))
	var cleared struct {
		N int `json:"failures_cleared"`
	}
	r.decode(t, &cleared)
	assert.Equal(t, 5, cleared.N)
	r = e.login(guesser, "test-admin", "password-of-admin")
	assert.Equal(t, 201, r.status, "an admin's clear on one replica lifts the lock on the other: %s", r.body)
}

// When the login limits cannot be read (the database is down) a login is
// refused with a clear error, never let through uncounted.
func TestLoginRefusedWithoutTheLimits(t *testing.T) {
	down, err := pgxpool.New(context.Background(), "postgres://127.0.0.1:5432/test")
	require.NoError(t, err)
	down.Close()
	e := newEnv(t, func(o *api.Options) { o.LoginLimits = auth.NewLoginLimits(down) })
	r := e.login("203.0.113.9", "test-admin", "password-of-admin")
	assert.Equal(t, 503, r.status, string(r.body))
	assert.Equal(t, "login_unavailable", r.errCode())
}
