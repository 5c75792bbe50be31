package service

import (
	"context"
	"errors"
	"fmt"
	"time"

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

// RedeliverReady gives the holders of loaded documents who were never told
// (every channel failed, or the process stopped between the commit and the
// message) new codes, which sends the ready message again (Reissue), once
// the document has been untouched for RedeliverAfter. A document whose
// message fails again is tried again RedeliverAfter later. Safe on several
// replicas: the document is locked and re-checked, and the reissue itself
// touches it. It returns how many documents got a new message.
func (s *Service) RedeliverReady(ctx context.Context) (int, error) {
	if s.notifier == nil || s.codes == nil {
		return 0, nil
	}
	cutoff := s.clock().Add(-s.redeliverAfter)
	ids, err := store.UndeliveredReady(ctx, s.db, cutoff, 200)
	if err != nil {
		return 0, err
	}
	n := 0
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
	if n > 0 {
		s.log.Info("ready messages sent again", "count", n)
	}
	return n, nil
}

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
