package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"kluis/controller/config"
	"kluis/controller/daemon/daemontest"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
	"kluis/hardware"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func get(t *testing.T, url string) (int, string) {
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The whole daemon in-process on the real broker: the backend syncs offline
// material with a code_sync command, then stops answering verify requests;
// a citizen's QR pickup is verified offline, the door opens, and the
// pickup reaches the backend flagged offline. Metrics and health are served.
func TestOfflinePickupSyncedOverMQTT(t *testing.T) {
	dir := t.TempDir()
	dev := fmt.Sprintf("e2e-%d", time.Now().UnixNano())
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	keyFile := filepath.Join(dir, "qr.pub")
	require.NoError(t, os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o600))
	kiosk, metrics := freePort(t), freePort(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
device_id: %s
site: e2e
kind: locker
mqtt: {url: %s}
hardware: {driver: simfile, simfile: %s}
journal_dir: %s
kiosk: {listen: "%s"}
metrics_listen: "%s"
offline: {public_key_file: %s}
timeouts: {verify: 500ms, door_open_detect: 3s}
compartments:
  - {number: 1, board: 0, channel: 0}
  - {number: 2, board: 0, channel: 1}
`, dev, brokerURL(), filepath.Join(dir, "board.sim"), filepath.Join(dir, "journal"), kiosk, metrics, keyFile)),
		config.ParseOptions{AllowTestDrivers: true})
	require.NoError(t, err)
	be := newBackend(t, dev)
	// systemd's notify socket, as Type=notify with WatchdogSec would give.
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "notify"), Net: "unixgram"})
	require.NoError(t, err)
	defer sock.Close()
	notes := make(chan string, 100)
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				return
			}
			select {
			case notes <- string(buf[:n]):
			default:
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Software: "e2e",
			HeartbeatEvery: 200 * time.Millisecond, NotifySocket: filepath.Join(dir, "notify"), Watchdog: 200 * time.Millisecond,
			OpenDriver: func(context.Context, *config.Config, *slog.Logger, prometheus.Registerer) (hardware.Driver, error) {
				return daemontest.Open(cfg.Hardware.SimFile, 1, 16)
			}})
	}()
	seen := map[string]bool{}
	note := func(want string) func() bool {
		return func() bool {
			for {
				select {
				case n := <-notes:
					seen[n] = true
				default:
					return seen[want]
				}
			}
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
		waitFor(t, "STOPPING=1", note("STOPPING=1"))
	}()
	waitFor(t, "READY=1", note("READY=1"))
	waitFor(t, "WATCHDOG=1", note("WATCHDOG=1"))
	waitFor(t, "healthy", func() bool {
		resp, err := http.Get("http://" + metrics + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	waitFor(t, "mqtt", func() bool {
		_, b := get(t, "http://"+metrics+"/healthz")
		return strings.Contains(b, `"mqtt_connected":true`)
	})

	id := make([]byte, pickupcode.CodeIDSize)
	_, _ = rand.Read(id)
	cid := base64.RawURLEncoding.EncodeToString(id)
	now := time.Now()
	tok, err := pickupcode.SignToken(priv, pickupcode.Claims{CodeID: cid, DeviceID: dev, Expires: now.Add(time.Hour).Unix()})
	require.NoError(t, err)
	be.pub(wire.KindCommand, &wire.Command{ID: "sync-1", Kind: wire.CmdCodeSync, Issued: now, Expires: now.Add(time.Minute),
		Codes: &wire.CodeSync{Version: 1, Full: true, Entries: []wire.CodeEntry{
			{DocumentID: "doc-7", Addr: wire.Address{Board: 0, Channel: 1}, Expires: now.Add(time.Hour), QRHash: pickupcode.QRHash(cid)}}}})
	waitFor(t, "code sync applied", func() bool {
		be.mu.Lock()
		defer be.mu.Unlock()
		return len(be.results) == 1 && be.results[0].Status == wire.StatusDone
	})
	be.mu.Lock()
	be.silent = true
	be.mu.Unlock()

	resp, err := http.Post("http://"+kiosk+"/kiosk/v1/pickup", "application/json", strings.NewReader(`{"qr":"`+tok+`","lang":"en"}`))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	require.Contains(t, string(b), `"compartment":2`)

	waitFor(t, "offline pickup reported", func() bool {
		be.mu.Lock()
		defer be.mu.Unlock()
		for _, e := range be.events {
			if e.Kind == wire.EvPickupCompleted && e.Offline && e.DocumentID == "doc-7" {
				return true
			}
		}
		return false
	})
	waitFor(t, "outbox drained", func() bool { _, b := get(t, "http://"+metrics+"/healthz"); return strings.Contains(b, `"backlog":0`) })
	code, body := get(t, "http://"+metrics+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `kluisd_pickups_total{outcome="pickup_completed"} 1`)
	require.Contains(t, body, `kluisd_verifications_total{result="ok",source="offline"} 1`)
	require.NotContains(t, body, tok)
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
