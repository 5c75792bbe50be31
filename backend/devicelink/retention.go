package devicelink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/alarms"
	"kluis/backend/audit"
	"kluis/backend/internal/periodic"
)

// Retention of device events and commands (Pruner).
const (
	// DefaultRetention is how long device events and commands are kept
	// by default: 400 days, a year and its season.
	DefaultRetention = 400 * 24 * time.Hour
	// MinRetention is the shortest retention a Pruner accepts: longer
	// than the window in which alarms are read as open (alarms.Window).
	MinRetention = alarms.Window + 24*time.Hour
	// CodeSyncRetention is how long code_sync commands are kept, whatever
	// the retention (longer than MinRetention): each holds a device's
	// whole offline bundle (PIN verifiers, signed tokens), superseded
	// within 30 minutes (deviceops.DefaultCodeSyncRefresh), and the code
	// sync reads only the one it awaits.
	CodeSyncRetention = 7 * 24 * time.Hour
	// DefaultPruneEvery is how often the backend prunes.
	DefaultPruneEvery = time.Hour
	// DefaultPruneBatch is how many rows one statement examines (events)
	// or deletes (commands) at most: each is a short transaction of its
	// own, so the prune never holds long locks.
	DefaultPruneBatch = 1000
	// KeepForever, as PrunerOptions.Retention, keeps the device history
	// (events, commands, code syncs and the Also tables without a Keep of
	// their own) for ever; the Also tables with their own Keep are still
	// pruned (-device-retention 0).
	KeepForever time.Duration = -1
)

// PrunerOptions configure a Pruner.
type PrunerOptions struct {
	Pool *pgxpool.Pool
	// Retention is how long events (by received_at, the backend's clock)
	// and commands (by issued_at and expires_at) are kept; at least
	// MinRetention; zero: DefaultRetention; KeepForever: never.
	Retention time.Duration
	// Batch is DefaultPruneBatch when zero.
	Batch int
	// Clock; default time.Now.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Registerer receives kluis_device_history_pruned_total{table} and
	// kluis_device_history_prune_failures_total; nil: not registered.
	Registerer prometheus.Registerer
	// Also are other tables of the devices' history pruned with the same
	// retention, after the events and commands (the backend's: the code
	// attempts, backend/codes).
	Also []Table
}

// Table is a table another package owns that a Pruner prunes.
type Table struct {
	// Name is the table's, for the metric's label and the log.
	Name string
	// Keep is how long this table's rows are kept, whatever the
	// retention (also KeepForever); zero: the Pruner's retention.
	Keep time.Duration
	// Prune deletes at most limit rows older than cutoff, in one short
	// statement, and returns how many; the Pruner calls it until it
	// deletes fewer than limit.
	Prune func(ctx context.Context, cutoff time.Time, limit int) (int, error)
}

// Pruner deletes the device events and commands older than the
// retention (code_sync commands older than CodeSyncRetention), in batches
// of short transactions, oldest first. It never
// deletes an event alarm_latest references (an open alarm, and the latest
// alarm or clearing of every device, kind and place), nor, while an
// alarm of a kind the device clears is open, the events of that kind and
// place since its last clearing (an earlier raise's acknowledgement
// counts for the open alarm: backend/alarms). The audit trail is not
// pruned: a pass that deleted rows appends one record to it
// (AuditAction, actor "system", the counts per table), never one per
// row. Several replicas may prune at once (rows another is deleting are
// skipped).
type Pruner struct {
	pool     *pgxpool.Pool
	keep     time.Duration
	batch    int
	now      func() time.Time
	log      *slog.Logger
	pruned   *prometheus.CounterVec
	failures prometheus.Counter
	also     []Table
}

// ErrRetention: the retention is shorter than MinRetention.
var ErrRetention = fmt.Errorf("devicelink: the device retention must be at least %s (%d days)", MinRetention, MinRetention/(24*time.Hour))

// NewPruner checks o and returns a Pruner.
func NewPruner(o PrunerOptions) (*Pruner, error) {
	if o.Pool == nil {
		return nil, errors.New("devicelink: pruner without a pool")
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.Retention < MinRetention && o.Retention != KeepForever {
		return nil, fmt.Errorf("%w: %s", ErrRetention, o.Retention)
	}
	if o.Batch <= 0 {
		o.Batch = DefaultPruneBatch
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	p := &Pruner{pool: o.Pool, keep: o.Retention, batch: o.Batch, now: o.Clock, log: o.Logger.With("part", "device-retention"), also: o.Also,
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kluis_device_history_pruned_total",
			Help: "Rows deleted by the hourly retention pass (-device-retention; auth tokens 30 days after their end), by table (device_events, device_commands, code_attempts, notifications, auth_tokens)."}, []string{"table"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "kluis_device_history_prune_failures_total",
			Help: "Passes of the device retention that failed (the next pass tries again)."})}
	p.pruned.WithLabelValues("device_events")
	p.pruned.WithLabelValues("device_commands")
	for _, t := range o.Also {
		if t.Name == "" || t.Prune == nil || t.Keep < 0 {
			return nil, errors.New("devicelink: pruner: a table without a name or a prune function, or with a negative Keep")
		}
		p.pruned.WithLabelValues(t.Name)
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{p.pruned, p.failures} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("devicelink: register pruner metrics: %w", err)
			}
		}
	}
	return p, nil
}

