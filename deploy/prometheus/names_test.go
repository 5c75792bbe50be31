package prometheus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/config"
	"kluis/controller/daemon"
	"kluis/controller/promtext"
	"kluis/deploy/dev/testenv"
	"kluis/deploy/grafana"
	"kluis/deploy/prometheus/promcheck"
	"kluis/simulator"
)

// used collects the metric names of the rules and the dashboards.
func used(t *testing.T) promcheck.Used {
	t.Helper()
	u := promcheck.Used{}
	recorded, err := promcheck.RuleNames(u, "kluis-alerts.yml", Rules)
	require.NoError(t, err)
	require.NoError(t, promcheck.DashboardNames(u, grafana.Dashboards))
	for _, r := range recorded {
		delete(u, r)
	}
	return u
}

// Every name the rules and dashboards use belongs to a daemon (or is
// Prometheus's own up).
func TestUsedNamesHaveAnOwner(t *testing.T) {
	u := used(t)
	require.NotEmpty(t, u)
	for n, where := range u {
		assert.NotEmpty(t, promcheck.Owner(n), "%s (used in %s) is exported by no Kluis daemon", n, strings.Join(where, "; "))
	}
	for _, n := range []string{"kluis_device_online", "kluisd_doors_left_open", "up"} {
		assert.Contains(t, u, n)
	}
}

// runKluisd runs the real kluisd (daemon.Run) with hardware driver hw
// against the simulator until it is ready, and returns what its registry
// exports.
func runKluisd(t *testing.T, hw string) map[string]bool {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	dev := "names-" + hex.EncodeToString(b[:])
	sim, err := simulator.New(simulator.Options{ID: dev, Kind: simulator.Locker, Boards: 1, Channels: 8})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var hardware string
	switch hw {
	case config.DriverKluis, config.DriverKerong:
		line, err := simulator.ServeSerial(ctx, sim, simulator.SerialOptions{Protocol: hw})
		require.NoError(t, err)
		defer line.Close()
		hardware = fmt.Sprintf("{driver: %s, serial: {port: %s}}", hw, line.Path)
	case config.DriverTasmota:
		mod, err := simulator.ServeTasmota(ctx, sim, simulator.TasmotaOptions{Broker: testenv.BrokerURL(), Topic: dev + "-bank",
			ClearRetainedOnClose: true})
		require.NoError(t, err)
		defer mod.Close()
		hardware = fmt.Sprintf("{driver: tasmota, tasmota: {broker: %s, modules: [{topic: %s-bank, relays: 8, board: 0}]}}",
			testenv.BrokerURL(), dev)
	}
	kiosk, metrics := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
device_id: %s
site: names
kind: locker
mqtt: {url: %s, client_id: %s}
hardware: %s
journal_dir: %s
kiosk: {listen: "%s"}
metrics_listen: "%s"
compartments:
  - {number: 1, board: 0, channel: 0}
`, dev, testenv.BrokerURL(), dev, hardware, filepath.Join(t.TempDir(), "journal"), kiosk, metrics)), config.ParseOptions{})
	require.NoError(t, err)
	reg := promtext.NewRegistry()
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, daemon.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Software: "names-test", Registry: reg})
	}()
	testenv.MustPoll(t, 30*time.Second, "kluisd ("+hw+") ready", func(ctx context.Context) (bool, string, error) {
		select {
		case err := <-done:
			t.Fatalf("kluisd (%s) stopped: %v", hw, err)
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metrics+"/healthz", nil)
		if err != nil {
			return false, "", err
		}
		resp, err := testenv.HTTPClient().Do(req)
		if err != nil {
			return false, "", err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(body), `"ready":true`), string(body), nil
	})
	exported := promcheck.ExportedText(reg)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("kluisd (%s) did not stop", hw)
	}
	return exported
}

// Every kluisd metric (and Go or process metric) that the rules and the
// dashboards use is registered by the real kluisd, with each production
// driver against the simulator: no alert or panel waits for a series that
// never comes. (kluis-backend's names: cmd/kluis-backend's test.)
func TestKluisdExportsUsedNames(t *testing.T) {
	exported := map[string]bool{}
	for _, hw := range []string{config.DriverKluis, config.DriverKerong, config.DriverTasmota} {
		for n := range runKluisd(t, hw) {
			exported[n] = true
		}
	}
	for _, n := range []string{"kluisd_journal_backlog", "kluisd_mqtt_connected", "kluisd_journal_damaged",
		"kluis_kluisbus_frames_total", "kluis_kerong_frames_total", "kluis_tasmota_messages_total", "go_goroutines"} {
		require.True(t, exported[n], "the registries hold %s", n)
	}
	assert.Empty(t, promcheck.Missing(used(t), exported, promcheck.Kluisd, promcheck.Any),
		"used by rules or dashboards, not exported by kluisd")
}
