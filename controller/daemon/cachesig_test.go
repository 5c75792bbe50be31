package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/controller/offline"
	"kluis/controller/offline/offlinetest"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// addCacheEntry writes e into kluisd's offline cache file as someone who
// can write the kiosk's disk would: into the entries of the last code sync
// the file keeps (the signed command's, as received from the backend), or
// into the file's own entries (the unsigned cache of kluisd before
// 2026-12-07).
func addCacheEntry(t *testing.T, path string, e wire.CodeEntry) {
	t.Helper()
	offlinetest.EditFile(t, path, func(f map[string]any) {
		into := f
		if syncs, ok := f["syncs"].([]any); ok && len(syncs) > 0 {
			into = syncs[len(syncs)-1].(map[string]any)["codes"].(map[string]any)
		}
		entries, _ := into["entries"].([]any)
		into["entries"] = append(entries, offlinetest.JSONValue(t, e))
	})
}

// Someone who can write the kiosk's disk (a technician's USB stick, a
// compromised service account) adds to kluisd's offline cache an entry
// whose PIN they chose, for the compartment of someone else's document.
// kluisd refuses the whole cache at its next start: offline nothing opens
// (not the planted PIN, not the genuine QR code of the document), alarm
// offline_cache_untrusted says why and reaches the backend, and the
// heartbeat's cache_version 0 has the backend send a full sync; from that
// sync on the genuine code opens offline again and the planted PIN still
// does not, and kluisd has cleared the alarm: the backend lists it open
// no more. Before, the cache file was not authenticated at all and the
// planted PIN opened the compartment offline; then (c4a5d0d) the alarm was
// journal_damaged, which no device clears.
func TestTamperedOfflineCacheRefused(t *testing.T) {
	dir := t.TempDir()
	dev := fmt.Sprintf("cs-%d", time.Now().UnixNano())
	be := startRealBackend(t, dev, "locker", numbered(wire.Address{Board: 0, Channel: 0}, wire.Address{Board: 0, Channel: 1}),
		server.Options{CodeSyncEvery: time.Hour})
	kiosk, metrics := testenv.FreeAddr(t), testenv.FreeAddr(t)
	journalDir := filepath.Join(dir, "journal")
	cfg := parseLockerConfig(t, be, dir, journalDir, kiosk, metrics, "{verify: 500ms, door_open_detect: 3s}", 2)
	cached := func() float64 { return metricValue(metrics, "kluisd_offline_cache_entries") }
	pickup := func(body string) string {
		resp, err := testenv.HTTPClient().Post("http://"+kiosk+"/kiosk/v1/pickup", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	offlineNow := func() {
		be.Stop()
		testenv.Eventually(t, "the link to notice", func() bool {
			_, b := get(t, "http://"+metrics+"/healthz")
			return strings.Contains(b, `"mqtt_connected":false`)
		})
	}

	stop := startKluisd(t, cfg, metrics, true)
	ids, tokens := be.loadDocuments(2)
	doc := ids[0]
	if be.channelOf(doc) != 1 {
		doc = ids[1]
	}
	testenv.Eventually(t, "both codes in the offline cache", func() bool { return cached() == 2 })
	testenv.Eventually(t, "the code syncs' results at the backend", func() bool { return be.commandsDone(wire.CmdCodeSync) })
	stop()

	const planted = "111 222 333"
	addCacheEntry(t, filepath.Join(journalDir, offline.FileName),
		offlinetest.PINEntry(doc, dev, strings.ReplaceAll(planted, " ", ""), "1990-02-03", wire.Address{Board: 0, Channel: 1}, time.Now().Add(24*time.Hour)))
	be.Stop()
	stop = startKluisd(t, cfg, metrics, false)
	defer func() { stop() }()
	b := pickup(`{"pin":"` + planted + `","birth_date":"1990-02-03","lang":"en"}`)
	require.NotContains(t, b, `"compartment":2`, "the planted PIN opened someone else's compartment offline")
	b = pickup(`{"qr":"` + tokens[doc] + `","lang":"en"}`)
	require.NotContains(t, b, `"compartment":2`, "a cache that is not authenticated opens nothing")
	require.Zero(t, cached())
	require.GreaterOrEqual(t, alarmsRaised(metrics, string(wire.AlarmOfflineCacheUntrusted)), float64(1), "raised")
	require.Zero(t, alarmsRaised(metrics, string(wire.AlarmJournalDamaged)), "the journal is not damaged")

	// The backend is back: kluisd's presence and heartbeat (cache version
	// 0) bring a full sync, which the backend signed.
	be.restart()
	testenv.Eventually(t, "a full sync replaces the refused cache", func() bool { return cached() == 2 })
	testenv.EventuallyWithin(t, time.Minute, "the alarm at the backend, with its cause", func() bool {
		for _, r := range be.audit("device:" + dev) {
			if r.Action == "device.alarm" && r.Details["alarm"] == string(wire.AlarmOfflineCacheUntrusted) {
				detail, _ := r.Details["detail"].(string)
				return strings.HasPrefix(detail, "offline cache not authenticated") && strings.Contains(detail, "signature")
			}
		}
		return false
	})
	openAlarms := func() []wire.AlarmKind {
		var out struct {
			Alarms []struct {
				Alarm wire.AlarmKind `json:"alarm"`
			} `json:"alarms"`
		}
		require.NoError(t, be.Session().Do(context.Background(), http.MethodGet, "/api/v1/devices/"+dev+"/alarms", nil, &out))
		var kinds []wire.AlarmKind
		for _, a := range out.Alarms {
			kinds = append(kinds, a.Alarm)
		}
		return kinds
	}
	testenv.EventuallyWithin(t, time.Minute, "the alarm cleared at the backend after the full sync", func() bool {
		for _, r := range be.audit("device:" + dev) {
			if r.Action == "device.alarm_cleared" && r.Details["alarm"] == string(wire.AlarmOfflineCacheUntrusted) {
				return true
			}
		}
		return false
	})
	require.Empty(t, openAlarms(), "no alarm open once the device has its codes again")
	offlineNow()
	b = pickup(`{"pin":"` + planted + `","birth_date":"1990-02-03","lang":"en"}`)
	require.NotContains(t, b, `"compartment":2`, "the planted PIN is gone with the refused cache")
	b = pickup(`{"qr":"` + tokens[doc] + `","lang":"en"}`)
	require.Contains(t, b, `"compartment":2`, "the genuine code opens offline again")
}
