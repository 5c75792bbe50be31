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
// lookup that does not find a document the session may act on is a miss,
// whether nothing was found (or, for retrieve, one in another device) or
// the document exists in a state the session may not act on (wrong_state:
// uncounted, it would tell a prober for free that a number exists);
// maxSessionMisses misses in one kiosk session end it, and maxDeviceMisses
// misses on one device within lookupWindow pause every lookup there until
// the oldest of them leaves the window. The misses are kept in PostgreSQL
// (kiosk_lookup_misses, migration 0185), so every backend replica, which
// the broker may hand any of the device's requests, counts together, and a
// restart keeps them. The pause check, the lookup itself and the count of
// its miss are one transaction under the device's lock (lookup), so
// concurrent lookups on any replicas cannot overrun either bound. A found
// document takes nothing back: the bounds are of misses.
type lookupThrottle struct {
	pool *pgxpool.Pool
	// device is the device's bound (its misses in the hour).
	device failureWindow
}

const (
	maxSessionMisses = 5
	maxDeviceMisses  = 12
	lookupWindow     = time.Hour
)

// newLookupThrottle returns the kiosk lookup bounds kept in pool.
func newLookupThrottle(pool *pgxpool.Pool) *lookupThrottle {
	return &lookupThrottle{pool: pool, device: failureWindow{table: "kiosk_lookup_misses", lockName: "kiosk lookup",
		max: maxDeviceMisses, window: lookupWindow}}
}

// lookupOutcome is what a lookup found, as the bounds see it.
type lookupOutcome int

const (
	// lookupFound: a document the session may act on; counts for nothing.
	lookupFound lookupOutcome = iota
	// lookupNotFound: no such document (or one the session may not see):
	// a miss.
	lookupNotFound
	// lookupWrongState: the document exists but is not in a state the
	// session may act on: a miss too, for it tells that the number exists.
	lookupWrongState
)

// String names the outcome for the audit.
func (o lookupOutcome) String() string {
	switch o {
	case lookupFound:
		return "found"
	case lookupWrongState:
		return "wrong_state"
	}
	return "not_found"
}

// lookupVerdict is what the bounds say of a lookup.
type lookupVerdict struct {
	// outcome is what the lookup found (when it was made).
	outcome lookupOutcome
	// pausedUntil, when not zero, is when the device's pause ends: the
	// lookup was not made (refused), or its miss paused the device.
	pausedUntil time.Time
	// refused: the device's lookups were paused, so none was made.
	refused bool
	// sessionOver: the session had already used its misses (another
	// lookup of it, concurrent, ended it): no lookup was made.
	sessionOver bool
	// sessionEnded: this miss was the session's last (the caller
	// revokes it).
	sessionEnded bool
	// sessionMisses and deviceMisses count the misses so far (this one
	// included), for the audit.
	sessionMisses, deviceMisses int
}

// missed reports whether the lookup was made and counted as a miss.
func (v lookupVerdict) missed() bool {
	return !v.refused && !v.sessionOver && v.outcome != lookupFound
}

// lookup makes a lookup of session token on device with find, within
// the bounds, and says what they make of it: under the device's lock and
// in one transaction it checks the pause and the session's misses (when
// either is used up, find is not called), calls find with the transaction
// (it reads the document there, and must write nothing), and counts its
// miss. An error means the lookup must be refused (the database is
// unreachable); the verdict then says whether find found a miss, if it
// got that far (the miss is not counted).
func (t *lookupThrottle) lookup(ctx context.Context, device string, token int64, now time.Time,
	find func(pgx.Tx) (lookupOutcome, error)) (v lookupVerdict, err error) {
	now = now.UTC()
	err = pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		v = lookupVerdict{}
		if err := t.device.lock(ctx, tx, device); err != nil {
			return err
		}
		var err error
		if v.pausedUntil, err = t.device.lockedUntil(ctx, tx, device, now); err != nil || !v.pausedUntil.IsZero() {
			v.refused = err == nil
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM kiosk_lookup_misses WHERE token_id = $1`, token).Scan(&v.sessionMisses); err != nil {
			return err
		}
		if v.sessionMisses >= maxSessionMisses {
			v.sessionOver = true
			return nil
		}
		out, err := find(tx)
		if err != nil || out == lookupFound {
			return err
		}
		v.outcome = out
		if _, err := tx.Exec(ctx, `INSERT INTO kiosk_lookup_misses (device_id, token_id, at) VALUES ($1, $2, $3)`,
			device, token, now); err != nil {
			return err
		}
		if _, err := t.device.pruneSome(ctx, tx, now); err != nil {
			return err
		}
		v.sessionMisses++
		if v.deviceMisses, err = t.device.count(ctx, tx, device, now); err != nil {
			return err
		}
		v.pausedUntil, err = t.device.lockedUntil(ctx, tx, device, now)
		return err
	})
	if err != nil {
		return lookupVerdict{outcome: v.outcome}, fmt.Errorf("deviceops: kiosk lookup limits: %w", err)
	}
	v.sessionEnded = v.missed() && v.sessionMisses >= maxSessionMisses
	return v, nil
}

// PruneKioskLookups deletes the kiosk lookup misses older than the window
// as of now, pruneBatch rows per statement until none is left, and
// reports how many it deleted. A session's misses go with them: a kiosk
// session lives 15 minutes (auth.DefaultKioskTTL), well inside the window.
func PruneKioskLookups(ctx context.Context, pool *pgxpool.Pool, now time.Time) (int, error) {
	n, err := newLookupThrottle(pool).device.prune(ctx, pool, now.UTC())
	if err != nil {
		return n, fmt.Errorf("deviceops: prune kiosk lookup limits: %w", err)
	}
	return n, nil
}
