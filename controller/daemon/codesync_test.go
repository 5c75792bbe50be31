package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/controller/config"
	"kluis/controller/daemon/daemontest"
	"kluis/controller/promtext"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

// kluisd is away (stopped) while a document is loaded for its device: as
// soon as it is back its offline cache holds the new code, sent on its
// online presence (the backend's periodic check is an hour away), and the
// citizen can collect the document while the backend is down.
func TestKluisdBackOnlineGetsItsCodesAtOnce(t *testing.T) {
	dir := t.TempDir()
	dev := fmt.Sprintf("cs-%d", time.Now().UnixNano())
	be := startRealBackend(t, dev, "locker", numbered(wire.Address{Board: 0, Channel: 0}), server.Options{CodeSyncEvery: time.Hour})
	kiosk, metrics := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg := parseLockerConfig(t, be, dir, filepath.Join(dir, "journal"), kiosk, metrics, "{verify: 500ms, door_open_detect: 3s}", 1)
	start := func() (stop func()) { return startKluisd(t, cfg, metrics, true) }

	stop := start()
	// Its first presence brings the (empty) bundle.
	testenv.Eventually(t, "the first code sync applied", func() bool { return be.commandsDone(wire.CmdCodeSync) })
	stop()

	ids, tokens := be.loadDocuments(1)
	stop = start()
	defer func() { stop() }()
	// (A sync sent while kluisd was away, had its offline presence come
	// late, stays unanswered: only the cache is looked at.)
	testenv.Eventually(t, "the new code in the offline cache", func() bool {
		return metricValue(metrics, "kluisd_offline_cache_entries") == 1
	})

	be.Stop()
	testenv.Eventually(t, "the link to notice", func() bool {
		_, b := get(t, "http://"+metrics+"/healthz")
		return strings.Contains(b, `"mqtt_connected":false`)
	})
	resp, err := testenv.HTTPClient().Post("http://"+kiosk+"/kiosk/v1/pickup", "application/json",
		strings.NewReader(`{"qr":"`+tokens[ids[0]]+`","lang":"en"}`))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	require.Contains(t, string(b), `"compartment":1`, "opened from the offline cache")
}

// startKluisd runs kluisd with cfg (a simfile driver of one board of 16
// channels) until it is ready (and connected to its broker when connected
// is true), and returns what stops it.
func startKluisd(t *testing.T, cfg *config.Config, metrics string, connected bool) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Software: "e2e",
			HeartbeatEvery: 200 * time.Millisecond,
			OpenDriver: func(context.Context, *config.Config, *slog.Logger, promtext.Registerer) (hardware.Driver, error) {
				return daemontest.Open(cfg.Hardware.SimFile, 1, 16)
			}})
	}()
	testenv.Eventually(t, "kluisd ready", func() bool {
		resp, err := testenv.HTTPClient().Get("http://" + metrics + "/healthz")
		if err != nil {
			return false // not listening yet
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && (!connected || strings.Contains(string(b), `"mqtt_connected":true`))
	})
	return func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Fatal("daemon did not stop")
		}
	}
}
