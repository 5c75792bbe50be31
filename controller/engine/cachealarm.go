package engine

import (
	"encoding/json"

	"kluis/controller/journal"
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

// noteCache raises offline_cache_untrusted at start-up when the offline
// cache refused its file (Options.CacheUntrusted; again at each start
// until a full sync comes), or clears it when the cache is trusted and the
// alarm was left raised by an earlier run.
func (e *Engine) noteCache() {
	if e.o.CacheUntrusted != "" {
		e.mu.Lock()
		e.cacheAlarm = true
		e.mu.Unlock()
		e.alarm(wire.AlarmOfflineCacheUntrusted, nil, nil, e.o.CacheUntrusted)
		e.markCache(true)
		return
	}
	if e.o.Cache != nil { // an unreadable cache (none) tells nothing
		e.cacheTrusted()
	}
}

// cacheTrusted clears offline_cache_untrusted if it is raised: the cache
// no longer refuses codes (a full signed sync was applied, or start-up
// found the file trusted).
func (e *Engine) cacheTrusted() {
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
