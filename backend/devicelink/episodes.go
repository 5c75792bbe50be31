package devicelink

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"kluis/backend/audit"
)

// maxPendingEpisodes bounds the episode records waiting for the database
// (it is down): past it the oldest is dropped (the warning log still
// names the device).
const maxPendingEpisodes = 10000

// episode is the start of a device's episode over one of its budgets, to
// be audited once.
type episode struct {
	device string
	kind   budgetKind
	at     time.Time
	budget Budget
}

// episodeLog holds the episodes not yet audited. Adding never waits: the
// budget check runs in the broker's reading goroutine.
type episodeLog struct {
	mu      sync.Mutex
	pending []episode
	wake    chan struct{}
}

func newEpisodeLog() *episodeLog { return &episodeLog{wake: make(chan struct{}, 1)} }

// add queues e; it reports whether the oldest waiting one was dropped.
func (e *episodeLog) add(ep episode) (dropped bool) {
	e.mu.Lock()
	if len(e.pending) >= maxPendingEpisodes {
		e.pending = e.pending[1:]
		dropped = true
	}
	e.pending = append(e.pending, ep)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return dropped
}

func (e *episodeLog) take() []episode {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.pending
	e.pending = nil
	return out
}

// putBack returns episodes that could not be written, ahead of newer ones.
func (e *episodeLog) putBack(eps []episode) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pending = append(eps, e.pending...)
	if n := len(e.pending) - maxPendingEpisodes; n > 0 {
		e.pending = e.pending[n:]
	}
}

// recordEpisodes audits each episode over budget once (device.throttled,
// by "system", about the device) until ctx ends; a failed write is
// retried every few seconds.
func (l *Link) recordEpisodes(ctx context.Context) {
	retry := time.NewTicker(5 * time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.episodes.wake:
		case <-retry.C:
		}
		eps := l.episodes.take()
		if len(eps) == 0 {
			continue
		}
		if err := l.auditEpisodes(ctx, eps); err != nil {
			l.log.Error("auditing devices over budget failed; retrying", "episodes", len(eps), "err", err)
			l.episodes.putBack(eps)
		}
	}
}

func (l *Link) auditEpisodes(ctx context.Context, eps []episode) error {
	ctx, cancel := context.WithTimeout(ctx, l.o.Timeout)
	defer cancel()
	return pgx.BeginFunc(ctx, l.o.Pool, func(tx pgx.Tx) error {
		for _, ep := range eps {
			if _, err := audit.Append(ctx, tx, audit.Entry{At: ep.at, Actor: "system", Action: "device.throttled",
				Subject: "device:" + ep.device, Details: map[string]any{
					"budget": ep.kind.String(), "rate_per_s": ep.budget.Rate, "burst": ep.budget.Burst,
				}}); err != nil {
				return fmt.Errorf("audit device.throttled: %w", err)
			}
		}
		return nil
	})
}
