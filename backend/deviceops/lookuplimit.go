package deviceops

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// lookupThrottle bounds the document lookups (reserve, retrieve by the
// number) of kiosk staff sessions, against probing document numbers from a
// kiosk (docs/security.md, "Staff accounts: logins and tokens"): every
// lookup that finds nothing is a miss; maxSessionMisses misses in one
// kiosk session end it, and maxDeviceMisses misses on one device within
// lookupWindow pause every lookup there until the oldest of them leaves
// the window. The misses are kept in PostgreSQL (kiosk_lookup_misses,
// migration 0185), so every backend replica, which the broker may hand any
// of the device's requests, counts together, and a restart keeps them;
// the misses of a device are counted under a per-device transaction lock,
// so each sees the count of those before it on any replica. A found
// document takes nothing back: the bounds are of misses.
type lookupThrottle struct {
	pool *pgxpool.Pool
}

const (
	maxSessionMisses = 5
	maxDeviceMisses  = 12
	lookupWindow     = time.Hour
)

// lookupVerdict is what the bounds say of a lookup.
type lookupVerdict struct {
	// pausedUntil, when not zero, is when the device's pause ends: the
	// lookup is not made (or, after a miss, the device is paused now).
	pausedUntil time.Time
	// sessionEnded: this miss was the session's last (the caller
	// revokes it).
	sessionEnded bool
	// sessionMisses and deviceMisses count the misses so far (this one
	// included), for the audit.
	sessionMisses, deviceMisses int
}

// lookupPauseSQL finds the miss of a device ($1) whose leaving the window
// (since $2) ends its pause: the $3-th newest; NULL when there are fewer.
const lookupPauseSQL = `SELECT at FROM kiosk_lookup_misses
	WHERE device_id = $1 AND at > $2 ORDER BY at DESC OFFSET $3 LIMIT 1`

func devicePause(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, device string, now time.Time) (time.Time, error) {
	var at time.Time
	err := q.QueryRow(ctx, lookupPauseSQL, device, now.Add(-lookupWindow), maxDeviceMisses-1).Scan(&at)
	switch {
	case err == pgx.ErrNoRows:
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, err
	}
	return at.Add(lookupWindow).UTC(), nil
}

// lookupLock takes the device's lookup lock in tx.
func lookupLock(ctx context.Context, tx pgx.Tx, device string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('kluis kiosk lookup ' || $1, 0))`, device)
	return err
}

// paused reports when the device's lookup pause ends (zero: none). An
// error means the lookup must be refused (the database is unreachable).
func (t *lookupThrottle) paused(ctx context.Context, device string, now time.Time) (time.Time, error) {
	until, err := devicePause(ctx, t.pool, device, now.UTC())
	if err != nil {
		return time.Time{}, fmt.Errorf("deviceops: kiosk lookup limits: %w", err)
	}
	return until, nil
}

// miss counts a lookup of session token on device that found nothing and
// says what the bounds make of it.
func (t *lookupThrottle) miss(ctx context.Context, device string, token int64, now time.Time) (v lookupVerdict, err error) {
	now = now.UTC()
	err = pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		if err := lookupLock(ctx, tx, device); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kiosk_lookup_misses (device_id, token_id, at) VALUES ($1, $2, $3)`,
			device, token, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM kiosk_lookup_misses WHERE id IN
			(SELECT id FROM kiosk_lookup_misses WHERE at <= $1 ORDER BY at LIMIT $2)`, now.Add(-lookupWindow), pruneBatch); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM kiosk_lookup_misses WHERE token_id = $1),
			(SELECT count(*) FROM kiosk_lookup_misses WHERE device_id = $2 AND at > $3)`,
			token, device, now.Add(-lookupWindow)).Scan(&v.sessionMisses, &v.deviceMisses); err != nil {
			return err
		}
		var err error
		v.pausedUntil, err = devicePause(ctx, tx, device, now)
		return err
	})
	if err != nil {
		return lookupVerdict{}, fmt.Errorf("deviceops: kiosk lookup limits: %w", err)
	}
	v.sessionEnded = v.sessionMisses >= maxSessionMisses
	return v, nil
}

// PruneKioskLookups deletes the kiosk lookup misses older than the window
// as of now, pruneBatch rows per statement until none is left, and
// reports how many it deleted. A session's misses go with them: a kiosk
// session lives 15 minutes (auth.DefaultKioskTTL), well inside the window.
func PruneKioskLookups(ctx context.Context, pool *pgxpool.Pool, now time.Time) (int, error) {
	n, err := pruneBefore(ctx, pool, "kiosk_lookup_misses", now.UTC().Add(-lookupWindow))
	if err != nil {
		return n, fmt.Errorf("deviceops: prune kiosk lookup limits: %w", err)
	}
	return n, nil
}
