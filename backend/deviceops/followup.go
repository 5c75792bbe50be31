package deviceops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"kluis/backend/codes"
	"kluis/backend/internal/periodic"
)

// DefaultUnfollowedAfter is how long the backend waits for a device to act
// on a code it accepted before it gives the code back.
const DefaultUnfollowedAfter = 5 * time.Minute

// unfollowedMaxAge: a code used longer ago than this is never given back by
// the sweep (staff re-issue).
const unfollowedMaxAge = 24 * time.Hour

// unfollowedBacklogHold is how long past the window a code stays held
// back while the device's heartbeat reports events still waiting in its
// outbox: 2 hours drain 57,600 events at kluisd's default pace (8 a
// second), more than a busy device journals in a week offline.
const unfollowedBacklogHold = 2 * time.Hour

// ReasonUnfollowed is the audit reason of a code given back by the sweep.
const ReasonUnfollowed = "unfollowed_verification"

// FollowupOptions configure NewFollowup.
type FollowupOptions struct {
	// Pool is the database (required).
	Pool *pgxpool.Pool
	// Codes re-arms the codes (required).
	Codes *codes.Service
	// After is how long a device that is online must stay silent about a
	// document after the backend accepted its code; default
	// DefaultUnfollowedAfter.
	After time.Duration
	// Clock gives the backend's time; default time.Now.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// CodesChanged is told the device whose open codes a re-arm changed
	// (after the commit); nil: nobody.
	CodesChanged func(deviceID string)
	// Every is the interval between sweeps; default a fifth of After,
	// between one second and one minute.
	Every time.Duration
}

// Followup gives back codes whose accepted verification the device never
// followed: the backend marks a code used when it answers ok, before the
// device pulses; if kluisd dies between that answer and journaling its
// pulse intent, it never opens the door and never reports, and the citizen
// would be told "already collected". Sweep re-arms such a code (with
// codes.Service.Rearm and its guards) when the device, online and heard by
// this backend for the whole window, reported nothing about the document or
// its compartment since the verification.
type Followup struct {
	pool    *pgxpool.Pool
	codes   *codes.Service
	after   time.Duration
	every   time.Duration
	now     func() time.Time
	log     *slog.Logger
	changed func(deviceID string)
	// started is when this backend started listening: events a device
	// queued while the backend was down arrive after it.
	started time.Time

	mu sync.Mutex
	// tried holds the candidates Rearm refused (code id and use time), so
	// that a refusal is audited once; pruned after unfollowedMaxAge.
	tried map[triedKey]time.Time
}

type triedKey struct {
	codeID string
	usedAt time.Time
}

