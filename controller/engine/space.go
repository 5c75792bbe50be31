package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"kluis/controller/journal"
	"kluis/controller/wire"
)

// recJournalFull marks the journal_full alarm raised or cleared, so that a
// restart clears an alarm raised before it: {"raised": bool}, the latest
// counts; kept by compaction while the alarm is raised.
const recJournalFull = "journal_full"

// alarmMark is the record of recJournalFull and recCacheUntrusted.
type alarmMark struct {
	Raised bool `json:"raised"`
}

// spaceRetry is how often, while the journal's disk is full, the engine
// asks the journal to make its reserve again.
const spaceRetry = 5 * time.Second

// journalLow reports whether the journal has given up its reserve (a full
// disk): no door operation starts then (see "A full disk" in
// controller/journal's doc.go).
func (e *Engine) journalLow() bool {
	st, _ := e.j.Space()
	e.mu.Lock()
	defer e.mu.Unlock()
	return st.Low || e.writeFail
}

// journalFailed takes a journal write that failed with err: for another
// reason than a full disk (which the journal's reserve answers, see
// spaceLoop), such as an I/O error of a worn card, no door operation
// starts until a journal write succeeds again, and journal_full is raised
// naming the cause (kept in memory with the other writes the journal
// refuses: the backend has it once the journal takes writes again).
// keepLoop, woken here, tries the kept writes again and, once none is
// left, clears it (journalWorks).
func (e *Engine) journalFailed(err error) {
	if err == nil || errors.Is(err, journal.ErrClosed) || (journal.SpaceState{Low: true, Cause: err}).DiskFull() {
		return // a full disk is the journal's own (spaceLoop); closed: stopping
	}
	e.mu.Lock()
	e.writeFail = true
	e.mu.Unlock()
	e.noteSpace(journal.SpaceState{Low: true, Cause: err})
	e.wakeKeep()
}

// journalHold is how long journal writes must have worked, once every
// kept write is written, before a journal write failure ends (journal_full
// cleared, doors open again): an intermittent I/O error used to raise and
// clear the alarm within half a second, each time, and only
// kluisd_journal_errors showed it.
const journalHold = time.Minute

// journalWorks starts the hold of a journal write failure once every kept
// write is written (keepLoop); it reports whether a hold is under way,
// for keepLoop to call journalHeld after journalHold.
func (e *Engine) journalWorks() bool {
	n := e.j.WriteErrors()
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.writeFail {
		return false
	}
	e.holdErrs = n
	return true
}

// journalHeld ends a journal write failure when no journal write has
// failed (journal.WriteErrors, whoever wrote) since its hold began: doors
// open again unless the disk is full. Otherwise the hold begins again; it
// reports whether it did.
func (e *Engine) journalHeld() (again bool) {
	n := e.j.WriteErrors()
	e.mu.Lock()
	if !e.writeFail {
		e.mu.Unlock()
		return false
	}
	if n != e.holdErrs {
		e.holdErrs = n
		e.mu.Unlock()
		e.log.Warn("journal write failed during the hold: journal_full stays raised", "hold", journalHold)
		return true
	}
	e.writeFail = false
	e.mu.Unlock()
	e.log.Info("journal writes work again", "held", journalHold)
	st, _ := e.j.Space()
	e.noteSpace(st)
	return false
}

// spaceLoop follows the journal's space: it raises journal_full when the
// journal gives up its reserve (or could not make it at start-up), tries
// to make the reserve again every spaceRetry once no journal write waits
// in memory, and clears the alarm when the reserve is back. Like keepLoop
// it waits on one timer of its own, so a synctest bubble drives it.
func (e *Engine) spaceLoop(ctx context.Context) {
	retry := time.NewTimer(spaceRetry)
	retry.Stop()
	defer retry.Stop()
	for {
		st, changed := e.j.Space()
		e.noteSpace(st)
		var tick <-chan time.Time
		if st.Low {
			retry.Reset(spaceRetry)
			tick = retry.C
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
			retry.Stop()
		case <-tick:
			// Kept writes first: they go before anything new, and the
			// reserve is only made again with room to spare.
			if e.KeptWrites() == 0 {
				if err := e.j.Restore(); err != nil {
					e.log.Debug("journal reserve not made yet", "err", err)
				}
			}
		}
	}
}

