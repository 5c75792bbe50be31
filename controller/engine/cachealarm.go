package engine

import (
	"encoding/json"

	"kluis/controller/journal"
	"kluis/controller/offline"
	"kluis/controller/wire"
)

// recCacheUntrusted marks the offline_cache_untrusted alarm raised or
// cleared, so that a restart clears an alarm raised before it once the
// cache is trusted again, even when the clearing was lost (kluisd stopped
// between the full sync's write and its clearing): {"raised": bool}, the
// latest counts; kept by compaction while the alarm is raised. A
// journaled alarm or clearing of that kind counts as a mark too (the
// alarm is journaled before its mark).
const recCacheUntrusted = "offline_cache_untrusted"

// recCacheVersion {"version": n} is the version of the last code sync the
// offline cache applied, journaled after it (the latest counts, kept by
// compaction): a high-water mark the cache file cannot lower. At start
// the cache is told it (offline.Cache.Floor): an older copy of the file
// put back is refused, and no sync of that version or older is taken.
// kluisd before 2026-12-08 journaled none: its first sync after the
// upgrade begins the mark.
const recCacheVersion = "cache_version"

// replayCacheVersion takes a cache_version record from the journal.
func (e *Engine) replayCacheVersion(r journal.Record) {
	var m struct {
		Version int64 `json:"version"`
	}
	if json.Unmarshal(r.Data, &m) == nil && m.Version > e.cacheMark.version.Load() {
		e.cacheMark.version.Store(m.Version)
		e.cacheMark.seq.Store(r.Seq)
	}
}

// floorCache tells the offline cache the journal's high-water mark at
// start; a file older than it is refused (offline_cache_untrusted, as a
// tampered one).
func (e *Engine) floorCache() {
	v := e.cacheMark.version.Load()
	if e.o.Cache == nil || v == 0 {
		return
	}
	if err := e.o.Cache.Floor(v); err != nil {
		e.log.Error("offline cache older than the last sync applied: every offline code refused until the backend's next full sync", "err", err)
		if e.o.CacheUntrusted == "" {
			e.o.CacheUntrusted = "offline cache not authenticated, refused until the backend's next full sync: " + err.Error()
		}
	}
}

// markCacheVersion journals v, the version of a code sync just applied.
// A power cut before it leaves the older mark, which refuses nothing the
// file holds.
func (e *Engine) markCacheVersion(v int64) {
	e.cacheMu.Lock()
	defer e.cacheMu.Unlock()
	if v <= e.cacheMark.version.Load() {
		return // (two syncs at once: the later one's mark came first)
	}
	b, err := json.Marshal(map[string]int64{"version": v})
	if err != nil {
		return
	}
	r, err := e.j.Append(journal.Record{Type: recCacheVersion, Data: b})
	if err != nil {
		e.log.Warn("journal of the offline cache's version failed", "err", err)
		return
	}
	e.cacheMark.version.Store(v)
	e.cacheMark.seq.Store(r.Seq)
}

// recCacheWithdrawn {"keys": [offline.WithdrawnKey...]} names entries a
// withdrawal took out of the offline cache, journaled before the cache
// file says so (offline.Cache.SetRecorder); kept by compaction until
// offline.ExpiredRetention after the last one's expiry. At start they are
// given back to the cache (offline.Cache.KeepWithdrawn): the file's
// withdrawn list is not signed, and an entry deleted from it opened its
// compartment offline again.
const recCacheWithdrawn = "cache_withdrawn"

type withdrawnRecord struct {
	Keys []offline.WithdrawnKey `json:"keys"`
}

// replayCacheWithdrawn takes a cache_withdrawn record from the journal.
func (e *Engine) replayCacheWithdrawn(r journal.Record) {
	var w withdrawnRecord
	if json.Unmarshal(r.Data, &w) == nil {
		e.withdrawnKeys = append(e.withdrawnKeys, w.Keys...)
	}
}

