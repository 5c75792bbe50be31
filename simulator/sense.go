package simulator

import (
	"fmt"
	"time"

	"kluis/hardware"
)

// Extra change kinds beyond hardware's events, for module emulators that
// report mechanism lines (Tasmota Switch2).
const (
	MechanismBusy hardware.EventKind = "mechanism_busy"
	MechanismIdle hardware.EventKind = "mechanism_idle"
	FaultCleared  hardware.EventKind = "fault_cleared"
)

// Change is one edge of a sensor reading (what the board's inputs see, so a
// broken door sensor produces none) or a board happening: a pulse started,
// a slot arrived, a reboot.
type Change struct {
	Kind    hardware.EventKind `json:"kind"`
	Board   int                `json:"board"`
	Channel int                `json:"channel"`
	Slot    int                `json:"slot,omitempty"`
	At      time.Time          `json:"at"`
}

// Subscribe calls fn for every change, in order, outside the device's lock
// (fn may read the device). fn must not block for long. The returned
// function unsubscribes.
func (d *Device) Subscribe(fn func(Change)) (cancel func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nsub++
	id := d.nsub
	d.subs[id] = fn
	return func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		delete(d.subs, id)
	}
}

func (d *Device) emitLocked(c Change) {
	if c.At.IsZero() {
		c.At = d.clk.Now()
	}
	d.pending = append(d.pending, c)
	bd := d.boards[c.Board]
	switch c.Kind {
	case MechanismBusy, MechanismIdle, FaultCleared, hardware.BoardRebooted:
	default:
		bd.queue.push(QueuedEvent{Kind: c.Kind, Channel: c.Channel, Slot: c.Slot})
	}
}

// flush delivers pending changes to subscribers in order.
func (d *Device) flush() {
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	d.mu.Lock()
	pend := d.pending
	d.pending = nil
	subs := make([]func(Change), 0, len(d.subs))
	for i := 1; i <= d.nsub; i++ {
		if fn, ok := d.subs[i]; ok {
			subs = append(subs, fn)
		}
	}
	d.mu.Unlock()
	for _, c := range pend {
		for _, fn := range subs {
			fn(c)
		}
	}
}

// senseLocked compares channel c's sensor readings (and for automatons the
// mechanism lines) with what was last seen and emits the edges.
func (d *Device) senseLocked(bd *board, c int) {
	ch := bd.channels[c]
	r := d.readingLocked(bd, c)
	hatch := d.kind == Automaton
	if r.DoorOpen != ch.seenDoor {
		ch.seenDoor = r.DoorOpen
		k := hardware.DoorClosed
		if hatch && r.DoorOpen {
			k = hardware.HatchOpened
		} else if hatch {
			k = hardware.HatchClosed
		} else if r.DoorOpen {
			k = hardware.DoorOpened
		}
		d.emitLocked(Change{Kind: k, Board: bd.addr, Channel: c})
	}
	if r.ItemPresent != ch.seenItem {
		ch.seenItem = r.ItemPresent
		k := hardware.ItemRemoved
		if r.ItemPresent {
			k = hardware.ItemPlaced
		}
		d.emitLocked(Change{Kind: k, Board: bd.addr, Channel: c})
	}
	if hatch {
		if bd.busy != bd.seenBusy {
			bd.seenBusy = bd.busy
			k := MechanismIdle
			if bd.busy {
				k = MechanismBusy
			}
			d.emitLocked(Change{Kind: k, Board: bd.addr, Channel: -1})
		}
		if bd.fault != bd.seenFault {
			bd.seenFault = bd.fault
			k := FaultCleared
			if bd.fault {
				k = hardware.MechanismFault
			}
			d.emitLocked(Change{Kind: k, Board: bd.addr, Channel: -1})
		}
	}
}

// Reading is what a board's inputs report for one channel.
type Reading struct {
	// Locked is false while the lock is energised.
	Locked bool `json:"locked"`
	// DoorOpen is the door sensor: false whatever the door does when the
	// sensor is broken.
	DoorOpen    bool `json:"door_open"`
	ItemPresent bool `json:"item_present"`
}