// noteSpace raises or clears journal_full when low differs from what was
// reported last. The alarm and the clear are journaled before their mark,
// and replay takes a journaled journal_full alarm or clear as a mark too
// (replayJournalFullEvent), so a crash in between loses nothing: a raise
// that never reached the journal is raised again by the restarted engine
// (the mark behind it was kept in memory with it), one that did is known
// raised and cleared once there is room. (With the mark first, a crash
// after the mark but before the alarm was journaled, as when something
// else took the reserve's room, lost the raise for good.) A raised mark
// outlives its compacted alarm.
func (e *Engine) noteSpace(st journal.SpaceState) {
	e.mu.Lock()
	low := st.Low || e.writeFail
	was := e.fullAlarm
	e.fullAlarm = low
	e.mu.Unlock()
	if low == was {
		return
	}
	mark := func(raised bool) {
		e.keep(recJournalFull, func() error { return e.appendData(recJournalFull, alarmMark{Raised: raised}) })
	}
	if low {
		e.alarm(wire.AlarmJournalFull, nil, nil, lowDetail(st))
		mark(true)
		return
	}
	e.emitKept(wire.Event{Kind: wire.EvAlarmCleared, Alarm: wire.AlarmJournalFull})
	mark(false)
}

// lowDetail is the journal_full alarm's detail: a full disk, or the cause
// that kept the reserve from being made when it is another (the same
// alarm, as no door opens either way, but a technician who reads "disk
// full" frees room on a disk that may have plenty).
func lowDetail(st journal.SpaceState) string {
	if st.DiskFull() {
		return "disk full: the journal's reserve is in use; no door opens until there is room again"
	}
	return fmt.Sprintf("not a full disk: %v; no door opens until the journal works again", st.Cause)
}

// outOfOrderDetail is a refused remote open's detail while the journal is
// low.
func (e *Engine) outOfOrderDetail() string {
	st, _ := e.j.Space()
	e.mu.Lock()
	failing := e.writeFail
	e.mu.Unlock()
	if failing || (st.Low && !st.DiskFull()) {
		return "device out of order: the journal fails (not a full disk)"
	}
	return "device out of order: disk full"
}

// replayJournalFull takes a journal_full mark from the journal.
func (e *Engine) replayJournalFull(r journal.Record) {
	var m alarmMark
	if json.Unmarshal(r.Data, &m) == nil {
		e.fullAlarm = m.Raised
	}
}

// replayJournalFullEvent takes a journaled journal_full alarm or clear as
// its mark (see noteSpace).
func (e *Engine) replayJournalFullEvent(r journal.Record) {
	if kind, raised, ok := journaledAlarm(r); ok && kind == wire.AlarmJournalFull {
		e.fullAlarm = raised
	}
}

// journaledAlarm reads a journaled alarm or alarm_cleared event: its kind
// and whether it raised (ok false for any other record).
func journaledAlarm(r journal.Record) (kind wire.AlarmKind, raised, ok bool) {
	ev := r.Event
	if ev == nil || (ev.Kind != string(wire.EvAlarm) && ev.Kind != string(wire.EvAlarmCleared)) {
		return "", false, false
	}
	var a struct {
		Alarm wire.AlarmKind `json:"alarm"`
	}
	if json.Unmarshal(ev.Payload, &a) != nil {
		return "", false, false
	}
	return a.Alarm, ev.Kind == string(wire.EvAlarm), true
}

// keepJournalFull: a raised mark survives compaction while the alarm is
// raised.
func (e *Engine) keepJournalFull(r journal.Record) bool { return e.keepRaised(r, &e.fullAlarm) }

// keepRaised: a raised alarm mark ({"raised": true}) survives compaction
// while *raised (under mu) says the alarm is.
func (e *Engine) keepRaised(r journal.Record, raised *bool) bool {
	var m alarmMark
	if json.Unmarshal(r.Data, &m) != nil || !m.Raised {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return *raised
}
