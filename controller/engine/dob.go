package engine

import (
	"encoding/json"
	"time"

	"kluis/controller/journal"
	"kluis/controller/offline"
	"kluis/controller/wire"
)

// Journal records of the offline second-factor rule: 5 wrong dates of birth
// typed with the PIN of a code lock that code, offline as online
// (docs/security.md). Offline the device cannot tell a wrong date of birth
// from a wrong PIN (the verifier covers both), so it journals every failed
// offline PIN attempt by a short tag of the PIN alone
// (pickupcode.OfflineCheck.PINTag); when the right PIN and date of birth
// come, the failures with the same tag are the wrong dates typed with it.
const (
	// recDOBFailure {tag, at}: a failed offline PIN attempt.
	recDOBFailure = "dob_failure"
	// recCodeLocked {key, doc}: an offline cache entry (a code) locked.
	recCodeLocked = "code_locked"
)

// dobFailure is one failed offline PIN attempt.
type dobFailure struct {
	Tag string    `json:"tag"`
	At  time.Time `json:"at"`
}

// codeLock is a code locked offline.
type codeLock struct {
	Key string `json:"key"`
	Doc string `json:"doc"`
}

// replayDOB rebuilds the failures and locks from the journal.
func (e *Engine) replayDOB(r journal.Record) {
	switch r.Type {
	case recDOBFailure:
		var f dobFailure
		if json.Unmarshal(r.Data, &f) == nil && f.Tag != "" {
			e.dobFails = append(e.dobFails, f)
		}
	case recCodeLocked:
		var l codeLock
		if json.Unmarshal(r.Data, &l) == nil && l.Key != "" {
			e.codeLocks[l.Key] = l
		}
	}
}

// keepDOB is the compaction rule of these records: they matter as long as
// a code may be valid.
func (e *Engine) keepDOB(r journal.Record) bool {
	if e.now().Sub(r.At) > usedRetention {
		return false
	}
	switch r.Type {
	case recDOBFailure:
		var f dobFailure
		return json.Unmarshal(r.Data, &f) == nil && e.now().Sub(f.At) <= usedRetention
	case recCodeLocked:
		return true
	}
	return false
}

// offlinePINFailed journals a failed offline PIN attempt by its tag.
func (e *Engine) offlinePINFailed(tag string) {
	if tag == "" {
		return // no PIN material: no code to protect
	}
	f := dobFailure{Tag: tag, At: e.now().UTC()}
	if err := e.appendData(recDOBFailure, f); err != nil {
		e.log.Error("journal of an offline PIN failure failed", "err", err)
		e.m.journalErrors.Inc()
	}
	e.mu.Lock()
	e.dobFails = append(e.dobFails, f)
	e.mu.Unlock()
}

// wrongDOBs counts the failed offline attempts with the PIN of tag within
// the retention.
func (e *Engine) wrongDOBs(tag string) int {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	n, keep := 0, e.dobFails[:0]
	for _, f := range e.dobFails {
		if now.Sub(f.At) > usedRetention {
			continue
		}
		keep = append(keep, f)
		if f.Tag == tag {
			n++
		}
	}
	e.dobFails = keep
	return n
}

func (e *Engine) codeLocked(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.codeLocks[key]
	return ok
}

// lockCode locks the code of m offline, durably, and tells the backend
// (code_locked), which locks it too.
func (e *Engine) lockCode(m offline.Match) {
	l := codeLock{Key: m.Key, Doc: m.DocumentID}
	if err := e.appendData(recCodeLocked, l); err != nil {
		e.log.Error("journal of an offline code lock failed", "err", err)
		e.m.journalErrors.Inc()
	}
	e.mu.Lock()
	e.codeLocks[l.Key] = l
	e.mu.Unlock()
	e.log.Warn("code locked offline after too many wrong dates of birth", "document", m.DocumentID)
	e.emitKept(wire.Event{Kind: wire.EvCodeLocked, DocumentID: m.DocumentID, CodeRef: m.CodeRef, Method: wire.MethodPIN,
		Offline: true, Detail: "too many wrong dates of birth with its PIN, offline"})
}
