package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

func get(t *testing.T, url string) (int, string) {
	resp, err := testenv.HTTPClient().Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The whole daemon in-process against the real backend (in-process too,
// with its embedded broker): the backend syncs the offline material of its
// documents with a code_sync command (hashes only), then goes away, broker
// and all; a citizen's QR pickup is verified offline with the backend's
// public key, the door opens, and once the backend is back (same database,
// same broker address) the pickup reaches it flagged offline and collects
// the document. Metrics, health and systemd's notifications are served.
func TestOfflinePickupSyncedOverMQTT(t *testing.T) {
	dir := t.TempDir()
	dev := fmt.Sprintf("e2e-%d", time.Now().UnixNano())
	be := startRealBackend(t, dev, "locker", numbered(wire.Address{Board: 0, Channel: 0}, wire.Address{Board: 0, Channel: 1}), server.Options{})
	keyFile := filepath.Join(dir, "qr.pub")
	require.NoError(t, os.WriteFile(keyFile, []byte(be.Options.Keys.PublicBase64()+"\n"), 0o600))
	kiosk, metrics := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
device_id: %s
site: e2e
kind: locker
mqtt: %s
hardware: {driver: simfile, simfile: %s}
journal_dir: %s
kiosk: {listen: "%s"}
metrics_listen: "%s"
offline: {public_key_file: %s}
timeouts: {verify: 500ms, door_open_detect: 3s}
compartments:
  - {number: 1, board: 0, channel: 0}
  - {number: 2, board: 0, channel: 1}
`, dev, be.mqttConfig(), filepath.Join(dir, "board.sim"), filepath.Join(dir, "journal"), kiosk, metrics, keyFile)),
		config.ParseOptions{AllowTestDrivers: true})
	require.NoError(t, err)
	// systemd's notify socket, as Type=notify with WatchdogSec would give.
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "notify"), Net: "unixgram"})
	require.NoError(t, err)
	defer sock.Close()
	// Every distinct notification seen, kept for the whole test: the
	// watchdog pings every 100 ms, so a bounded queue would fill up and
	// drop the STOPPING=1 that matters at the end.
	var notesMu sync.Mutex
	seen := map[string]bool{}
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				return
			}
			notesMu.Lock()
			seen[string(buf[:n])] = true
			notesMu.Unlock()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Software: "e2e",
			HeartbeatEvery: 200 * time.Millisecond, NotifySocket: filepath.Join(dir, "notify"), Watchdog: 200 * time.Millisecond,
			OpenDriver: func(context.Context, *config.Config, *slog.Logger, promtext.Registerer) (hardware.Driver, error) {
				return daemontest.Open(cfg.Hardware.SimFile, 1, 16)
			}})
	}()
	note := func(want string) func() bool {
		return func() bool {
			notesMu.Lock()
			defer notesMu.Unlock()
			return seen[want]
		}
	}
	defer func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Fatal("daemon did not stop")
		}
		testenv.Eventually(t, "STOPPING=1", note("STOPPING=1"))
	}()
	testenv.Eventually(t, "READY=1", note("READY=1"))
	testenv.Eventually(t, "WATCHDOG=1", note("WATCHDOG=1"))
	testenv.Eventually(t, "healthy", func() bool {
		resp, err := testenv.HTTPClient().Get("http://" + metrics + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	testenv.Eventually(t, "mqtt", func() bool {
		_, b := get(t, "http://"+metrics+"/healthz")
		return strings.Contains(b, `"mqtt_connected":true`)
	})

	// Documents loaded while kluisd is connected: the backend sends the
	// code_sync at once (a command published while kluisd is away is not
	// kept by the broker: the backend sends it again when kluisd's online
	// presence arrives, TestKluisdBackOnlineGetsItsCodesAtOnce).
	ids, tokens := be.loadDocuments(2)
	doc := ids[0]
	if be.channelOf(doc) != 1 {
		doc = ids[1]
	}
	require.Equal(t, 1, be.channelOf(doc))
	tok := tokens[doc]
	testenv.Eventually(t, "the backend's code sync applied", func() bool {
		return metricValue(metrics, "kluisd_offline_cache_entries") == 2
	})
	// The device's result reached the backend: nothing of kluisd's is in
	// flight when the broker goes (paho's resume of in-flight messages on
	// reconnect races with its sender: eclipse-paho/paho.mqtt.golang#703).
	testenv.Eventually(t, "the code syncs' results at the backend", func() bool { return be.commandsDone(wire.CmdCodeSync) })
	be.Stop()
	testenv.Eventually(t, "the link to notice", func() bool {
		_, b := get(t, "http://"+metrics+"/healthz")
		return strings.Contains(b, `"mqtt_connected":false`)
	})

	resp, err := testenv.HTTPClient().Post("http://"+kiosk+"/kiosk/v1/pickup", "application/json", strings.NewReader(`{"qr":"`+tok+`","lang":"en"}`))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	require.Contains(t, string(b), `"compartment":2`)

	testenv.Eventually(t, "the pickup completed", func() bool {
		_, m := get(t, "http://"+metrics+"/metrics")
		return strings.Contains(m, `kluisd_pickups_total{outcome="pickup_completed"} 1`)
	})
	_, health := get(t, "http://"+metrics+"/healthz")
	require.NotContains(t, health, `"backlog":0`, "the pickup waits in the outbox")
	be.restart()
	testenv.Eventually(t, "the offline pickup collected at the backend", func() bool { return be.state(doc) == "collected" })
	// The device's record of the pickup is appended after the transition.
	testenv.Eventually(t, "the pickup in the device's audit trail, flagged offline", func() bool {
		for _, r := range be.audit("device:" + dev) {
			if r.Action == "device.pickup_completed" {
				return r.Details["offline"] == true && r.Details["document"] == doc
			}
		}
		return false
	})
	testenv.Eventually(t, "outbox drained", func() bool { _, b := get(t, "http://"+metrics+"/healthz"); return strings.Contains(b, `"backlog":0`) })
	code, body := get(t, "http://"+metrics+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `kluisd_pickups_total{outcome="pickup_completed"} 1`)
	require.Contains(t, body, `kluisd_verifications_total{result="ok",source="offline"} 1`)
	require.NotContains(t, body, tok)
	// A DNS-rebinding page (its own name resolving to 127.0.0.1) reads
	// neither listener: both answer only to a loopback Host.
	for _, addr := range []string{metrics + "/metrics", metrics + "/healthz", kiosk + "/kiosk/v1/diagnostics"} {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr, nil)
		require.NoError(t, err)
		req.Host = "rebind.evil.example"
		resp, err := testenv.HTTPClient().Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusMisdirectedRequest, resp.StatusCode, addr)
		require.NotContains(t, string(b), "kluisd_", addr)
	}
	recs, err := daemontest.ReadFile(filepath.Join(dir, "board.sim"))
	require.NoError(t, err)
	n := 0
	for _, r := range recs {
		if r.T == "pulse" && !r.Dup {
			n++
			require.Equal(t, 1, r.C)
		}
	}
	require.Equal(t, 1, n)
}