// AuditAction is the action of the audit record a pass that deleted
// rows appends: its details name the retention, the cutoff and how many
// rows each table lost ("deleted": {"device_events": 6, ...}).
const AuditAction = "retention.pruned"

// PruneResult is what a pass deleted.
type PruneResult struct {
	// Commands counts the commands past the retention, CodeSyncs the
	// code_sync commands past CodeSyncRetention (both
	// kluis_device_history_pruned_total{table="device_commands"}).
	Events, Commands, CodeSyncs int
	// Also counts the rows of Options.Also's tables, by name.
	Also map[string]int
	// Cutoff: rows older than it were due (zero with KeepForever).
	Cutoff time.Time
	// Cutoffs are those of the Also tables with a Keep of their own.
	Cutoffs map[string]time.Time
}

// Run prunes at once and then every interval until ctx ends; it returns
// ctx's error.
func (p *Pruner) Run(ctx context.Context, every time.Duration) error {
	return periodic.Loop{Every: every}.Run(ctx, func(ctx context.Context) {
		if _, err := p.Pass(ctx); err != nil && ctx.Err() == nil {
			p.failures.Inc()
			p.log.Warn("device retention: prune failed", "err", err)
		}
	})
}

// Pass deletes every event and command older than the retention, a batch
// per transaction, and logs how many it deleted (nothing when none).
func (p *Pruner) Pass(ctx context.Context) (PruneResult, error) {
	now := p.now().UTC()
	r := PruneResult{Also: map[string]int{}, Cutoffs: map[string]time.Time{}}
	forever := p.keep == KeepForever
	var err error
	if !forever {
		r.Cutoff = now.Add(-p.keep)
		r.Events, err = p.pruneEvents(ctx, r.Cutoff)
		if err == nil {
			r.Commands, err = p.batches(ctx, "device_commands", r.Cutoff, p.pruneCommands)
		}
		if err == nil {
			r.CodeSyncs, err = p.batches(ctx, "device_commands", now.Add(-CodeSyncRetention), p.pruneCodeSyncs)
		}
	}
	total := r.Events + r.Commands + r.CodeSyncs
	for _, t := range p.also {
		if err != nil {
			break
		}
		cutoff := r.Cutoff
		if t.Keep > 0 {
			cutoff = now.Add(-t.Keep)
			r.Cutoffs[t.Name] = cutoff
		} else if forever {
			continue
		}
		r.Also[t.Name], err = p.batches(ctx, t.Name, cutoff, t.Prune)
		total += r.Also[t.Name]
	}
	if total > 0 {
		attrs := []any{"events", r.Events, "commands", r.Commands, "code_syncs", r.CodeSyncs}
		for _, t := range p.also {
			attrs = append(attrs, t.Name, r.Also[t.Name])
		}
		if !r.Cutoff.IsZero() {
			attrs = append(attrs, "cutoff", r.Cutoff.Format(time.RFC3339))
		}
		p.log.Info("device retention: pruned", append(attrs, "retention", p.retention())...)
		// One record per pass, also when a later table failed: what was
		// deleted is gone. The pass's own context may have ended (the
		// backend stopping); the record is still written, briefly.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		aerr := p.audit(actx, r)
		cancel()
		err = errors.Join(err, aerr)
	}
	return r, err
}

// retention names the retention for the log and the audit record.
func (p *Pruner) retention() string {
	if p.keep == KeepForever {
		return "forever"
	}
	return p.keep.String()
}

// audit appends the pass's audit record (AuditAction).
func (p *Pruner) audit(ctx context.Context, r PruneResult) error {
	deleted := map[string]int{}
	if p.keep != KeepForever {
		deleted["device_events"], deleted["device_commands"] = r.Events, r.Commands+r.CodeSyncs
	}
	for name, n := range r.Also {
		deleted[name] = n
	}
	details := map[string]any{"deleted": deleted, "retention": p.retention()}
	if !r.Cutoff.IsZero() {
		details["cutoff"] = r.Cutoff
	}
	if len(r.Cutoffs) > 0 {
		details["cutoffs"] = r.Cutoffs
	}
	_, err := audit.Append(ctx, p.pool, audit.Entry{At: p.now(), Actor: "system", Action: AuditAction, Subject: "retention:device", Details: details})
	if err != nil {
		return fmt.Errorf("devicelink: audit the prune: %w", err)
	}
	return nil
}

// batches calls prune until it deletes fewer than a batch, counting the
// rows under table.
func (p *Pruner) batches(ctx context.Context, table string, cutoff time.Time,
	prune func(ctx context.Context, cutoff time.Time, limit int) (int, error)) (int, error) {
	total := 0
	for {
		n, err := prune(ctx, cutoff, p.batch)
		total += n
		p.pruned.WithLabelValues(table).Add(float64(n))
		if err != nil {
			return total, err
		}
		if n < p.batch {
			return total, nil
		}
	}
}

