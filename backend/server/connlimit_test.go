package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/backend/server/servertest"
)

// The HTTP listener holds at most HTTPMaxConnections connections: a
// flood of connections kept open (one request each, then idle, which the
// server keeps for its idle timeout of 120 s) is answered 503 with
// Retry-After past the cap instead of taking a descriptor and about 17 KB
// each (found black-box: 19,600 such connections took kluis-backend to
// its 20,000 descriptors; the embedded broker stopped accepting devices,
// the database pool could not connect, logins and /readyz answered 503).
// Once the flood's connections close, others are served again.
func TestHTTPConnectionsAreCapped(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := servertest.Start(t, server.Options{HTTPMaxConnections: 8, Registry: reg})

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	ok, refused := 0, 0
	for i := range 40 {
		c, err := net.DialTimeout("tcp", b.HTTP, 10*time.Second)
		require.NoError(t, err)
		held = append(held, c)
		require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
		_, err = fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", b.HTTP)
		require.NoError(t, err, "connection %d", i)
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err, "connection %d", i)
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		switch res.StatusCode {
		case http.StatusOK:
			ok++
		case http.StatusServiceUnavailable:
			refused++
			c.Close() // as a client does after "Connection: close"
			require.Equal(t, "1", res.Header.Get("Retry-After"))
			require.Equal(t, "no-store", res.Header.Get("Cache-Control"))
		default:
			t.Fatalf("connection %d: status %d", i, res.StatusCode)
		}
	}
	require.LessOrEqual(t, ok, 8, "connections served past the cap")
	require.GreaterOrEqual(t, refused, 32)
	require.Equal(t, float64(refused), gathered(t, reg, "kluis_http_connections_refused_total"))
	require.Equal(t, 8.0, gathered(t, reg, "kluis_http_connections_open"), "full: the served connections held open (and the start-up check's keep-alive one)")

	// The flood goes: the listener serves again.
	for _, c := range held {
		c.Close()
	}
	held = nil
	require.Eventually(t, func() bool {
		res, err := http.Get("http://" + b.HTTP + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond)
}

// gathered is the value of the metric name (without labels) on reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
