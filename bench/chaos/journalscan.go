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
	mu      sync.Mutex
	events  map[string]string // event id -> device
	intents map[string]map[uint32]journal.Intent
	// intentAt is when each device journaled intents, per lock.
	intentAt map[string][]lockIntent
}

// lockIntent is a journaled pulse intent of one lock.
type lockIntent struct {
	board, ch int
	at        time.Time
}

func newJournalScan() *journalScan {
	return &journalScan{events: map[string]string{}, intents: map[string]map[uint32]journal.Intent{}, intentAt: map[string][]lockIntent{}}
}

// read reads one device's journal (and any set-aside bad tail).
func (s *journalScan) read(dev, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, journal.FileName+"*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s.parse(dev, b)
	}
}

func (s *journalScan) parse(dev string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
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
			s.events[r.Event.ID] = dev
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
		out[k] = v
	}
	return out
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