// keepCacheWithdrawn is the compaction rule of cache_withdrawn records:
// kept while the cache keeps a withdrawn entry (offline.ExpiredRetention
// after its expiry).
func (e *Engine) keepCacheWithdrawn(r journal.Record) bool {
	var w withdrawnRecord
	if json.Unmarshal(r.Data, &w) != nil {
		return false
	}
	now := e.now()
	for _, k := range w.Keys {
		if now.Sub(k.Expires) <= offline.ExpiredRetention {
			return true
		}
	}
	return false
}

// recordWithdrawn journals the entries a withdrawal takes out of the
// offline cache (offline.Cache.SetRecorder).
func (e *Engine) recordWithdrawn(keys []offline.WithdrawnKey) error {
	return e.appendData(recCacheWithdrawn, withdrawnRecord{Keys: keys})
}

// keepWithdrawn hands the journal's withdrawals to the offline cache at
// start and has it journal the next ones.
func (e *Engine) keepWithdrawn() {
	if e.o.Cache == nil {
		return
	}
	e.o.Cache.SetRecorder(e.recordWithdrawn)
	n, err := e.o.Cache.KeepWithdrawn(e.withdrawnKeys)
	e.withdrawnKeys = nil
	switch {
	case err != nil:
		e.log.Error("withdrawing again the offline codes the journal says are withdrawn failed", "err", err)
	case n > 0:
		e.log.Warn("offline codes the journal says are withdrawn were not in the cache file's withdrawn list: withdrawn again", "entries", n)
	}
}

// noteCache raises offline_cache_untrusted at start-up when the offline
// cache refused its file (Options.CacheUntrusted; again at each start
// until a full sync comes), or clears it when the cache is trusted and the
// alarm was left raised by an earlier run.
func (e *Engine) noteCache() {
	e.cacheMu.Lock()
	defer e.cacheMu.Unlock()
	e.raiseCacheLocked()
	if e.o.CacheUntrusted == "" && e.o.Cache != nil { // an unreadable cache (none) tells nothing
		e.clearCacheLocked()
	}
}

// cacheTrusted clears offline_cache_untrusted if it is raised: the cache
// no longer refuses codes (a full signed sync was applied). A full sync
// that comes before start-up raised the alarm (the link runs beside the
// engine's start-up) has it raised first, then cleared: the refusal is
// reported, in order.
func (e *Engine) cacheTrusted() {
	e.cacheMu.Lock()
	defer e.cacheMu.Unlock()
	e.raiseCacheLocked()
	e.clearCacheLocked()
}

// raiseCacheLocked raises the alarm of Options.CacheUntrusted once (under
// cacheMu).
func (e *Engine) raiseCacheLocked() {
	if e.o.CacheUntrusted == "" || e.cacheRaised {
		return
	}
	e.cacheRaised = true
	e.mu.Lock()
	e.cacheAlarm = true
	e.mu.Unlock()
	e.alarm(wire.AlarmOfflineCacheUntrusted, nil, nil, e.o.CacheUntrusted)
	e.markCache(true)
}

// clearCacheLocked clears the alarm if it is raised (under cacheMu).
func (e *Engine) clearCacheLocked() {
	e.mu.Lock()
	was := e.cacheAlarm
	e.cacheAlarm = false
	e.mu.Unlock()
	if !was {
		return
	}
	e.emitKept(wire.Event{Kind: wire.EvAlarmCleared, Alarm: wire.AlarmOfflineCacheUntrusted})
	e.markCache(false)
}

func (e *Engine) markCache(raised bool) {
	e.keep(recCacheUntrusted, func() error { return e.appendData(recCacheUntrusted, alarmMark{Raised: raised}) })
}

// replayCacheUntrusted takes an offline_cache_untrusted mark, or a
// journaled alarm or clearing of that kind, from the journal.
func (e *Engine) replayCacheUntrusted(r journal.Record) {
	if r.Type == recCacheUntrusted {
		var m alarmMark
		if json.Unmarshal(r.Data, &m) == nil {
			e.cacheAlarm = m.Raised
		}
		return
	}
	if kind, raised, ok := journaledAlarm(r); ok && kind == wire.AlarmOfflineCacheUntrusted {
		e.cacheAlarm = raised
	}
}
