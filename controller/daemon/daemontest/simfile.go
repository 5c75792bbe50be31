// Package daemontest holds SimFile, a file-backed stand-in for lock boards
// that survives the process using it: every pulse, every physical event and
// every acknowledgement is appended to a file with fsync. Crash tests run
// kluisd as a real process on it, kill it with SIGKILL, restart it and then
// read the file to count pulses per channel: exactly what a board with
// command ids and an event queue would have seen.
//
// The physics is simple and instant: a pulse that is not a duplicate opens
// the door, the citizen takes the item and closes the door; the pulse record
// and the three door/item events are written in one fsynced append, so they
// happen together or not at all.
package daemontest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"kluis/hardware"
)

// Record is one line of the SimFile.
type Record struct {
	T    string `json:"t"` // pulse, ev, ack
	ID   uint32 `json:"id,omitempty"`
	B    int    `json:"b"`
	C    int    `json:"c"`
	Dup  bool   `json:"dup,omitempty"`
	Seq  uint32 `json:"seq,omitempty"`
	Kind string `json:"kind,omitempty"`
}

// SimFile is the file-backed driver (boards 0..Boards-1 with Channels
// channels each).
type SimFile struct {
	// Latency is slept before and after a pulse is carried out, like a
	// serial round trip; it widens the windows a crash can hit.
	Latency time.Duration

	path     string
	boards   int
	channels int

	mu      sync.Mutex
	f       *os.File
	seen    map[uint32]bool
	taken   map[hardware.Address]bool
	events  []Record // unacked, in order
	nextSeq uint32
	halted  bool
	closed  bool
	wake    chan struct{}
}

// Open opens or creates the file at path.
func Open(path string, boards, channels int) (*SimFile, error) {
	recs, err := ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	s := &SimFile{path: path, boards: boards, channels: channels, seen: map[uint32]bool{}, taken: map[hardware.Address]bool{}, nextSeq: 1,
		wake: make(chan struct{})}
	acked := map[uint32]bool{}
	for _, r := range recs {
		if r.T == "ack" {
			acked[r.Seq] = true
		}
	}
	for _, r := range recs {
		switch r.T {
		case "pulse":
			s.seen[r.ID] = true
			if !r.Dup {
				s.taken[hardware.Address{Board: r.B, Channel: r.C}] = true
			}
		case "ev":
			if r.Seq >= s.nextSeq {
				s.nextSeq = r.Seq + 1
			}
			if !acked[r.Seq] {
				s.events = append(s.events, r)
			}
		}
	}
	s.f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ReadFile returns the whole records of a SimFile (a torn last line is
// ignored).
func ReadFile(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r Record
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.T != "" {
			out = append(out, r)
		}
	}
	return out, sc.Err()
}

func (s *SimFile) write(recs ...Record) error {
	var buf []byte
	for _, r := range recs {
		b, _ := json.Marshal(r)
		buf = append(append(buf, b...), '\n')
	}
	if _, err := s.f.Write(buf); err != nil {
		return err
	}
	return s.f.Sync()
}

func (s *SimFile) notify() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// Describe reports one board with every capability a Kluis board has
// (except the mechanism).
func (s *SimFile) Describe(ctx context.Context) (hardware.Info, error) {
	var boards []hardware.BoardInfo
	for b := 0; b < s.boards; b++ {
		boards = append(boards, hardware.BoardInfo{Address: b, Channels: s.channels})
	}
	return hardware.Info{Kind: "simfile", Boards: boards,
		Caps: hardware.Capabilities{CommandIDs: true, EventQueue: true, DoorSensor: true, ItemSensor: true, TimedPulse: true}}, nil
}

// Pulse records the pulse; a new id opens the door and the item is taken.
func (s *SimFile) Pulse(ctx context.Context, a hardware.Address, d time.Duration, id hardware.CommandID) error {
	time.Sleep(s.Latency)
	defer time.Sleep(s.Latency)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.halted {
		return fmt.Errorf("simfile: %w", hardware.ErrHalted)
	}
	if a.Board < 0 || a.Board >= s.boards || a.Channel < 0 || a.Channel >= s.channels {
		return fmt.Errorf("simfile: %s: %w", a, hardware.ErrOutOfRange)
	}
	if s.seen[uint32(id)] {
		return s.write(Record{T: "pulse", ID: uint32(id), B: a.Board, C: a.Channel, Dup: true})
	}
	recs := []Record{{T: "pulse", ID: uint32(id), B: a.Board, C: a.Channel}}
	for _, k := range []hardware.EventKind{hardware.DoorOpened, hardware.ItemRemoved, hardware.DoorClosed} {
		recs = append(recs, Record{T: "ev", Seq: s.nextSeq, Kind: string(k), B: a.Board, C: a.Channel})
		s.nextSeq++
	}
	if err := s.write(recs...); err != nil {
		return err
	}
	s.seen[uint32(id)] = true
	s.taken[a] = true
	s.events = append(s.events, recs[1:]...)
	s.notify()
	return nil
}

// States: doors shut, items present until taken.
func (s *SimFile) States(ctx context.Context) ([]hardware.ChannelState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []hardware.ChannelState
	for b := 0; b < s.boards; b++ {
		for c := 0; c < s.channels; c++ {
			a := hardware.Address{Board: b, Channel: c}
			out = append(out, hardware.ChannelState{Addr: a, Locked: true, ItemPresent: !s.taken[a]})
		}
	}
	return out, nil
}

// Watch delivers unacknowledged events in order; an event is acknowledged
// (durably) after fn returned nil.
func (s *SimFile) Watch(ctx context.Context, fn func(hardware.Event) error) error {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return fmt.Errorf("simfile: %w", hardware.ErrHalted)
		}
		wake := s.wake
		var ev *Record
		if len(s.events) > 0 {
			e := s.events[0]
			ev = &e
		}
		s.mu.Unlock()
		if ev == nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-wake:
				continue
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(hardware.Event{Kind: hardware.EventKind(ev.Kind), Addr: hardware.Address{Board: ev.B, Channel: ev.C}, Seq: ev.Seq, At: time.Now()}); err != nil {
			return err
		}
		s.mu.Lock()
		err := s.write(Record{T: "ack", Seq: ev.Seq})
		if err == nil && len(s.events) > 0 && s.events[0].Seq == ev.Seq {
			s.events = s.events[1:]
		}
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// Halt refuses further pulses.
func (s *SimFile) Halt() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.halted = true
	return nil
}

// Close halts and closes the file.
func (s *SimFile) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed, s.halted = true, true
	s.notify()
	return s.f.Close()
}
