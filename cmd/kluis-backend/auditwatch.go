package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/audit"
	"kluis/backend/store"
)

// watchAudit verifies the audit hash chain now and then every interval, and
// exports the result: kluis_audit_chain_ok (1 intact, 0 broken) and
// kluis_audit_records, so that monitoring can alert on tampering.
func watchAudit(d *deps, st *store.Store, reg *prometheus.Registry, every time.Duration, log *slog.Logger) error {
	ok := prometheus.NewGauge(prometheus.GaugeOpts{Name: "kluis_audit_chain_ok",
		Help: "1 when the last verification of the audit hash chain found it intact, 0 when it found an altered record."})
	records := prometheus.NewGauge(prometheus.GaugeOpts{Name: "kluis_audit_records",
		Help: "Audit records at the last verification."})
	for _, c := range []prometheus.Collector{ok, records} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	log = log.With("part", "audit-watch")
	check := func(ctx context.Context) {
		rep, err := audit.Verify(ctx, st.Pool())
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("audit verification failed to run", "err", err)
			}
			return
		}
		records.Set(float64(rep.Records))
		if rep.OK() {
			ok.Set(1)
			return
		}
		ok.Set(0)
		log.Error("audit chain broken", "first_bad", *rep.FirstBad, "reason", rep.Reason)
	}
	// The first check runs before serving, so the gauge is set from the start.
	check(d.ctx)
	d.goLoop(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-d.ctx.Done():
				return
			case <-t.C:
				check(d.ctx)
			}
		}
	})
	return nil
}
