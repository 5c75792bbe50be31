package service

import (
	"context"
	"fmt"
	"time"

	"kluis/backend/internal/periodic"
)

// HousekeepResult says what one Housekeep pass did.
type HousekeepResult struct {
	// Expired counts documents moved to expired.
	Expired int
	// Purged counts documents whose personal data was erased.
	Purged int
	// Unclaimed counts documents never closed whose personal data was
	// erased (PurgeUnclaimed).
	Unclaimed int
}

// Housekeep runs the periodic jobs once: ExpireDue, then Purge with the
// configured retention, then PurgeUnclaimed with the unclaimed retention. (Notifications that did not go out are retried by
// the notification outbox, backend/notify's Outbox, not here.)
func (s *Service) Housekeep(ctx context.Context) (HousekeepResult, error) {
	var r HousekeepResult
	var err error
	if r.Expired, err = s.ExpireDue(ctx); err != nil {
		return r, fmt.Errorf("service: expire: %w", err)
	}
	if r.Purged, err = s.Purge(ctx, 0); err != nil {
		return r, fmt.Errorf("service: purge: %w", err)
	}
	if r.Unclaimed, err = s.PurgeUnclaimed(ctx, 0); err != nil {
		return r, fmt.Errorf("service: purge unclaimed: %w", err)
	}
	return r, nil
}

// RunHousekeeping calls Housekeep at once and then every interval (default
// one minute) until ctx ends; errors are logged and the loop goes on. Safe
// on several replicas at once: every transition locks its document and
// re-checks its state. It returns ctx's error.
func (s *Service) RunHousekeeping(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		every = time.Minute
	}
	return periodic.Loop{Every: every}.Run(ctx, func(ctx context.Context) {
		if _, err := s.Housekeep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("housekeeping failed", "err", err)
		}
	})
}