// NewFollowup checks o and returns a Followup; its window starts now.
func NewFollowup(o FollowupOptions) (*Followup, error) {
	if o.Pool == nil || o.Codes == nil {
		return nil, errors.New("deviceops: followup needs a pool and codes")
	}
	if o.After < 0 {
		return nil, fmt.Errorf("deviceops: followup window %s is negative", o.After)
	}
	if o.After == 0 {
		o.After = DefaultUnfollowedAfter
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.CodesChanged == nil {
		o.CodesChanged = func(string) {}
	}
	if o.Every <= 0 {
		o.Every = min(max(o.After/5, time.Second), time.Minute)
	}
	return &Followup{pool: o.Pool, codes: o.Codes, after: o.After, every: o.Every, now: o.Clock, log: o.Logger.With("part", "followup"),
		changed: o.CodesChanged, started: o.Clock().UTC(), tried: map[triedKey]time.Time{}}, nil
}

// After returns the window.
func (f *Followup) After() time.Duration { return f.after }

// unfollowed are the codes accepted by a device verification at least
// `after` ago ($2 = now - after) and within the max age ($3), still used,
// of a document still loaded or notified at that device, where the device
// has been online since at least $2 and, since the verification, sent no
// event naming the document (kluisd names the document on every event of
// an operation it knew of, also one it resumed after a restart) and none
// that says the document may be gone or a pulse may have happened at its
// compartment (item_removed, alarm pulse_uncertain). Other sensor events at
// the compartment (a door tugged at, a forced-door alarm, a door sensor's
// noise) do not hold the code back: the device never pulsed for it. The
// window also starts no earlier than the backend did ($4). While the
// device's last heartbeat says its outbox still holds events (backlog >
// 0: after a long outage it sends them oldest first, at 8 a second, so an
// operation's events after the reconnection wait behind the backlog), its
// silence proves nothing and the code is held back, for at most
// unfollowedBacklogHold past the window ($5): a backlog that does not
// drain (KluisdJournalBacklog) does not hold a citizen's code for ever.
const unfollowedQuery = `
SELECT encode(c.id, 'base64'), c.document_id::text, c.device_id, c.used_at
FROM codes c
JOIN documents d ON d.id = c.document_id AND d.device_id = c.device_id AND d.state IN ('loaded', 'notified')
JOIN device_presence p ON p.device_id = c.device_id AND p.state = 'online' AND p.changed_at <= $2
WHERE c.used_at IS NOT NULL AND c.revoked_at IS NULL AND c.expires_at > $1
  AND c.used_at <= $2 AND c.used_at > $3 AND $4 <= $2
  AND NOT (c.used_at > $5 AND EXISTS (SELECT 1 FROM device_diagnostics g
                                      WHERE g.device_id = c.device_id
                                        AND coalesce((g.heartbeat->>'backlog')::bigint, 0) > 0))
  AND EXISTS (SELECT 1 FROM code_attempts a
              WHERE a.code_id = c.id AND a.device_id = c.device_id AND a.reason = 'ok' AND a.at = c.used_at)
  AND NOT EXISTS (SELECT 1 FROM device_events e
                  WHERE e.device_id = c.device_id AND e.received_at >= c.used_at
                    AND (e.payload->>'document_id' = c.document_id::text
                         OR (e.payload->'addr'->>'board' = c.board::text
                             AND e.payload->'addr'->>'channel' = c.channel::text
                             AND (e.kind = 'item_removed'
                                  OR (e.kind = 'alarm' AND e.payload->>'alarm' = 'pulse_uncertain')))))
ORDER BY c.used_at
LIMIT 200`

// Sweep gives back every unfollowed code it finds and returns how many.
func (f *Followup) Sweep(ctx context.Context) (int, error) {
	now := f.now().UTC()
	cutoff := now.Add(-f.after)
	rows, err := f.pool.Query(ctx, unfollowedQuery, now, cutoff, now.Add(-unfollowedMaxAge), f.started, cutoff.Add(-unfollowedBacklogHold))
	if err != nil {
		return 0, fmt.Errorf("deviceops: unfollowed codes: %w", err)
	}
	type candidate struct {
		codeID, documentID, deviceID string
		usedAt                       time.Time
	}
	var cands []candidate
	for rows.Next() {
		var c candidate
		if err := rows.Scan(&c.codeID, &c.documentID, &c.deviceID, &c.usedAt); err != nil {
			rows.Close()
			return 0, fmt.Errorf("deviceops: unfollowed codes: %w", err)
		}
		cands = append(cands, c)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("deviceops: unfollowed codes: %w", err)
	}
	f.prune(now)
	n := 0
	for _, c := range cands {
		k := triedKey{c.codeID, c.usedAt}
		if f.wasTried(k) {
			continue
		}
		var ok bool
		err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
			var err error
			ok, err = f.codes.Rearm(ctx, tx, codes.Rearm{DocumentID: c.documentID, DeviceID: c.deviceID,
				UsedSince: c.usedAt, Actor: "system", Reason: ReasonUnfollowed})
			return err
		})
		if err != nil {
			return n, fmt.Errorf("deviceops: re-arm unfollowed code of %s: %w", c.documentID, err)
		}
		if !ok {
			f.markTried(k, now)
			continue
		}
		n++
		f.log.Warn("code given back: the device never acted on its accepted verification",
			"device", c.deviceID, "document", c.documentID, "used_at", c.usedAt, "after", f.after)
		f.changed(c.deviceID)
	}
	return n, nil
}

func (f *Followup) wasTried(k triedKey) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.tried[k]
	return ok
}

func (f *Followup) markTried(k triedKey, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tried[k] = now
}

func (f *Followup) prune(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.tried {
		if now.Sub(k.usedAt) > unfollowedMaxAge {
			delete(f.tried, k)
		}
	}
}

// Run sweeps every interval (the first after one) until ctx ends; errors
// are logged. It returns ctx's error.
func (f *Followup) Run(ctx context.Context) error {
	return periodic.Loop{Every: f.every, Delayed: true}.Run(ctx, func(ctx context.Context) {
		if _, err := f.Sweep(ctx); err != nil && ctx.Err() == nil {
			f.log.Error("unfollowed verification sweep failed", "err", err)
		}
	})
}
