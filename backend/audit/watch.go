package audit

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/internal/periodic"
)

// DefaultWatchEvery is how often a Watcher verifies the chain by default.
const DefaultWatchEvery = time.Hour

// WatcherOptions configure NewWatcher.
type WatcherOptions struct {
	// DB is the database (required).
	DB DB
	// Every is the interval between verifications; default DefaultWatchEvery.
	Every time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Registerer receives kluis_audit_chain_ok and kluis_audit_records
	// (required: the gauges are the watcher's output).
	Registerer prometheus.Registerer
}

// Watcher verifies the hash chain periodically and exports the result, so
// that monitoring can alert on tampering: kluis_audit_chain_ok (1 intact,
// 0 broken) and kluis_audit_records. A broken chain is also logged as an
// error naming the first bad record.
type Watcher struct {
	db      DB
	every   time.Duration
	log     *slog.Logger
	ok      prometheus.Gauge
	records prometheus.Gauge
}

// NewWatcher checks o and registers the gauges.
func NewWatcher(o WatcherOptions) (*Watcher, error) {
	if o.DB == nil || o.Registerer == nil {
		return nil, fmt.Errorf("audit: watcher needs a database and a registerer")
	}
	if o.Every <= 0 {
		o.Every = DefaultWatchEvery
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	w := &Watcher{db: o.DB, every: o.Every, log: o.Logger.With("part", "audit-watch"),
		ok: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kluis_audit_chain_ok",
			Help: "1 when the last verification of the audit hash chain found it intact, 0 when it found an altered record."}),
		records: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kluis_audit_records",
			Help: "Audit records at the last verification."}),
	}
	for _, c := range []prometheus.Collector{w.ok, w.records} {
		if err := o.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("audit: watcher metrics: %w", err)
		}
	}
	return w, nil
}

// Check verifies the chain once and sets the gauges; a failure to read the
// chain is logged and leaves them as they were. It returns the report (the
// zero Report when the chain could not be read).
func (w *Watcher) Check(ctx context.Context) Report {
	rep, err := Verify(ctx, w.db)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("audit verification failed to run", "err", err)
		}
		return Report{}
	}
	w.records.Set(float64(rep.Records))
	if rep.OK() {
		w.ok.Set(1)
		return rep
	}
	w.ok.Set(0)
	w.log.Error("audit chain broken", "first_bad", *rep.FirstBad, "reason", rep.Reason)
	return rep
}

// Run calls Check every interval until ctx ends and returns ctx's error.
// The first check comes after one interval: call Check before Run for a
// result from the start.
func (w *Watcher) Run(ctx context.Context) error {
	return periodic.Loop{Every: w.every, Delayed: true}.Run(ctx, func(ctx context.Context) { w.Check(ctx) })
}
