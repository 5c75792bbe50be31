package engine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/offline"
	"kluis/controller/offline/offlinetest"
	"kluis/controller/wire"
	"kluis/hardware"
)

// writeUnsignedCache writes the offline cache file kluisd wrote before
// 2026-12-07 (format 1: bare entries, no signature) into dir.
func writeUnsignedCache(t *testing.T, dir string, entries ...wire.CodeEntry) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"version": 41, "entries": entries})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, offline.FileName), b, 0o600))
}

// untrustedCacheRig starts a rig whose directory holds the unsigned
// offline cache of kluisd before 2026-12-07 (one entry, returned), and
// waits for the alarm it raises.
func untrustedCacheRig(t *testing.T) (*rig, wire.CodeEntry) {
	t.Helper()
	dir := t.TempDir()
	entry := offlinetest.PINEntry("doc1", device, "123456789", "", wire.Address{Board: 0, Channel: 1}, time.Now().Add(24*time.Hour))
	writeUnsignedCache(t, dir, entry)
	r := newRig(t, rigOpts{caps: sensors, dir: dir})
	r.waitFor("the alarm", func() bool { return r.hasEvent(cacheAlarm) })
	return r, entry
}

const (
	cacheAlarm   = "alarm:" + string(wire.AlarmOfflineCacheUntrusted)
	cacheCleared = "alarm_cleared:" + string(wire.AlarmOfflineCacheUntrusted)
)

// The unsigned offline cache of the kluisd before the upgrade is refused at
// start-up with alarm offline_cache_untrusted (not journal_damaged, which
// says nothing of the journal here and is never cleared), with the cause,
// on the technician's screen; a restart before the backend's full sync
// raises it again; a partial sync (refused) leaves it raised; the full
// sync clears it, and a later start raises nothing. A file tampered with
// after that is refused again at the next start, and the alarm raised
// again.
func TestUntrustedCacheAlarmClearedByAFullSync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, entry := untrustedCacheRig(t)
		dir := r.dir
		require.False(t, r.hasEvent("alarm:journal_damaged"), "the journal is not damaged")
		for _, ev := range r.events() {
			if ev.Alarm == wire.AlarmOfflineCacheUntrusted {
				require.Contains(t, ev.Detail, "kluisd before 2026-12-07")
			}
		}
		d := r.e.Diagnostics(context.Background())
		require.NotEmpty(t, d.Alarms)
		require.Equal(t, wire.AlarmOfflineCacheUntrusted, d.Alarms[0].Alarm, "on the technician's screen")
		r.stop()

		r = newRig(t, rigOpts{caps: sensors, dir: dir, priv: r.priv})
		r.waitFor("raised again at a start before the full sync", func() bool { return r.countEvents(cacheAlarm) == 2 })
		now := time.Now()
		res := r.e.HandleCommand(context.Background(), r.signed(wire.Command{ID: "partial-1", Kind: wire.CmdCodeSync, Issued: now,
			Expires: now.Add(time.Minute), Codes: &wire.CodeSync{Version: 5, Entries: []wire.CodeEntry{entry}}}))
		require.Equal(t, wire.StatusRejected, res.Status, res.Detail)
		synctest.Wait()
		require.False(t, r.hasEvent(cacheCleared), "a partial sync ends no refusal")

		r.codeSync(6, entry)
		r.waitFor("cleared by the full sync", func() bool { return r.hasEvent(cacheCleared) })
		require.Equal(t, 1, r.e.o.Cache.Len())
		r.codeSync(7, entry)
		synctest.Wait()
		require.Equal(t, 1, r.countEvents(cacheCleared), "cleared once")
		r.stop()

		r = newRig(t, rigOpts{caps: sensors, dir: dir, priv: r.priv})
		synctest.Wait()
		require.Equal(t, 2, r.countEvents(cacheAlarm), "a trusted cache raises nothing")
		require.Equal(t, 1, r.countEvents(cacheCleared))
		r.stop()

		offlinetest.EditFile(t, filepath.Join(dir, offline.FileName), func(f map[string]any) {
			f["syncs"].([]any)[0].(map[string]any)["codes"].(map[string]any)["version"] = 8
		})
		r = newRig(t, rigOpts{caps: sensors, dir: dir, priv: r.priv})
		defer r.stop()
		r.waitFor("raised again for a file refused again", func() bool { return r.countEvents(cacheAlarm) == 3 })
	})
}

// kluisd stopped after the full sync's write but before its clearing was
// journaled (a power cut), the alarm delivered and compacted away: the
// next start finds the cache trusted and the alarm's mark still raised in
// the journal, and clears it then; without, it stayed open at the backend
// for good.
func TestUntrustedCacheAlarmClearedAtTheNextStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, entry := untrustedCacheRig(t)
		dir := r.dir
		// The sync written, the engine never told.
		require.NoError(t, r.cache.Apply(offlinetest.Sync(t, r.priv, device, wire.CodeSync{Version: 3, Full: true, Entries: []wire.CodeEntry{entry}})))
		synctest.Wait()
		require.False(t, r.hasEvent(cacheCleared))
		// The backend acknowledged the alarm and the journal compacted:
		// the alarm's event is gone from it, its mark is kept.
		for _, ev := range r.events() {
			_, err := r.j.Ack(ev.ID)
			require.NoError(t, err)
		}
		require.NoError(t, r.j.Compact())
		r.stop()

		r = newRig(t, rigOpts{caps: sensors, dir: dir, priv: r.priv})
		defer r.stop()
		r.waitFor("cleared at start", func() bool { return r.hasEvent(cacheCleared) })
		require.False(t, r.hasEvent(cacheAlarm), "not raised again")
	})
}

