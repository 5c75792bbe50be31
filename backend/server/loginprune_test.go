package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/backend/store/storetest"
	"kluis/deploy/dev/testenv"
)

// Expired login-limit rows (password logins' failures, known addresses,
// kiosk staff login failures) are pruned at the housekeeping interval by
// the backend's own clock, also when no login comes: before, only a login
// pruned them, so after a burst of guesses they stayed as long as it was
// quiet. The window's rows stay until the clock moves past it.
func TestLoginLimitsPrunedPeriodically(t *testing.T) {
	clock := storetest.NewClock(time.Now())
	s := startBackend(t, server.Options{Clock: clock.Now, HousekeepEvery: 200 * time.Millisecond})
	ctx := context.Background()
	db, err := pgx.Connect(ctx, s.Options.DatabaseURL)
	require.NoError(t, err)
	defer db.Close(ctx)
	now := clock.Now()
	_, err = db.Exec(ctx, `INSERT INTO auth_login_failures (username, source, at) VALUES
		('guess', '203.0.113.9', $1), ('guess', '203.0.113.9', $2)`, now.Add(-20*time.Minute), now.Add(-5*time.Minute))
	require.NoError(t, err)
	_, err = db.Exec(ctx, `INSERT INTO auth_login_sources (username, source, last_login_at) VALUES
		('an', '192.0.2.1', $1), ('an', '192.0.2.2', $2)`, now.Add(-31*24*time.Hour), now.Add(-24*time.Hour))
	require.NoError(t, err)
	// Kiosk staff login failures count for a day (the daily cap).
	_, err = db.Exec(ctx, `INSERT INTO kiosk_login_failures (device_id, at) VALUES ('k1', $1), ('k1', $2)`,
		now.Add(-24*time.Hour-20*time.Minute), now.Add(-24*time.Hour+5*time.Minute))
	require.NoError(t, err)
	counts := func() [3]int {
		var c [3]int
		require.NoError(t, db.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM auth_login_failures WHERE username = 'guess'),
			(SELECT count(*) FROM auth_login_sources WHERE username = 'an'),
			(SELECT count(*) FROM kiosk_login_failures WHERE device_id = 'k1')`).Scan(&c[0], &c[1], &c[2]))
		return c
	}
	testenv.Eventually(t, "the expired rows pruned without a login", func() bool { return counts() == [3]int{1, 1, 1} })
	clock.Add(11 * time.Minute)
	testenv.Eventually(t, "the rest of the window pruned once the backend's clock passed it", func() bool {
		return counts() == [3]int{0, 1, 0}
	})
}
