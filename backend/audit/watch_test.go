package audit_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/store/storetest"
	"kluis/deploy/dev/testenv"
)

// The watcher's gauges follow the chain: intact at the first check, broken
// once a record is altered behind the trigger's back, noticed by the
// periodic run; and the break is logged with the first bad record.
func TestWatcherExportsTheChainState(t *testing.T) {
	s := storetest.New(t)
	appendN(t, s.Pool(), 3)
	reg := prometheus.NewRegistry()
	var logs testenv.SyncBuffer
	w, err := audit.NewWatcher(audit.WatcherOptions{DB: s.Pool(), Every: 20 * time.Millisecond, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	gauge := func(name string) float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}

	rep := w.Check(context.Background())
	require.True(t, rep.OK())
	require.Equal(t, 1.0, gauge("kluis_audit_chain_ok"))
	require.Equal(t, 3.0, gauge("kluis_audit_records"))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	tamper(t, s.Pool(), `UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 2`)
	testenv.EventuallyWithin(t, 20*time.Second, "the watcher to see the altered record", func() bool { return gauge("kluis_audit_chain_ok") == 0 })
	require.Equal(t, 0.0, gauge("kluis_audit_chain_ok"), "the periodic run saw the altered record")
	require.Contains(t, logs.String(), "audit chain broken")
	require.Contains(t, logs.String(), "first_bad=2")
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	// The gauges are registered once: a second watcher on the same registry is refused.
	_, err = audit.NewWatcher(audit.WatcherOptions{DB: s.Pool(), Registerer: reg})
	require.Error(t, err)
	_, err = audit.NewWatcher(audit.WatcherOptions{DB: s.Pool()})
	require.Error(t, err)
	require.Equal(t, 1, testutil.CollectAndCount(reg, "kluis_audit_records"))
}
