package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/config"
	"kluis/controller/daemon/daemontest"
	"kluis/controller/promtext"
	"kluis/controller/promtext/promtexttest"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

// localDaemon is kluisd in-process on the SimFile driver with no backend
// (its link retries an unreachable broker), serving its kiosk and its
// metrics listener on loopback.
type localDaemon struct {
	kiosk, metrics string
}

// startLocalDaemon runs kluisd with o (Config, OpenDriver and, unless
// given, Logger filled in) until the test ends, and waits until its
// /healthz says ready.
func startLocalDaemon(t *testing.T, o Options) localDaemon {
	t.Helper()
	d := runLocalDaemon(t, o, nil)
	d.waitReady(t)
	return d
}

// runLocalDaemon is startLocalDaemon without the wait; wrap, when not
// nil, wraps each SimFile driver kluisd opens.
func runLocalDaemon(t *testing.T, o Options, wrap func(*daemontest.SimFile) hardware.Driver) localDaemon {
	t.Helper()
	dir := t.TempDir()
	d := localDaemon{kiosk: testenv.FreeAddr(t), metrics: testenv.FreeAddr(t)}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
device_id: local-%d
site: test
kind: locker
mqtt: {url: tcp://127.0.0.1:1}
hardware: {driver: simfile, simfile: %s}
journal_dir: %s
kiosk: {listen: "%s"}
metrics_listen: "%s"
compartments:
  - {number: 1, board: 0, channel: 0}
`, time.Now().UnixNano(), filepath.Join(dir, "board.sim"), filepath.Join(dir, "journal"), d.kiosk, d.metrics)),
		config.ParseOptions{AllowTestDrivers: true})
	require.NoError(t, err)
	o.Config = cfg
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	o.OpenDriver = func(context.Context, *config.Config, *slog.Logger, promtext.Registerer) (hardware.Driver, error) {
		d, err := daemontest.Open(cfg.Hardware.SimFile, 1, 8)
		if err != nil || wrap == nil {
			return d, err
		}
		return wrap(d), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Fatal("kluisd did not stop")
		}
	})
	return d
}

// waitReady waits until kluisd's /healthz says ready.
func (d localDaemon) waitReady(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, "kluisd ready", func() bool {
		resp, err := testenv.HTTPClient().Get("http://" + d.metrics + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// Every answer of kluisd's metrics listener, the refusals included, tells
// a browser not to sniff its type (X-Content-Type-Options: nosniff): a
// page must not run /metrics or /healthz as a script or read it as HTML.
func TestMetricsListenerAnswersSayNosniff(t *testing.T) {
	d := startLocalDaemon(t, Options{})
	for _, c := range []struct {
		method, path, host string
		code               int
	}{
		{http.MethodGet, "/metrics", "", http.StatusOK},
		{http.MethodGet, "/healthz", "", http.StatusOK},
		{http.MethodGet, "/nothing", "", http.StatusNotFound},
		{http.MethodPost, "/healthz", "", http.StatusMethodNotAllowed},
		{http.MethodGet, "/metrics", "rebind.evil.example", http.StatusMisdirectedRequest},
		{http.MethodGet, "/healthz", "rebind.evil.example", http.StatusMisdirectedRequest},
	} {
		req, err := http.NewRequest(c.method, "http://"+d.metrics+c.path, nil)
		require.NoError(t, err)
		if c.host != "" {
			req.Host = c.host
		}
		resp, err := testenv.HTTPClient().Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, c.code, resp.StatusCode, "%s %s (Host %q)", c.method, c.path, c.host)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), "%s %s (Host %q)", c.method, c.path, c.host)
	}
}

// kluisd's loopback listeners bound what one connection may hold: a
// request's headers (a local process sending 300 requests with a 1 MB
// header each took kluisd from 14 MB to 622 MB resident; found
// black-box) and an idle connection's lifetime (3,000 connections left
// idle after one request to the metrics listener were all still open
// after 20 s, kluisd 17 -> 73 MB, and stayed so).
func TestLoopbackListenersBoundHeadersAndIdleConnections(t *testing.T) {
	d := startLocalDaemon(t, Options{})
	for _, l := range []struct{ addr, path string }{{d.kiosk, "/kiosk/v1/session"}, {d.metrics, "/healthz"}} {
		t.Run(l.path, func(t *testing.T) {
			t.Parallel()
			// A header far beyond any the screen sends: 431 at once.
			c, err := net.Dial("tcp", l.addr)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
			_, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: %s\r\n\r\n", l.path, strings.Repeat("a", 100<<10))
			if err == nil {
				resp, rerr := http.ReadResponse(bufio.NewReader(c), nil)
				require.NoError(t, rerr)
				resp.Body.Close()
				require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
			} // else: the server already answered and closed while the header was being sent

			// One request, then silence: the server closes the connection.
			c2, err := net.Dial("tcp", l.addr)
			require.NoError(t, err)
			defer c2.Close()
			require.NoError(t, c2.SetDeadline(time.Now().Add(45*time.Second)))
			_, err = fmt.Fprintf(c2, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", l.path)
			require.NoError(t, err)
			br := bufio.NewReader(c2)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			_, err = br.ReadByte()
			require.ErrorIs(t, err, io.EOF, "an idle connection must be closed by kluisd (a timeout here means it was kept)")
		})
	}
}

// Each loopback listener holds at most its cap of connections
// (kiosk.max_connections 128, metrics_max_connections 16 by default):
// more are answered 503 with Retry-After and counted, instead of each
// taking a descriptor and memory for its idle time (before, a local
// process could open connections until kluisd ran out of descriptors,
// and its journal, serial line and MQTT link with it). Once they close,
// the listener serves again.
func TestLoopbackListenersCapConnections(t *testing.T) {
	reg := promtext.NewRegistry()
	d := startLocalDaemon(t, Options{Registry: reg})
	for _, l := range []struct {
		name, addr, path string
		max              int
	}{{"kiosk", d.kiosk, "/kiosk/v1/session", 128}, {"metrics", d.metrics, "/healthz", 16}} {
		var held []net.Conn
		ok, refused := 0, 0
		for i := range l.max + 24 {
			c, err := net.DialTimeout("tcp", l.addr, 10*time.Second)
			require.NoError(t, err)
			held = append(held, c)
			require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
			_, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", l.path)
			require.NoError(t, err, "%s connection %d", l.name, i)
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			require.NoError(t, err, "%s connection %d", l.name, i)
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			switch res.StatusCode {
			case http.StatusOK:
				ok++
			case http.StatusServiceUnavailable:
				refused++
				require.Equal(t, "1", res.Header.Get("Retry-After"))
				c.Close()
			default:
				t.Fatalf("%s connection %d: status %d", l.name, i, res.StatusCode)
			}
		}
		require.LessOrEqual(t, ok, l.max, "%s: connections served past the cap", l.name)
		require.GreaterOrEqual(t, refused, 24, l.name)
		n, found := promtexttest.Value(t, reg, "kluisd_http_connections_refused_total", "listener", l.name)
		require.True(t, found, l.name)
		require.Equal(t, float64(refused), n, l.name)
		for _, c := range held {
			c.Close()
		}
		require.Eventually(t, func() bool {
			res, err := http.Get("http://" + l.addr + l.path)
			if err != nil {
				return false
			}
			res.Body.Close()
			return res.StatusCode == http.StatusOK
		}, 20*time.Second, 50*time.Millisecond, l.name)
	}
}
