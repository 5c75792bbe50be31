package audit

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/internal/periodic"
)

// DefaultChainEvery is how often a Chainer looks for pending records by
// default: a record is in the chain about this long after its commit.
const DefaultChainEvery = 50 * time.Millisecond

// ChainerOptions configure NewChainer.
type ChainerOptions struct {
	// DB is the database (required).
	DB Beginner
	// Every is the interval between looks; default DefaultChainEvery.
	Every time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Registerer receives kluis_audit_chained_total,
	// kluis_audit_pending_records, kluis_audit_chain_lag_seconds and
	// kluis_audit_chain_errors_total (required).
	Registerer prometheus.Registerer
}

// Chainer moves committed audit records into the hash chain shortly after
// their commit ([Chain]), in batches: the business transactions never wait
// for the chain. Every replica may run one: the chain transactions take
// turns under the chain's advisory lock, and a look that finds nothing
// pending costs one index probe.
type Chainer struct {
	db      Beginner
	every   time.Duration
	log     *slog.Logger
	chained prometheus.Counter
	pending prometheus.Gauge
	lag     prometheus.Gauge
	errs    prometheus.Counter
	failing bool
}

// NewChainer checks o and registers the metrics.
func NewChainer(o ChainerOptions) (*Chainer, error) {
	if o.DB == nil || o.Registerer == nil {
		return nil, fmt.Errorf("audit: chainer needs a database and a registerer")
	}
	if o.Every <= 0 {
		o.Every = DefaultChainEvery
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Chainer{db: o.DB, every: o.Every, log: o.Logger.With("part", "audit-chainer"),
		chained: prometheus.NewCounter(prometheus.CounterOpts{Name: "kluis_audit_chained_total",
			Help: "Audit records this process moved into the hash chain."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kluis_audit_pending_records",
			Help: "Committed audit records not yet in the hash chain, at the chainer's last look (counted up to 10000)."}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kluis_audit_chain_lag_seconds",
			Help: "How long the oldest audit record not yet in the hash chain has waited, at the chainer's last look (0: none)."}),
		errs: prometheus.NewCounter(prometheus.CounterOpts{Name: "kluis_audit_chain_errors_total",
			Help: "Chain passes that failed (the records stay pending and are chained by the next pass)."}),
	}
	for _, m := range []prometheus.Collector{c.chained, c.pending, c.lag, c.errs} {
		if err := o.Registerer.Register(m); err != nil {
			return nil, fmt.Errorf("audit: chainer metrics: %w", err)
		}
	}
	return c, nil
}

// Run chains every interval (the first pass after one) until ctx ends,
// then makes a last pass so that a clean stop leaves nothing pending, and
// returns nil.
func (c *Chainer) Run(ctx context.Context) error {
	_ = periodic.Loop{Every: c.every, Delayed: true}.Run(ctx, c.Pass)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	c.Pass(fctx)
	return nil
}

// Pass chains what is pending now and updates the metrics; failures are
// logged and counted (the records wait for the next pass).
func (c *Chainer) Pass(ctx context.Context) {
	var n int
	var lagS *float64
	var upTo *int64
	// One look: is anything pending, and since when? (Counted up to
	// 10,000: a backlog beyond that is reported as 10,000.) And the last
	// record committed now, what the pass chains up to ([Chain]'s first
	// statement, here in the look's: one round trip less a pass).
	err := c.db.QueryRow(ctx, `SELECT count(*), extract(epoch FROM now() - min(queued_at))::float8,
			(SELECT max(id) FROM audit_pending)
		FROM (SELECT queued_at FROM audit_pending ORDER BY id LIMIT 10000) p`).Scan(&n, &lagS, &upTo)
	if err == nil && n > 0 && upTo != nil {
		var chained int
		chained, err = chainUpTo(ctx, c.db, *upTo)
		c.chained.Add(float64(chained))
		if err == nil && chained >= n {
			n, lagS = 0, nil
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		c.errs.Inc()
		if !c.failing {
			c.log.Error("chaining audit records failed; they stay pending", "err", err)
		}
		c.failing = true
		return
	}
	if c.failing {
		c.log.Info("chaining audit records works again")
		c.failing = false
	}
	c.pending.Set(float64(n))
	if lagS != nil {
		c.lag.Set(*lagS)
	} else {
		c.lag.Set(0)
	}
}
