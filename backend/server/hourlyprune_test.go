package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/devicelink"
	"kluis/backend/server"
	"kluis/deploy/dev/testenv"
)

// stoppedBackend starts and stops a backend (its database migrated and
// bootstrapped) and connects to its database, for rows a test leaves
// before the next start.
func stoppedBackend(t *testing.T) (*backend, *pgx.Conn) {
	t.Helper()
	first := startBackend(t, server.Options{})
	first.Stop()
	db, err := pgx.Connect(context.Background(), first.Options.DatabaseURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close(context.Background()) })
	return first, db
}

// The hourly jobs (the pruning of idempotency keys, and of the staff
// console's sessions that are long over) make their first pass as the
// backend starts: old rows left by an earlier run are gone soon after a
// start, the recent ones stay.
func TestHourlyPrunesRunAtStart(t *testing.T) {
	ctx := context.Background()
	first, db := stoppedBackend(t)
	var admin int64
	require.NoError(t, db.QueryRow(ctx, `SELECT id FROM auth_users WHERE username = $1`, server.DefaultAdminUser).Scan(&admin))
	now := time.Now()
	_, err := db.Exec(ctx, `INSERT INTO api_idempotency (user_id, key, request_hash, created_at) VALUES
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

// The device retention prunes as the backend starts: device events
// received, commands expired and code attempts made before the retention
// go, and the auth tokens that ended more than auth.EndedTokenRetention
// ago (a token that ended since stays, in the token list too), an old
// alarm that is still a device's latest stays, the pass is audited once
// (retention.pruned) and the audit trail's chain still verifies (GET
// /api/v1/audit/verify, kluisctl audit verify);
// kluis_device_history_pruned_total counts the rows.
func TestDeviceRetentionPrunesAtStart(t *testing.T) {
	ctx := context.Background()
	first, db := stoppedBackend(t)
	old := time.Now().Add(-devicelink.DefaultRetention - 24*time.Hour)
	_, err := db.Exec(ctx, `INSERT INTO device_events (event_id, device_id, kind, at, received_at, outcome, payload) VALUES
		('door-old', 'd1', 'door_opened', $1, $1, 'applied', '{"v":1,"id":"door-old","kind":"door_opened"}'),
		('alarm-old', 'd1', 'alarm', $1, $1, 'applied', '{"v":1,"id":"alarm-old","kind":"alarm","alarm":"forced_door","addr":{"board":0,"channel":1}}'),
		('door-new', 'd1', 'door_opened', now(), now(), 'applied', '{"v":1,"id":"door-new","kind":"door_opened"}')`, old)
	require.NoError(t, err)
	_, err = db.Exec(ctx, `INSERT INTO device_commands (command_id, device_id, kind, issued_at, expires_at, payload) VALUES
		('cmd-old', 'd1', 'open', $1, $1, '{}'), ('cmd-new', 'd1', 'open', now(), now(), '{}')`, old)
	require.NoError(t, err)
	_, err = db.Exec(ctx, `INSERT INTO code_attempts (device_id, at, method, reason, counted) VALUES
		('d1', $1, 'pin', 'wrong_code', true), ('d1', now(), 'pin', 'wrong_code', true)`, old)
	require.NoError(t, err)
	var admin int64
	require.NoError(t, db.QueryRow(ctx, `SELECT id FROM auth_users WHERE username = $1`, server.DefaultAdminUser).Scan(&admin))
	ended := time.Now().Add(-auth.EndedTokenRetention - time.Hour)
	_, err = db.Exec(ctx, `INSERT INTO auth_tokens (user_id, kind, name, token_hash, created_at, expires_at, revoked_at) VALUES
		($1, 'session', '', '\x0a01', $2, $2, NULL), ($1, 'api', 'token-revoked-old', '\x0a02', $2, now() + interval '1 day', $2),
		($1, 'api', 'token-revoked-new', '\x0a03', $2, now() + interval '1 day', now() - interval '1 day')`, admin, ended)
	require.NoError(t, err)
	left := func() []string {
		rows, err := db.Query(ctx, `SELECT event_id FROM device_events UNION ALL SELECT command_id FROM device_commands
			UNION ALL SELECT 'attempt-' || CASE WHEN at < $1 THEN 'old' ELSE 'new' END FROM code_attempts
			UNION ALL SELECT coalesce(nullif(name, ''), 'token-session-old') FROM auth_tokens WHERE token_hash IN ('\x0a01', '\x0a02', '\x0a03')
			ORDER BY 1`, old.Add(time.Hour))
		require.NoError(t, err)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return ids
	}
	require.Equal(t, []string{"alarm-old", "attempt-new", "attempt-old", "cmd-new", "cmd-old", "door-new", "door-old",
		"token-revoked-new", "token-revoked-old", "token-session-old"}, left())

	reg := prometheus.NewRegistry()
	b := startBackend(t, server.Options{DatabaseURL: first.Options.DatabaseURL, Keys: first.Options.Keys, Registry: reg})
	testenv.Eventually(t, "the old device event, command, code attempt and tokens pruned at the start", func() bool { return len(left()) == 5 })
	require.Equal(t, []string{"alarm-old", "attempt-new", "cmd-new", "door-new", "token-revoked-new"}, left())
	testenv.Eventually(t, "the pruned rows counted", func() bool {
		return testutil.CollectAndCount(reg, "kluis_device_history_pruned_total") == 5 &&
			testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP kluis_device_history_pruned_total Rows deleted by the hourly retention pass (-device-retention; auth tokens 30 days after their end), by table (device_events, device_commands, code_attempts, notifications, auth_tokens).
# TYPE kluis_device_history_pruned_total counter
kluis_device_history_pruned_total{table="auth_tokens"} 2
kluis_device_history_pruned_total{table="code_attempts"} 1
kluis_device_history_pruned_total{table="device_commands"} 1
kluis_device_history_pruned_total{table="device_events"} 1
kluis_device_history_pruned_total{table="notifications"} 0
`), "kluis_device_history_pruned_total") == nil
	})
	var rep struct {
		OK      bool  `json:"ok"`
		Records int64 `json:"records"`
	}
	require.NoError(t, b.Call(ctx, "GET", "/api/v1/audit/verify", nil, &rep))
	require.True(t, rep.OK)
	require.Positive(t, rep.Records)
	// The pass's audit record (chained by now, or still pending).
	audited := func() []string {
		rows, err := db.Query(ctx, `SELECT details::text FROM audit_log WHERE action = 'retention.pruned'
			UNION ALL SELECT details::text FROM audit_pending WHERE action = 'retention.pruned'`)
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return out
	}
	testenv.Eventually(t, "the pass audited", func() bool { return len(audited()) > 0 })
	recs := audited()
	require.Len(t, recs, 1, "one audit record for the pass")
	var details struct {
		Deleted map[string]int `json:"deleted"`
	}
	require.NoError(t, json.Unmarshal([]byte(recs[0]), &details))
	require.Equal(t, map[string]int{"auth_tokens": 2, "code_attempts": 1, "device_commands": 1, "device_events": 1, "notifications": 0}, details.Deleted)
}
