package deviceops

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/store/storetest"
)

// The device locks of the kiosk throttles are the ones every replica
// takes, older ones included (a rolling upgrade runs both at once): the
// advisory lock on hashtextextended('kluis kiosk login ' || device, 0)
// and 'kluis kiosk lookup ' || device. Held by failureWindow.lock, another
// session cannot take the same key, and can take another device's.
func TestFailureWindowLockIsTheReplicasLock(t *testing.T) {
	ctx := context.Background()
	pool := storetest.New(t).Pool()
	for _, c := range []struct {
		w    failureWindow
		name string
	}{{newDeviceThrottle(pool).daily, "kluis kiosk login "}, {newDeviceThrottle(pool).burst, "kluis kiosk login "},
		{newLookupThrottle(pool).device, "kluis kiosk lookup "}} {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			require.NoError(t, c.w.lock(ctx, tx, "k1"))
			try := func(device string) (got bool) {
				require.NoError(t, pgx.BeginFunc(ctx, pool, func(other pgx.Tx) error {
					return other.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtextextended($1 || $2, 0))`, c.name, device).Scan(&got)
				}))
				return got
			}
			assert.False(t, try("k1"), "%s: the same lock as %q", c.w.table, c.name)
			assert.True(t, try("k2"), "%s: another device's is free", c.w.table)
			return nil
		})
		require.NoError(t, err)
	}
}

// lockedUntil is the max-th newest failure's time plus the window, only
// counting the rows that meet only; count counts the window's.
func TestFailureWindowLockedUntil(t *testing.T) {
	ctx := context.Background()
	pool := storetest.New(t).Pool()
	th := newDeviceThrottle(pool)
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration, cleared bool) {
		_, err := pool.Exec(ctx, `INSERT INTO kiosk_login_failures (device_id, at, cleared) VALUES ('k1', $1, $2)`, now.Add(d), cleared)
		require.NoError(t, err)
	}
	for i := range 4 {
		at(-time.Duration(10-i)*time.Minute, false) // -10, -9, -8, -7 min
	}
	until, err := th.burst.lockedUntil(ctx, pool, "k1", now)
	require.NoError(t, err)
	assert.True(t, until.IsZero(), "4 of 5: no lock")
	at(-20*time.Minute, false) // outside the 15 minutes
	at(-time.Minute, true)     // cleared: not the burst's
	until, err = th.burst.lockedUntil(ctx, pool, "k1", now)
	require.NoError(t, err)
	assert.True(t, until.IsZero(), "still 4 in the burst's window")
	at(-5*time.Minute, false)
	until, err = th.burst.lockedUntil(ctx, pool, "k1", now)
	require.NoError(t, err)
	assert.Equal(t, now.Add(-10*time.Minute+kioskWindow), until, "the oldest of the five leaving the window ends it")
	n, err := th.daily.count(ctx, pool, "k1", now)
	require.NoError(t, err)
	assert.Equal(t, 7, n, "the daily window counts the cleared and the older too")
	n, err = th.burst.count(ctx, pool, "k1", now)
	require.NoError(t, err)
	assert.Equal(t, 5, n)
}
