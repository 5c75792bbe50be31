package chaos

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"

	"kluis/controller/journal"
)

// journalScan collects what every kluisd journaled (event ids, pulse
// intents) by reading the journal files often: compaction drops acknowledged
// events, so the files are read before it can.
type journalScan struct {
	mu     sync.Mutex
	events map[string]*journaledEvent // by event id
	// acked are the event ids an ack record names (kluisd journals one
	// once the backend acknowledged the event).
	acked   map[string]bool
	intents map[string]map[uint32]journal.Intent
	// intentAt is when each device journaled intents, per lock.
	intentAt map[string][]lockIntent
}

// journaledEvent is what the scan read of one journaled event.
type journaledEvent struct {
	dev, kind string
	file      string    // the file it was first read in
	at        time.Time // its record's time
	seen      time.Time // when the scan first read it
}

// lockIntent is a journaled pulse intent of one lock.
type lockIntent struct {
	board, ch int
	at        time.Time
}

func newJournalScan() *journalScan {
	return &journalScan{events: map[string]*journaledEvent{}, acked: map[string]bool{}, intents: map[string]map[uint32]journal.Intent{}, intentAt: map[string][]lockIntent{}}
}

// read reads one device's journal (and any set-aside bad tail).
func (s *journalScan) read(dev, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, journal.FileName+"*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s.parse(dev, filepath.Base(f), b)
	}
}

func (s *journalScan) parse(dev, file string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return // a line still being written
		}
		line := b[:i]
		b = b[i+1:]
		if len(line) < 10 || line[8] != ' ' {
			continue
		}
		var r journal.Record
		if json.Unmarshal(line[9:], &r) != nil {
			continue
		}
		switch {
		case r.Type == journal.TypeEvent && r.Event != nil:
			if s.events[r.Event.ID] == nil {
				s.events[r.Event.ID] = &journaledEvent{dev: dev, kind: r.Event.Kind, file: file, at: r.At, seen: now}
			}
		case r.Type == journal.TypeAck:
			s.acked[r.ID] = true
		case r.Type == journal.TypeIntent && r.Intent != nil:
			m := s.intents[dev]
			if m == nil {
				m = map[uint32]journal.Intent{}
				s.intents[dev] = m
			}
			if _, seen := m[r.Intent.ID]; !seen {
				s.intentAt[dev] = append(s.intentAt[dev], lockIntent{board: r.Intent.Board, ch: r.Intent.Channel, at: r.At})
			}
			m[r.Intent.ID] = *r.Intent
		}
	}
}

// eventIDs returns a copy of the event ids seen.
func (s *journalScan) eventIDs() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.events))
	for k, v := range s.events {
		out[k] = v.dev
	}
	return out
}

// event is what the scan read of event id, and whether an ack record
// names it.
func (s *journalScan) event(id string) (ev journaledEvent, acked, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.events[id]
	if e == nil {
		return journaledEvent{}, false, false
	}
	return *e, s.acked[id], true
}

// inJournal says where event id stands in dev's journal files now (read
// afresh): "in <file>, not acknowledged" (still in kluisd's outbox),
// "acknowledged in <file>", or not there (compacted away after its ack,
// or the file is gone).
func inJournal(dir, id string) string {
	files, _ := filepath.Glob(filepath.Join(dir, journal.FileName+"*"))
	where, acked := "", ""
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range bytes.Split(b, []byte{'\n'}) {
			if len(line) < 10 || line[8] != ' ' || !bytes.Contains(line, []byte(id)) {
				continue
			}
			var r journal.Record
			if json.Unmarshal(line[9:], &r) != nil {
				continue
			}
			switch {
			case r.Type == journal.TypeEvent && r.Event != nil && r.Event.ID == id:
				where = filepath.Base(f)
			case r.Type == journal.TypeAck && r.ID == id:
				acked = filepath.Base(f)
			}
		}
	}
	switch {
	case acked != "":
		return "acknowledged in " + acked
	case where != "":
		return "in " + where + ", not acknowledged"
	case len(files) == 0:
		return "no journal file"
	}
	return "no longer in the journal (compacted away after its ack?)"
}

// intent reports whether dev journaled a pulse intent with command id id.
func (s *journalScan) intent(dev string, id uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.intents[dev][id]
	return ok
}

// intentSince reports whether dev journaled an intent for the lock
// (board, ch) at or after since.
func (s *journalScan) intentSince(dev string, board, ch int, since time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, li := range s.intentAt[dev] {
		if li.board == board && li.ch == ch && !li.at.Before(since) {
			return true
		}
	}
	return false
}
