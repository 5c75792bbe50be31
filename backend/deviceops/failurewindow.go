package deviceops

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// failureWindow is one bound on a device's failures of a kind kept in
// PostgreSQL, one row each (a table with at least id, device_id and at):
// max of them within window lock the device until the oldest of those
// leaves the window, that is until the max-th newest one's time plus the
// window. The count reaches max exactly while that failure is in the
// window. The kiosk staff logins (deviceThrottle, two bounds on one table)
// and the kiosk document lookups (lookupThrottle) use it. Its rows are
// counted and written under the device's transaction lock (lock), so that
// every backend replica sees the failures written before; rows older than
// the window are pruned a batch at a time on every write (pruneSome) and
// all at once by the housekeeping (prune).
type failureWindow struct {
	// table holds the failures (kiosk_login_failures,
	// kiosk_lookup_misses): a constant, never input.
	table string
	// lockName names the device's transaction lock ("kiosk login"): the
	// lock is on "kluis <lockName> <device>".
	lockName string
	// only, when not empty, is an SQL condition a failure meets to count
	// ("NOT cleared"): a constant, never input. Pruning ignores it.
	only string
	// max failures within window lock the device.
	max    int
	window time.Duration
}

// querier runs SQL: a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// lock takes the device's transaction lock of these failures in tx; it
// holds until tx ends.
func (w failureWindow) lock(ctx context.Context, tx pgx.Tx, device string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1 || $2, 0))`, "kluis "+w.lockName+" ", device)
	return err
}

// where is the condition of the device's ($1) failures within the window
// (since $2).
func (w failureWindow) where() string {
	c := `device_id = $1 AND at > $2`
	if w.only != "" {
		c += ` AND ` + w.only
	}
	return c
}

// lockedUntil reports when the device's lock ends as of now: the max-th
// newest failure's time plus the window; zero when fewer than max are in
// the window (no lock).
func (w failureWindow) lockedUntil(ctx context.Context, q querier, device string, now time.Time) (time.Time, error) {
	var at time.Time
	err := q.QueryRow(ctx, `SELECT at FROM `+w.table+` WHERE `+w.where()+` ORDER BY at DESC OFFSET $3 LIMIT 1`,
		device, now.Add(-w.window), w.max-1).Scan(&at)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, err
	}
	return at.Add(w.window).UTC(), nil
}

// count reports how many of the device's failures are in the window as of
// now.
func (w failureWindow) count(ctx context.Context, q querier, device string, now time.Time) (int, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT count(*) FROM `+w.table+` WHERE `+w.where(), device, now.Add(-w.window)).Scan(&n)
	return n, err
}

// pruneSome deletes up to pruneBatch of the oldest rows (every device's)
// that have left the window as of now, and reports how many it deleted.
func (w failureWindow) pruneSome(ctx context.Context, q querier, now time.Time) (int, error) {
	tag, err := q.Exec(ctx, `DELETE FROM `+w.table+` WHERE id IN
		(SELECT id FROM `+w.table+` WHERE at <= $1 ORDER BY at LIMIT $2)`, now.Add(-w.window), pruneBatch)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

// prune deletes every row that has left the window as of now, pruneBatch
// rows per statement, and reports how many it deleted. Safe beside the
// writers and on every replica at once.
func (w failureWindow) prune(ctx context.Context, pool *pgxpool.Pool, now time.Time) (int, error) {
	total := 0
	for {
		n, err := w.pruneSome(ctx, pool, now)
		total += n
		if err != nil || n < pruneBatch {
			return total, err
		}
	}
}
