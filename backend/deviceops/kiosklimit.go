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
	// burst and daily are the two bounds, on one table: the burst counts
	// the failures a success has not cleared, the daily cap all of them.
	// The daily window, the longer, is the one kept (pruned).
	burst, daily failureWindow
}

// newDeviceThrottle returns the kiosk staff login bounds kept in pool.
func newDeviceThrottle(pool *pgxpool.Pool) *deviceThrottle {
	return &deviceThrottle{pool: pool,
		burst: failureWindow{table: "kiosk_login_failures", lockName: "kiosk login", only: "NOT cleared",
			max: maxKioskFailures, window: kioskWindow},
		daily: failureWindow{table: "kiosk_login_failures", lockName: "kiosk login",
			max: maxKioskDailyFailures, window: kioskDailyWindow}}
}

const (
	maxKioskFailures      = 5
	kioskWindow           = 15 * time.Minute
	maxKioskDailyFailures = 10
	kioskDailyWindow      = 24 * time.Hour
	pruneBatch            = 100
)

// kioskLock is a lock of a device's staff logins: when it ends and
// whether it is the daily cap (else the burst lock). The zero value is no
// lock.
type kioskLock struct {
	until time.Time
	daily bool
}

// locked reports whether there is a lock.
func (l kioskLock) locked() bool { return !l.until.IsZero() }

// locked reports the lock of the device's staff logins at now: the
// later end when both hold, the daily cap's when it holds.
func (t *deviceThrottle) locked(ctx context.Context, q querier, device string, now time.Time) (kioskLock, error) {
	burst, err := t.burst.lockedUntil(ctx, q, device, now)
	if err != nil {
		return kioskLock{}, err
	}
	daily, err := t.daily.lockedUntil(ctx, q, device, now)
	if err != nil {
		return kioskLock{}, err
	}
	l := kioskLock{until: burst}
	if !daily.IsZero() {
		if daily.After(l.until) {
			l.until = daily
		}
		l.daily = true
	}
	return l, nil
}

// begin reports the lock of the device's staff logins; when there is none,
// it counts this attempt as a failure (attempt is its row) until succeed
// forgets it. An error means the login must be refused (the database is
// unreachable).
func (t *deviceThrottle) begin(ctx context.Context, device string, now time.Time) (lock kioskLock, attempt int64, err error) {
	now = now.UTC()
	err = pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		if err := t.daily.lock(ctx, tx, device); err != nil {
			return err
		}
		var err error
		if lock, err = t.locked(ctx, tx, device, now); err != nil || lock.locked() {
			return err
		}
		if err := tx.QueryRow(ctx, `INSERT INTO kiosk_login_failures (device_id, at) VALUES ($1, $2) RETURNING id`,
			device, now).Scan(&attempt); err != nil {
			return err
		}
		_, err = t.daily.pruneSome(ctx, tx, now)
		return err
	})
	if err != nil {
		return kioskLock{}, 0, fmt.Errorf("deviceops: kiosk login limits: %w", err)
	}
	return lock, attempt, nil
}

// lockedNow reports the lock the device's failures (this one's included)
// make, for the log and the answer; no lock when it cannot tell.
func (t *deviceThrottle) lockedNow(ctx context.Context, device string, now time.Time) kioskLock {
	lock, err := t.locked(ctx, t.pool, device, now.UTC())
	if err != nil {
		return kioskLock{}
	}
	return lock
}

// PruneKioskLogins deletes the kiosk staff login failures older than the
// daily window as of now, pruneBatch rows per statement until none is
// left, and reports how many it deleted. Safe beside logins and on every replica at
// once.
func PruneKioskLogins(ctx context.Context, pool *pgxpool.Pool, now time.Time) (int, error) {
	n, err := newDeviceThrottle(pool).daily.prune(ctx, pool, now.UTC())
	if err != nil {
		return n, fmt.Errorf("deviceops: prune kiosk login limits: %w", err)
	}
	return n, nil
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