// pruneEventsSQL examines the next $4 events received before $1, after
// the cursor ($2, $3) in (received_at, event_id) order, and deletes those
// it may: not referenced by alarm_latest, and not an alarm or clearing of
// a kind the device clears ($5) whose latest at its place is an alarm
// (open), unless a clearing came after it (then its acknowledgement no
// longer counts: backend/alarms' ackJoin). The cascade removes a deleted
// alarm's acknowledgement (alarm_acks). It answers how many it deleted,
// how many it examined and the cursor's next value; no row when there
// was nothing to examine. Rows another replica holds are skipped.
const pruneEventsSQL = `
WITH scan AS (
	SELECT event_id, received_at FROM device_events
	WHERE received_at < $1 AND (received_at, event_id) > ($2, $3)
	ORDER BY received_at, event_id
	LIMIT $4
	FOR UPDATE SKIP LOCKED
), gone AS (
	DELETE FROM device_events e USING scan s
	WHERE e.event_id = s.event_id
	  AND NOT EXISTS (SELECT 1 FROM alarm_latest x WHERE x.event_id = e.event_id)
	  AND NOT (e.kind IN ('alarm', 'alarm_cleared') AND coalesce(e.payload->>'alarm', '') = ANY($5::text[])
	      AND EXISTS (SELECT 1 FROM alarm_latest x
	          WHERE x.device_id = e.device_id AND x.alarm = coalesce(e.payload->>'alarm', '')
	            AND x.addr = coalesce(e.payload->'addr', 'null'::jsonb) AND x.board = coalesce(e.payload->'board', 'null'::jsonb)
	            AND x.kind = 'alarm'
	            AND NOT EXISTS (SELECT 1 FROM device_events c
	                WHERE c.device_id = e.device_id AND c.kind = 'alarm_cleared'
	                  AND coalesce(c.payload->>'alarm', '') = x.alarm AND coalesce(c.payload->'addr', 'null'::jsonb) = x.addr
	                  AND coalesce(c.payload->'board', 'null'::jsonb) = x.board
	                  AND (c.at, c.received_at) > (e.at, e.received_at))))
	RETURNING 1
)
SELECT (SELECT count(*) FROM gone), n, received_at, event_id
FROM (SELECT count(*) OVER () AS n, received_at, event_id FROM scan ORDER BY received_at DESC, event_id DESC LIMIT 1) last`

// pruneEvents runs pruneEventsSQL from the oldest event until it has
// examined every event received before cutoff.
func (p *Pruner) pruneEvents(ctx context.Context, cutoff time.Time) (int, error) {
	total := 0
	after, afterID := time.Time{}, ""
	kinds := alarms.ClearableKinds()
	for {
		var deleted, examined int
		err := p.pool.QueryRow(ctx, pruneEventsSQL, cutoff, after, afterID, p.batch, kinds).Scan(&deleted, &examined, &after, &afterID)
		if errors.Is(err, pgx.ErrNoRows) {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("devicelink: prune device events: %w", err)
		}
		total += deleted
		p.pruned.WithLabelValues("device_events").Add(float64(deleted))
		if examined < p.batch {
			return total, nil
		}
	}
}

// Commands to delete: past the retention, and code syncs past
// CodeSyncRetention (migration 0214's partial index).
const (
	pruneCommandsSQL = `WITH doomed AS (
		SELECT command_id FROM device_commands WHERE issued_at < $1 AND expires_at < $1
		ORDER BY issued_at LIMIT $2 FOR UPDATE SKIP LOCKED)
		DELETE FROM device_commands d USING doomed WHERE d.command_id = doomed.command_id`
	pruneCodeSyncsSQL = `WITH doomed AS (
		SELECT command_id FROM device_commands WHERE kind = 'code_sync' AND issued_at < $1 AND expires_at < $1
		ORDER BY issued_at LIMIT $2 FOR UPDATE SKIP LOCKED)
		DELETE FROM device_commands d USING doomed WHERE d.command_id = doomed.command_id`
)

// pruneCommands deletes at most limit commands issued and expired before
// cutoff.
func (p *Pruner) pruneCommands(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return p.deleteCommands(ctx, pruneCommandsSQL, cutoff, limit)
}

// pruneCodeSyncs deletes at most limit code_sync commands issued and
// expired before cutoff (CodeSyncRetention).
func (p *Pruner) pruneCodeSyncs(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return p.deleteCommands(ctx, pruneCodeSyncsSQL, cutoff, limit)
}

func (p *Pruner) deleteCommands(ctx context.Context, query string, cutoff time.Time, limit int) (int, error) {
	tag, err := p.pool.Exec(ctx, query, cutoff, limit)
	if err != nil {
		return 0, fmt.Errorf("devicelink: prune device commands: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
