package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/internal/periodic"
	"kluis/backend/lifecycle"
	"kluis/backend/store"
)

// DefaultReminderLead is how long before the deadline the reminder goes out.
const DefaultReminderLead = 48 * time.Hour

// DueReminders lists (at most limit) documents waiting in a compartment
// whose deadline falls within lead from now and whose holder got no
// reminder yet and has none queued in the outbox (waiting for a retry, or
// given up). The caller (the scheduler) runs the service's reminder use
// case for each, which ends in Notify with kind "reminder".
func DueReminders(ctx context.Context, db store.DB, now time.Time, lead time.Duration, limit int) ([]string, error) {
	if lead <= 0 {
		lead = DefaultReminderLead
	}
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	rows, err := db.Query(ctx, `SELECT d.id::text FROM documents d
		WHERE d.state IN ('loaded', 'notified') AND d.deadline > $1 AND d.deadline <= $2
		AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.document_id = d.id AND n.kind = 'reminder' AND n.status = 'sent')
		AND NOT EXISTS (SELECT 1 FROM notify_outbox o WHERE o.document_id = d.id AND o.kind = 'reminder')
		ORDER BY d.deadline, d.id LIMIT $3`, now, now.Add(lead), limit)
	if err != nil {
		return nil, fmt.Errorf("notify: due reminders: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("notify: due reminders: %w", err)
	}
	return ids, nil
}

// ReminderLockKey is the session-level advisory lock one replica holds
// while it sends reminders, so that replicas never remind twice at once
// (the ASCII of "kluis_rm").
const ReminderLockKey int64 = 0x6b6c7569735f726d

// DefaultRemindEvery is how often Reminders looks for due reminders.
const DefaultRemindEvery = 10 * time.Minute

// Renotifier runs the service's reminder use case for one document
// (backend/service's Service.Renotify).
type Renotifier interface {
	Renotify(ctx context.Context, actor, docID string) (store.Document, error)
}

// RemindersOptions configure NewReminders.
type RemindersOptions struct {
	// Pool is the database (required): the lock is held on one of its
	// connections for a pass.
	Pool *pgxpool.Pool
	// Service sends a reminder (required).
	Service Renotifier
	// Every is the interval between passes; default DefaultRemindEvery.
	Every time.Duration
	// Lead is how long before the deadline a reminder is due; default
	// DefaultReminderLead.
	Lead time.Duration
	// Batch is the most documents reminded in one pass; default 200.
	Batch int
	// GaveUpRetention is how long a given-up notification of a document no
	// longer in its compartment is kept before the pass deletes it
	// (PruneGivenUp); default DefaultGaveUpRetention.
	GaveUpRetention time.Duration
	// Clock gives the time the due reminders are computed at; default time.Now.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Registerer receives kluis_reminder_passes_total; nil: not registered.
	Registerer prometheus.Registerer
}

// Reminders sends the reminders that fall due: documents close to their
// deadline whose holder got none yet; and prunes the outbox's given-up
// notifications past their retention. One replica at a time: a pass that
// finds another replica's lock taken is skipped.
type Reminders struct {
	pool   *pgxpool.Pool
	svc    Renotifier
	every  time.Duration
	lead   time.Duration
	batch  int
	keep   time.Duration
	now    func() time.Time
	log    *slog.Logger
	passes *prometheus.CounterVec
}

// NewReminders checks o and returns the reminder loop.
func NewReminders(o RemindersOptions) (*Reminders, error) {
	if o.Pool == nil || o.Service == nil {
		return nil, fmt.Errorf("notify: reminders need a pool and a service")
	}
	if o.Every <= 0 {
		o.Every = DefaultRemindEvery
	}
	if o.Lead <= 0 {
		o.Lead = DefaultReminderLead
	}
	if o.Batch <= 0 {
		o.Batch = 200
	}
	if o.GaveUpRetention <= 0 {
		o.GaveUpRetention = DefaultGaveUpRetention
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Reminders{pool: o.Pool, svc: o.Service, every: o.Every, lead: o.Lead, batch: o.Batch, keep: o.GaveUpRetention, now: o.Clock,
		log: o.Logger.With("part", "reminders"),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kluis_reminder_passes_total",
			Help: "Reminder passes by result: done, skipped (another replica held the lock) or failed."}, []string{"result"})}
	for _, res := range []string{"done", "skipped", "failed"} {
		r.passes.WithLabelValues(res)
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(r.passes); err != nil {
			return nil, fmt.Errorf("notify: register metrics: %w", err)
		}
	}
	return r, nil
}

// Run makes a pass now and then every interval until ctx ends; it returns
// ctx's error.
func (r *Reminders) Run(ctx context.Context) error {
	return periodic.Loop{Every: r.every}.Run(ctx, func(ctx context.Context) { r.Pass(ctx) })
}

// Pass sends the reminders due now and prunes the given-up notifications
// past their retention, unless another replica is making a pass at the
// same time, and reports whether it ran. Failures are logged: the next
// pass retries.
func (r *Reminders) Pass(ctx context.Context) bool {
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		r.fail(ctx, "no database connection", err)
		return false
	}
	defer conn.Release()
	var mine bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", ReminderLockKey).Scan(&mine); err != nil {
		r.fail(ctx, "lock", err)
		return false
	}
	if !mine {
		r.passes.WithLabelValues("skipped").Inc()
		return false
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", ReminderLockKey); err != nil {
			r.log.Warn("unlock", "err", err)
		}
	}()
	now := r.now().UTC()
	if n, err := PruneGivenUp(ctx, r.pool, now.Add(-r.keep), 0); err != nil {
		r.fail(ctx, "prune given-up notifications", err)
		return false
	} else if n > 0 {
		r.log.Info("given-up notifications pruned", "count", n)
	}
	ids, err := DueReminders(ctx, r.pool, now, r.lead, r.batch)
	if err != nil {
		r.fail(ctx, "due reminders", err)
		return false
	}
	for _, id := range ids {
		if _, err := r.svc.Renotify(ctx, "system", id); err != nil && !errors.Is(err, lifecycle.ErrForbiddenTransition) {
			r.log.Warn("reminder", "document", id, "err", err)
		}
	}
	r.passes.WithLabelValues("done").Inc()
	return true
}

func (r *Reminders) fail(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	r.passes.WithLabelValues("failed").Inc()
	r.log.Warn(what, "err", err)
}
