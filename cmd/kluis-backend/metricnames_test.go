package main

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/pgtest"
	"kluis/deploy/grafana"
	promrules "kluis/deploy/prometheus"
	"kluis/deploy/prometheus/promcheck"
)

// Every kluis-backend metric that the alert rules (deploy/prometheus) and
// the dashboards (deploy/grafana) use is registered by the real backend
// (serve with the embedded broker): no alert or panel waits for a series
// that never comes. (kluisd's names: deploy/prometheus's test.)
func TestBackendExportsUsedNames(t *testing.T) {
	e, _, errb := testEnv(map[string]string{
		"DATABASE_URL":             pgtest.NewDatabase(t),
		"KLUIS_HTTP_ADDR":          "127.0.0.1:0",
		"KLUIS_INSECURE_FAST_HASH": "1",
		"KLUIS_LOG_LEVEL":          "warn",
		"KLUIS_KEY_DIR":            t.TempDir() + "/keys",
		"KLUIS_MQTT_ADDR":          "127.0.0.1:0",
		"KLUIS_SLIP_DIR":           t.TempDir() + "/slips",
	})
	regc := make(chan *prometheus.Registry, 1)
	e.onRegistry = func(r *prometheus.Registry) { regc <- r }
	listening := make(chan string, 1)
	e.onListen = func(a string) { listening <- a }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve"}, e) }()
	var reg *prometheus.Registry
	select {
	case reg = <-regc:
	case code := <-done:
		t.Fatalf("serve exited with %d: %s", code, errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	select {
	case <-listening:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not listen")
	}
	exported, err := promcheck.Exported(reg)
	require.NoError(t, err)
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}

	used := promcheck.Used{}
	recorded, err := promcheck.RuleNames(used, "kluis-alerts.yml", promrules.Rules)
	require.NoError(t, err)
	require.NoError(t, promcheck.DashboardNames(used, grafana.Dashboards))
	for _, r := range recorded {
		delete(used, r)
	}
	for _, n := range []string{"kluis_device_online", "kluis_api_ready", "kluis_audit_chain_ok", "kluis_notify_messages_total"} {
		require.Contains(t, used, n)
	}
	assert.Empty(t, promcheck.Missing(used, exported, promcheck.Backend, promcheck.Any),
		"used by rules or dashboards, not exported by kluis-backend")
}
