package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/deploy/dev/testenv"
)

// The hourly jobs (the pruning of idempotency keys, and of the staff
// console's sessions that are long over) make their first pass as the
// backend starts: old rows left by an earlier run are gone soon after a
// start, the recent ones stay.
func TestHourlyPrunesRunAtStart(t *testing.T) {
	first := startBackend(t, server.Options{})
	first.Stop()
	ctx := context.Background()
	db, err := pgx.Connect(ctx, first.Options.DatabaseURL)
	require.NoError(t, err)
	defer db.Close(ctx)
	var admin int64
	require.NoError(t, db.QueryRow(ctx, `SELECT id FROM auth_users WHERE username = $1`, server.DefaultAdminUser).Scan(&admin))
	now := time.Now()
	_, err = db.Exec(ctx, `INSERT INTO api_idempotency (user_id, key, request_hash, created_at) VALUES
		($1, 'old', '\x00', $2), ($1, 'recent', '\x00', $3)`, admin, now.Add(-49*time.Hour), now.Add(-time.Minute))
	require.NoError(t, err)
	_, err = db.Exec(ctx, `INSERT INTO auth_web_sessions (token_hash, user_id, csrf_token, created_at, last_seen_at, expires_at) VALUES
		('\x01', $1, 'old', $2, $2, $3), ('\x02', $1, 'live', $4, $4, $5)`,
		admin, now.Add(-72*time.Hour), now.Add(-48*time.Hour), now.Add(-time.Minute), now.Add(time.Hour))
	require.NoError(t, err)
	left := func() (keys, sessions []string) {
		rows, err := db.Query(ctx, `SELECT key FROM api_idempotency WHERE user_id = $1 ORDER BY key`, admin)
		require.NoError(t, err)
		keys, err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		rows, err = db.Query(ctx, `SELECT csrf_token FROM auth_web_sessions WHERE token_hash IN ('\x01', '\x02') ORDER BY csrf_token`)
		require.NoError(t, err)
		sessions, err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return keys, sessions
	}
	keys, sessions := left()
	require.Equal(t, []string{"old", "recent"}, keys)
	require.Equal(t, []string{"live", "old"}, sessions)

	startBackend(t, server.Options{DatabaseURL: first.Options.DatabaseURL, Keys: first.Options.Keys})
	testenv.Eventually(t, "the old idempotency key and web session pruned at the start", func() bool {
		k, s := left()
		return len(k) == 1 && len(s) == 1
	})
	keys, sessions = left()
	require.Equal(t, []string{"recent"}, keys)
	require.Equal(t, []string{"live"}, sessions)
}
