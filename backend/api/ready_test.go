package api_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/api"
	"kluis/backend/broker"
	"kluis/deploy/dev/testenv"
)

// kluis_api_ready is /readyz's check at scrape time: 1 with the database,
// 0 without it.
func TestReadyGauge(t *testing.T) {
	e := newEnv(t)
	want := "# HELP kluis_api_ready 1 when this replica's readiness check (as /readyz: the database answers within 2 s and the embedded broker accepts) passes at scrape time, else 0.\n# TYPE kluis_api_ready gauge\n"
	require.NoError(t, testutil.GatherAndCompare(e.reg, strings.NewReader(want+"kluis_api_ready 1\n"), "kluis_api_ready"))

	dead, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	require.NoError(t, err)
	t.Cleanup(dead.Close)
	reg := prometheus.NewRegistry()
	_, err = api.New(api.Options{Logger: quietLogger(), Pool: dead, Auth: e.auth, Registry: reg})
	require.NoError(t, err)
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want+"kluis_api_ready 0\n"), "kluis_api_ready"))
}

// Options.Ready (the embedded broker accepting) is part of readiness: its
// error makes /readyz answer 503 not_ready, and the gauge 0. Anyone may
// ask /readyz: it says "broker": "not_accepting", a stable word, and the
// log has the error (it names the broker's listen address). Before, the
// answer carried the error itself.
func TestReadyCheck(t *testing.T) {
	var failing error
	var logged testenv.SyncBuffer
	e := newEnv(t, func(o *api.Options) {
		o.Ready = func(context.Context) error { return failing }
		o.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	})
	r := e.do("GET", "/readyz", "", nil)
	assert.Equal(t, http.StatusOK, r.status)
	failing = errors.New("broker: not accepting connections: accept tcp 10.0.0.5:8883: accept4: too many open files")
	r = e.do("GET", "/readyz", "", nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.status)
	var body struct {
		Error struct {
			Code    string            `json:"code"`
			Message string            `json:"message"`
			Details map[string]string `json:"details"`
		} `json:"error"`
	}
	r.decode(t, &body)
	assert.Equal(t, "not_ready", body.Error.Code)
	assert.Equal(t, "not ready: the embedded MQTT broker does not accept connections", body.Error.Message)
	assert.Equal(t, map[string]string{"broker": "not_accepting"}, body.Error.Details)
	assert.NotContains(t, string(r.body), "10.0.0.5", "the broker's address")
	assert.NotContains(t, string(r.body), "too many open files")
	assert.Contains(t, logged.String(), "accept tcp 10.0.0.5:8883: accept4: too many open files", "the detail is logged")
	assert.Contains(t, mustGather(t, e.reg), "kluis_api_ready 0")
	failing = nil
	assert.Contains(t, mustGather(t, e.reg), "kluis_api_ready 1")
}

func mustGather(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "kluis_api_ready" {
			if mf.GetMetric()[0].GetGauge().GetValue() == 1 {
				return "kluis_api_ready 1"
			}
			return "kluis_api_ready 0"
		}
	}
	return ""
}

// An embedded broker at its connection cap (a real one, capped at 1, held
// by one TCP connection): /readyz stays 200 ready (the HTTP side serves;
// failing would take the replica out of the HTTP balancer, which does not
// route MQTT) and says "broker": "full"; "accepting" once the connection
// closed. Before, nothing said it was full.
func TestReadyzSaysTheBrokerIsFull(t *testing.T) {
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0", MaxConnections: 1, Logger: quietLogger(),
		Credentials: func(context.Context, string, string) (string, broker.Role, bool) { return "", "", false }})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	e := newEnv(t, func(o *api.Options) {
		o.Ready = func(context.Context) error { return b.Healthy() }
		o.BrokerFull = b.Full
	})
	readyz := func() map[string]string {
		t.Helper()
		r := e.do("GET", "/readyz", "", nil)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		var v map[string]string
		r.decode(t, &v)
		return v
	}
	assert.Equal(t, map[string]string{"status": "ready", "broker": "accepting"}, readyz())
	c, err := net.Dial("tcp", b.Addr())
	require.NoError(t, err)
	testenv.Eventually(t, "the broker holds the connection", func() bool { return b.Connections() == 1 })
	assert.Equal(t, map[string]string{"status": "ready", "broker": "full"}, readyz())
	assert.Contains(t, mustGather(t, e.reg), "kluis_api_ready 1", "full is not unready")
	_ = c.Close()
	testenv.Eventually(t, "the connection is given back", func() bool { return b.Connections() == 0 })
	assert.Equal(t, "accepting", readyz()["broker"])
}
