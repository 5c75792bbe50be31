package cli

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/pgtest"
)

// The API token lifetime and trusted proxy flags are checked before
// anything starts.
func TestServeRefusesBadTokenLifetimes(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "-api-token-ttl", "soon"}, `-api-token-ttl "soon"`},
		{[]string{"serve", "-api-token-max-ttl", "-5h"}, `-api-token-max-ttl "-5h"`},
		{[]string{"serve", "-api-token-ttl", "48h", "-api-token-max-ttl", "24h"}, "-api-token-ttl 48h0m0s is above -api-token-max-ttl 24h0m0s"},
		{[]string{"serve", "-trusted-proxies", "10.0.0.1,proxy.local"}, `-trusted-proxies: trusted proxy "proxy.local"`},
	} {
		e, _, errb := testEnv(map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=1"})
		assert.Equal(t, 1, Run(context.Background(), c.args, e), "%v", c.args)
		assert.Contains(t, errb.String(), c.want, "%v", c.args)
	}
	e, _, errb := testEnv(map[string]string{"KLUIS_API_TOKEN_TTL": "1h", "KLUIS_API_TOKEN_MAX_TTL": "30m",
		"DATABASE_URL": "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=1"})
	assert.Equal(t, 1, Run(context.Background(), []string{"serve"}, e))
	assert.Contains(t, errb.String(), "is above -api-token-max-ttl", "the environment is read too")
}

// kluis-backend token gives its token the lifetime of -api-token-ttl (or
// KLUIS_API_TOKEN_TTL), as the API does for a token asked without one, and
// refuses a lifetime above -api-token-max-ttl before creating anything.
func TestTokenHonoursTheLifetime(t *testing.T) {
	db := pgtest.NewDatabase(t)
	vars := map[string]string{"DATABASE_URL": db, "KLUIS_INSECURE_FAST_HASH": "1", "KLUIS_LOG_LEVEL": "warn", "KLUIS_NEW_PASSWORD": "counter password 1"}
	ctx := context.Background()
	e, _, errb := testEnv(vars)
	require.Equal(t, 0, Run(ctx, []string{"useradd", "-username", "an", "-role", "staff"}, e), errb.String())
	conn, err := pgx.Connect(ctx, db)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(ctx) })
	lifetime := func(name string) time.Duration {
		t.Helper()
		var created, expires time.Time
		require.NoError(t, conn.QueryRow(ctx, `SELECT created_at, expires_at FROM auth_tokens WHERE name = $1`, name).Scan(&created, &expires))
		return expires.Sub(created).Round(time.Second) // created_at is the database's clock, expires_at the backend's
	}

	e, out, errb := testEnv(vars)
	require.Equal(t, 0, Run(ctx, []string{"token", "-username", "an", "-name", "flag", "-api-token-ttl", "36h"}, e), errb.String())
	require.Regexp(t, `^kls_[A-Za-z0-9_-]{43}\n$`, out.String())
	require.Equal(t, 36*time.Hour, lifetime("flag"))

	env := map[string]string{"KLUIS_API_TOKEN_TTL": "2h"}
	for k, v := range vars {
		env[k] = v
	}
	e, _, errb = testEnv(env)
	require.Equal(t, 0, Run(ctx, []string{"token", "-username", "an", "-name", "env"}, e), errb.String())
	require.Equal(t, 2*time.Hour, lifetime("env"))

	e, _, errb = testEnv(vars)
	require.Equal(t, 0, Run(ctx, []string{"token", "-username", "an", "-name", "default"}, e), errb.String())
	require.Equal(t, auth.DefaultAPITokenTTL, lifetime("default"))

	e, _, errb = testEnv(vars)
	require.Equal(t, 1, Run(ctx, []string{"token", "-username", "an", "-name", "long", "-api-token-ttl", "48h", "-api-token-max-ttl", "24h"}, e))
	require.Contains(t, errb.String(), "-api-token-ttl 48h0m0s is above -api-token-max-ttl 24h0m0s")
	e, _, errb = testEnv(vars)
	require.Equal(t, 1, Run(ctx, []string{"token", "-username", "an", "-name", "bad", "-api-token-ttl", "soon"}, e))
	require.Contains(t, errb.String(), `-api-token-ttl "soon"`)
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM auth_tokens WHERE name IN ('long', 'bad')`).Scan(&n))
	require.Zero(t, n, "nothing created")
}