func (d *Device) readingLocked(bd *board, c int) Reading {
	ch := bd.channels[c]
	return Reading{
		Locked:      !ch.energised,
		DoorOpen:    ch.doorOpen && !ch.sensorBroken,
		ItemPresent: d.itemLocked(bd, ch) != "",
	}
}

// Readings returns the sensor readings of every channel of board b.
func (d *Device) Readings(b int) ([]Reading, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b < 0 || b >= len(d.boards) {
		return nil, fmt.Errorf("board %d of %s: %w", b, d.id, ErrNoSuchChannel)
	}
	bd := d.boards[b]
	out := make([]Reading, len(bd.channels))
	for c := range bd.channels {
		out[c] = d.readingLocked(bd, c)
	}
	return out, nil
}

// ChannelTruth is the true physical state of one channel.
type ChannelTruth struct {
	Board     int    `json:"board"`
	Channel   int    `json:"channel"`
	Energised bool   `json:"energised"`
	DoorOpen  bool   `json:"door_open"`
	Item      string `json:"item,omitempty"`
	LeaveOpen bool   `json:"leave_open,omitempty"`
	// Sensor is what the board's inputs report.
	Sensor Reading `json:"sensor"`
	// Faults on this channel.
	Stuck        bool `json:"stuck,omitempty"`
	SensorBroken bool `json:"sensor_broken,omitempty"`
}

// MechanismTruth is the true state of an automaton board's carousel.
type MechanismTruth struct {
	Board   int      `json:"board"`
	AtHatch int      `json:"at_hatch"`
	Busy    bool     `json:"busy"`
	Fault   bool     `json:"fault"`
	Slots   []string `json:"slots"`
}

// BoardTruth is one board's protocol-side state.
type BoardTruth struct {
	Board       int    `json:"board"`
	BootID      uint32 `json:"boot_id"`
	QueuedCount int    `json:"queued_events"`
	NextSeq     uint32 `json:"next_seq"`
}

// State is the whole true physical state of a device.
type State struct {
	ID         string           `json:"id"`
	Kind       Kind             `json:"kind"`
	Channels   []ChannelTruth   `json:"channels"`
	Mechanisms []MechanismTruth `json:"mechanisms,omitempty"`
	Boards     []BoardTruth     `json:"boards"`
	Faults     Faults           `json:"faults"`
	Pulses     int              `json:"pulses"`
}

// State returns a snapshot of the true state.
func (d *Device) State() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := State{ID: d.id, Kind: d.kind, Faults: d.faults, Pulses: len(d.pulses)}
	for _, bd := range d.boards {
		for c, ch := range bd.channels {
			s.Channels = append(s.Channels, ChannelTruth{
				Board: bd.addr, Channel: c, Energised: ch.energised, DoorOpen: ch.doorOpen,
				Item: d.itemLocked(bd, ch), LeaveOpen: ch.leaveOpen, Sensor: d.readingLocked(bd, c),
				Stuck: ch.stuck, SensorBroken: ch.sensorBroken,
			})
		}
		if d.kind == Automaton {
			s.Mechanisms = append(s.Mechanisms, MechanismTruth{Board: bd.addr, AtHatch: bd.atHatch, Busy: bd.busy, Fault: bd.fault, Slots: append([]string(nil), bd.slots...)})
		}
		s.Boards = append(s.Boards, BoardTruth{Board: bd.addr, BootID: bd.queue.BootID, QueuedCount: len(bd.queue.events), NextSeq: bd.queue.next})
	}
	return s
}

// Channel returns the true state of one channel.
func (d *Device) Channel(b, c int) (ChannelTruth, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	bd, ch, err := d.channelLocked(b, c)
	if err != nil {
		return ChannelTruth{}, err
	}
	return ChannelTruth{Board: b, Channel: c, Energised: ch.energised, DoorOpen: ch.doorOpen,
		Item: d.itemLocked(bd, ch), LeaveOpen: ch.leaveOpen, Sensor: d.readingLocked(bd, c),
		Stuck: ch.stuck, SensorBroken: ch.sensorBroken}, nil
}

// NumBoards returns the number of boards.
func (d *Device) NumBoards() int { return len(d.boards) }

// NumChannels returns the channels per board.
func (d *Device) NumChannels() int { return d.opt.Channels }
