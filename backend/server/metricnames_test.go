package server_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/deploy/grafana"
	promrules "kluis/deploy/prometheus"
	"kluis/deploy/prometheus/promcheck"
)

// Every kluis-backend metric that the alert rules (deploy/prometheus) and
// the dashboards (deploy/grafana) use is registered by the real backend
// (with the embedded broker): no alert or panel waits for a series that
// never comes. (kluisd's names: deploy/prometheus's test.)
func TestBackendExportsUsedNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	startBackend(t, server.Options{Registry: reg}) // serving: every metric is registered
	exported, err := promcheck.Exported(reg)
	require.NoError(t, err)

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
