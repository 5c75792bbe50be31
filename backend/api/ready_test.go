package api_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/api"
)

// kluis_api_ready is /readyz's check at scrape time: 1 with the database,
// 0 without it.
func TestReadyGauge(t *testing.T) {
	e := newEnv(t)
	want := "# HELP kluis_api_ready 1 when this replica's readiness check (as /readyz: the database answers within 2 s) passes at scrape time, else 0.\n# TYPE kluis_api_ready gauge\n"
	require.NoError(t, testutil.GatherAndCompare(e.reg, strings.NewReader(want+"kluis_api_ready 1\n"), "kluis_api_ready"))

	dead, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	require.NoError(t, err)
	t.Cleanup(dead.Close)
	reg := prometheus.NewRegistry()
	_, err = api.New(api.Options{Logger: quietLogger(), Pool: dead, Auth: e.auth, Registry: reg})
	require.NoError(t, err)
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want+"kluis_api_ready 0\n"), "kluis_api_ready"))
}