// The backend's full sync arrives while kluisd is still starting (the link
// runs beside the engine's start-up): the alarm is raised all the same,
// then cleared, in that order, once each.
func TestUntrustedCacheAlarmRaisedThenClearedWhenTheSyncComesFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		entry := offlinetest.PINEntry("doc1", device, "123456789", "", wire.Address{Board: 0, Channel: 1}, time.Now().Add(24*time.Hour))
		writeUnsignedCache(t, dir, entry)
		r := newRig(t, rigOpts{caps: sensors, dir: dir, beforeRun: func(r *rig) { r.codeSync(3, entry) }})
		defer r.stop()
		synctest.Wait()
		require.Equal(t, []string{cacheAlarm, cacheCleared}, r.kinds())
		require.Equal(t, 1, r.e.o.Cache.Len())
	})
}

// pinSyncedRig starts a rig whose first code sync holds one entry, of
// doc in compartment 2 (board 0, channel 1): PIN 123456789 with the date
// of birth 1990-01-01.
func pinSyncedRig(t *testing.T, doc string) (*rig, wire.CodeEntry) {
	r := newRig(t, rigOpts{caps: sensors})
	entry := offlinetest.PINEntry(doc, device, "123456789", "1990-01-01", wire.Address{Board: 0, Channel: 1}, time.Now().Add(72*time.Hour))
	r.codeSync(1, entry)
	return r, entry
}

// An older copy of the offline cache put back is refused. The file is
// the backend's signed syncs, but an older one is signed all the same:
// put back while kluisd was stopped (a backup, the attacker's own copy),
// it brought back a code the backend had revoked since, which opened its
// compartment offline. The journal keeps the version of the last sync
// applied (a high-water mark): a file older than it is refused as a
// whole, with the alarm, and an older sync sent again (over MQTT) is
// stale even while the refused cache is at version 0.
func TestOlderOfflineCachePutBackIsRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, revoked := pinSyncedRig(t, "doc-old")
		defer func() { r.stop() }()
		old, err := os.ReadFile(filepath.Join(r.dir, offline.FileName))
		require.NoError(t, err)
		r.codeSync(2) // the backend revoked it
		r.stop()
		require.NoError(t, os.WriteFile(filepath.Join(r.dir, offline.FileName), old, 0o600))

		r = r.restart(rigOpts{})
		r.be.set(func() { r.be.unreachable = true })
		r.waitFor("the alarm", func() bool { return r.hasEvent(cacheAlarm) })
		require.NotEqual(t, StateOpen, r.pickup(PickupRequest{PIN: "123456789", BirthDate: "1990-01-01"}).State, "the revoked code opened offline")
		require.Empty(t, r.f.Pulses())

		now := time.Now()
		res := r.e.HandleCommand(context.Background(), r.signed(wire.Command{ID: "sync-1-again", Kind: wire.CmdCodeSync, Issued: now,
			Expires: now.Add(time.Minute), Codes: &wire.CodeSync{Version: 1, Full: true, Entries: []wire.CodeEntry{revoked}}}))
		require.Equal(t, wire.StatusRejected, res.Status, "an older sync sent again: %s", res.Detail)
		require.Contains(t, res.Detail, offline.ErrStale.Error())
		require.False(t, r.hasEvent(cacheCleared))

		r.codeSync(3)
		r.waitFor("cleared by the backend's next sync", func() bool { return r.hasEvent(cacheCleared) })
	})
}

// A withdrawal deleted from the cache file is made again. The file's
// withdrawn list is the device's own record, not signed: deleting a code
// from it (someone who can write the state directory) let that genuine
// code open its compartment offline again after a forced door, though the
// compartment may hold another document since, and a later sync carrying
// the same entry (the backend does not know) kept it. The journal now
// holds every withdrawal (cache_withdrawn), written before the file, and
// a start gives them back to the cache.
func TestWithdrawalDeletedFromTheCacheFileComesBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, entry := pinSyncedRig(t, "doc-w")
		defer func() { r.stop() }()
		r.f.Inject(hardware.Event{Kind: hardware.DoorOpened, Addr: hardware.Address{Board: 0, Channel: 1}})
		r.waitFor("the forced door withdraws the compartment's code", func() bool { return r.e.o.Cache.Len() == 0 })
		pulses := len(r.f.Pulses())
		r.stop()
		offlinetest.EditFile(t, filepath.Join(r.dir, offline.FileName), func(f map[string]any) { delete(f, "withdrawn") })

		r = r.restart(rigOpts{})
		r.be.set(func() { r.be.unreachable = true })
		require.Zero(t, r.e.o.Cache.Len(), "withdrawn again at start")
		require.NotEqual(t, StateOpen, r.pickup(PickupRequest{PIN: "123456789", BirthDate: "1990-01-01"}).State, "the withdrawn code opened offline")
		r.codeSync(2, entry) // the backend does not know: it sends the entry again
		require.NotEqual(t, StateOpen, r.pickup(PickupRequest{PIN: "123456789", BirthDate: "1990-01-01"}).State, "the withdrawn code opened after a sync")
		require.Len(t, r.f.Pulses(), pulses)
	})
}
