package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"kluis/backend/lifecycle"
	"kluis/backend/store"
)

// HousekeepResult says what one Housekeep pass did.
type HousekeepResult struct {
	// Expired counts documents moved to expired.
	Expired int
	// Purged counts documents whose personal data was erased.
	Purged int
	// Redelivered counts loaded documents whose holder was never told and
	// who got new codes in a new ready message.
	Redelivered int
}

// Housekeep runs the periodic jobs once: ExpireDue, then Purge with the
// configured retention, then RedeliverReady.
func (s *Service) Housekeep(ctx context.Context) (HousekeepResult, error) {
	var r HousekeepResult
	var err error
	if r.Expired, err = s.ExpireDue(ctx); err != nil {
		return r, fmt.Errorf("service: expire: %w", err)
	}
	if r.Purged, err = s.Purge(ctx, 0); err != nil {
		return r, fmt.Errorf("service: purge: %w", err)
	}
	if r.Redelivered, err = s.RedeliverReady(ctx); err != nil {
		return r, fmt.Errorf("service: redeliver: %w", err)
	}
	return r, nil
}

// noticeWindow is how far back RedeliverReady looks for receipts and
// expiry notices that never went out.
const noticeWindow = 24 * time.Hour

// RedeliverReady tells the holders who were never told (every channel
// failed, or the process stopped between the commit and the message), once
// the change has waited RedeliverAfter: loaded documents get new codes in
// a new ready message (Reissue); collected and expired documents of the
// last day get their receipt or expiry notice again. A message that fails
// again is tried again RedeliverAfter later. Safe on several replicas: a
// ready document is locked and re-checked, and the notices are sent by one
// replica at a time (an advisory lock). It returns how many documents got
// a new message.
func (s *Service) RedeliverReady(ctx context.Context) (int, error) {
	if s.notifier == nil {
		return 0, nil
	}
	now := s.clock()
	cutoff := now.Add(-s.redeliverAfter)
	n := 0
	if s.codes != nil {
		ids, err := store.UndeliveredReady(ctx, s.db, cutoff, 200)
		if err != nil {
			return 0, err
		}
		for _, id := range ids {
			_, err := s.do(ctx, "system", id, change{action: lifecycle.Reissue, notify: NotifyReissued,
				apply: func(ctx context.Context, st *step) error {
					// Another replica may have just done it.
					if !st.doc.UpdatedAt.Before(cutoff) {
						return fmt.Errorf("document %s changed meanwhile: %w", id, ErrConflict)
					}
					if err := s.revoke(ctx, st); err != nil {
						return err
					}
					return s.issue(ctx, st)
				}})
			switch {
			case err == nil:
				n++
			case errors.Is(err, ErrForbiddenTransition), errors.Is(err, ErrConflict), errors.Is(err, ErrNotFound):
				// collected, expired or redelivered meanwhile
			default:
				return n, err
			}
		}
	}
	err := s.st.InTx(ctx, func(tx pgx.Tx) error {
		var mine bool
		if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", redeliverLockKey).Scan(&mine); err != nil || !mine {
			return err
		}
		for _, kind := range []string{NotifyCollected, NotifyExpired} {
			ids, err := store.UndeliveredNotices(ctx, s.db, kind, now.Add(-noticeWindow), cutoff, 200)
			if err != nil {
				return err
			}
			for _, id := range ids {
				doc, err := store.GetDocument(ctx, s.db, id)
				if err != nil {
					return err
				}
				var comp store.Compartment
				if doc.CompartmentID != 0 {
					if comp, err = store.GetCompartment(ctx, s.db, doc.CompartmentID); err != nil {
						return err
					}
				}
				if err := s.notifier.Notify(ctx, Notification{Kind: kind, Document: doc, Compartment: comp}); err != nil {
					s.log.Warn("notice sent again failed", "document", id, "kind", kind, "err", err)
					continue
				}
				n++
			}
		}
		return nil
	})
	if n > 0 {
		s.log.Info("messages sent again", "count", n)
	}
	return n, err
}

// redeliverLockKey is the advisory lock of the notice redelivery (the
// ASCII of "kluis_rd").
const redeliverLockKey int64 = 0x6b6c7569735f7264

// RunHousekeeping calls Housekeep at once and then every interval (default
// one minute) until ctx ends; errors are logged and the loop goes on. Safe
// on several replicas at once: every transition locks its document and
// re-checks its state. It returns ctx's error.
func (s *Service) RunHousekeeping(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := s.Housekeep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("housekeeping failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
