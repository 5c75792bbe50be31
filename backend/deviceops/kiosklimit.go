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
// the window (docs/security.md, "Staff accounts: logins and tokens"). The
// count is kept in PostgreSQL (kiosk_login_failures, migration 0181), so
// every backend replica, which the broker may hand any of the device's
// requests, sees the same count, and a restart keeps it. An attempt is
// counted when begin lets it through, before the credential is checked,
// under a per-device transaction lock: concurrent attempts on any replicas
// cannot overrun the limit. A successful login clears the device's count.
// Every write deletes up to pruneBatch rows older than the window, and
// PruneKioskLogins deletes them all (the backend runs it periodically, so
// they also go when no kiosk login comes).
type deviceThrottle struct {
	pool *pgxpool.Pool
}

const (
	maxKioskFailures = 5
	kioskWindow      = 15 * time.Minute
	pruneBatch       = 100
)

// begin reports whether the device's staff logins are locked; when not, it
// counts this attempt as a failure until succeed clears it. An error means
// the login must be refused (the database is unreachable).
func (t *deviceThrottle) begin(ctx context.Context, device string, now time.Time) (locked bool, err error) {
	now = now.UTC()
	since := now.Add(-kioskWindow)
	err = pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('kluis kiosk login ' || $1, 0))`, device); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM kiosk_login_failures
			WHERE device_id = $1 AND at > $2 LIMIT $3) f`, device, since, maxKioskFailures).Scan(&n); err != nil {
			return err
		}
		if n >= maxKioskFailures {
			locked = true
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kiosk_login_failures (device_id, at) VALUES ($1, $2)`, device, now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM kiosk_login_failures WHERE id IN
			(SELECT id FROM kiosk_login_failures WHERE at <= $1 ORDER BY at LIMIT $2)`, since, pruneBatch)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("deviceops: kiosk login limits: %w", err)
	}
	return locked, nil
}

// lockedNow reports whether the device's failures (this one's included)
// reached the limit, for the log; false when it cannot tell.
func (t *deviceThrottle) lockedNow(ctx context.Context, device string, now time.Time) bool {
	var n int
	err := t.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM kiosk_login_failures
		WHERE device_id = $1 AND at > $2 LIMIT $3) f`, device, now.UTC().Add(-kioskWindow), maxKioskFailures).Scan(&n)
	return err == nil && n >= maxKioskFailures
}

// PruneKioskLogins deletes the kiosk staff login failures older than the
// window as of now, pruneBatch rows per statement until none is left, and
// reports how many it deleted. Safe beside logins and on every replica at
// once.
func PruneKioskLogins(ctx context.Context, pool *pgxpool.Pool, now time.Time) (int, error) {
	total := 0
	for {
		tag, err := pool.Exec(ctx, `DELETE FROM kiosk_login_failures WHERE id IN
			(SELECT id FROM kiosk_login_failures WHERE at <= $1 ORDER BY at LIMIT $2)`, now.UTC().Add(-kioskWindow), pruneBatch)
		if err != nil {
			return total, fmt.Errorf("deviceops: prune kiosk login limits: %w", err)
		}
		total += int(tag.RowsAffected())
		if tag.RowsAffected() < pruneBatch {
			return total, nil
		}
	}
}

// succeed clears the device's count after a successful login.
func (t *deviceThrottle) succeed(ctx context.Context, device string) error {
	if _, err := t.pool.Exec(ctx, `DELETE FROM kiosk_login_failures WHERE device_id = $1`, device); err != nil {
		return fmt.Errorf("deviceops: kiosk login limits: %w", err)
	}
	return nil
}
