package deviceops

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// deviceThrottle locks kiosk staff logins (PIN or badge) on a device after
// maxKioskFailures failures within kioskWindow, until the oldest leaves
// the window, and after maxKioskDailyFailures failures within
// kioskDailyWindow, until the oldest of those leaves that window
// (docs/security.md, "Staff accounts: logins and tokens"). The
// count is kept in PostgreSQL (kiosk_login_failures, migration 0181), so
// every backend replica, which the broker may hand any of the device's
// requests, sees the same count, and a restart keeps it. An attempt is
// counted when begin lets it through, before the credential is checked,
// under a per-device transaction lock: concurrent attempts on any replicas
// cannot overrun the limit. A successful login clears the device's burst
// count, not its daily one: the failures stay, marked cleared, so that
// the rightful staff logging in between guesses gives a guesser no new
// day's worth of attempts. Every write deletes up to pruneBatch rows older
// than the daily window, and PruneKioskLogins deletes them all (the
// backend runs it periodically, so they also go when no kiosk login
// comes).
type deviceThrottle struct {
	pool *pgxpool.Pool
}

const (
	maxKioskFailures      = 5
	kioskWindow           = 15 * time.Minute
	maxKioskDailyFailures = 10
	kioskDailyWindow      = 24 * time.Hour
	pruneBatch            = 100
)

// kioskLockedSQL counts a device's failures ($1) that lock it: true when
// the uncleared ones since $2 (the burst window) reach $3 or all of them
// since $4 (the daily window) reach $5.
const kioskLockedSQL = `SELECT
	(SELECT count(*) FROM (SELECT 1 FROM kiosk_login_failures
		WHERE device_id = $1 AND at > $2 AND NOT cleared LIMIT $3) f) >= $3
	OR (SELECT count(*) FROM (SELECT 1 FROM kiosk_login_failures
		WHERE device_id = $1 AND at > $4 LIMIT $5) f) >= $5`

// kioskLocked reports whether the device's staff logins are locked at now.
func kioskLocked(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, device string, now time.Time) (bool, error) {
	var locked bool
	err := q.QueryRow(ctx, kioskLockedSQL, device, now.Add(-kioskWindow), maxKioskFailures,
		now.Add(-kioskDailyWindow), maxKioskDailyFailures).Scan(&locked)
	return locked, err
}

// begin reports whether the device's staff logins are locked; when not, it
// counts this attempt as a failure (attempt is its row) until succeed
// forgets it. An error means the login must be refused (the database is
// unreachable).
func (t *deviceThrottle) begin(ctx context.Context, device string, now time.Time) (locked bool, attempt int64, err error) {
	now = now.UTC()
	err = pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('kluis kiosk login ' || $1, 0))`, device); err != nil {
			return err
		}
		var err error
		if locked, err = kioskLocked(ctx, tx, device, now); err != nil || locked {
			return err
		}
		if err := tx.QueryRow(ctx, `INSERT INTO kiosk_login_failures (device_id, at) VALUES ($1, $2) RETURNING id`,
			device, now).Scan(&attempt); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM kiosk_login_failures WHERE id IN
			(SELECT id FROM kiosk_login_failures WHERE at <= $1 ORDER BY at LIMIT $2)`, now.Add(-kioskDailyWindow), pruneBatch)
		return err
	})
	if err != nil {
		return false, 0, fmt.Errorf("deviceops: kiosk login limits: %w", err)
	}
	return locked, attempt, nil
}

// lockedNow reports whether the device's failures (this one's included)
// reached the limit, for the log; false when it cannot tell.
func (t *deviceThrottle) lockedNow(ctx context.Context, device string, now time.Time) bool {
	locked, err := kioskLocked(ctx, t.pool, device, now.UTC())
	return err == nil && locked
}

// PruneKioskLogins deletes the kiosk staff login failures older than the
// daily window as of now, pruneBatch rows per statement until none is
// left, and reports how many it deleted. Safe beside logins and on every replica at
// once.
func PruneKioskLogins(ctx context.Context, pool *pgxpool.Pool, now time.Time) (int, error) {
	total := 0
	for {
		tag, err := pool.Exec(ctx, `DELETE FROM kiosk_login_failures WHERE id IN
			(SELECT id FROM kiosk_login_failures WHERE at <= $1 ORDER BY at LIMIT $2)`, now.UTC().Add(-kioskDailyWindow), pruneBatch)
		if err != nil {
			return total, fmt.Errorf("deviceops: prune kiosk login limits: %w", err)
		}
		total += int(tag.RowsAffected())
		if tag.RowsAffected() < pruneBatch {
			return total, nil
		}
	}
}

// succeed forgets the successful attempt (begin's row) and clears the
// device's burst count; its failures still count towards the daily cap.
func (t *deviceThrottle) succeed(ctx context.Context, device string, attempt int64) error {
	if _, err := t.pool.Exec(ctx, `WITH ok AS (DELETE FROM kiosk_login_failures WHERE id = $2)
		UPDATE kiosk_login_failures SET cleared = true WHERE device_id = $1 AND NOT cleared AND id <> $2`, device, attempt); err != nil {
		return fmt.Errorf("deviceops: kiosk login limits: %w", err)
	}
	return nil
}
