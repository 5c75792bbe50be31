package simulator

import (
	"fmt"
	"time"

	"kluis/hardware"
)

// QueueCapacity is how many events a board keeps; when full, new events are
// lost and the overflow flag is set (firmware-protocol.md 4.4).
const QueueCapacity = 128

// QueuedEvent is one event waiting in a board's queue (the Kluis protocol's
// event queue): numbered from 1 after every boot.
type QueuedEvent struct {
	Seq     uint32             `json:"seq"`
	Kind    hardware.EventKind `json:"kind"`
	Channel int                `json:"channel"`
	Slot    int                `json:"slot,omitempty"`
}

// EventQueue is a board's RAM event queue: lost on reboot, when the boot id
// changes and sequence numbers start again at 1.
type EventQueue struct {
	BootID     uint32
	next       uint32
	events     []QueuedEvent
	overflowed bool
	shown      bool // an EVENTS reply showed the overflow flag
}

func (q *EventQueue) reset(bootID uint32) {
	q.BootID = bootID
	q.next = 1
	q.events = nil
	q.overflowed = false
	q.shown = false
}

func (q *EventQueue) push(e QueuedEvent) {
	if len(q.events) >= QueueCapacity {
		q.overflowed = true
		return
	}
	e.Seq = q.next
	q.next++
	if q.next == 0 {
		q.next = 1
	}
	q.events = append(q.events, e)
}

// QueueSnapshot is a copy of a board's event queue.
type QueueSnapshot struct {
	BootID uint32        `json:"boot_id"`
	Events []QueuedEvent `json:"events"`
	// Overflowed is the overflow flag: events were lost because the queue
	// was full. It stays raised until an Ack follows an EVENTS reply that
	// showed it (ShowOverflow), as firmware-protocol.md 4.4 says.
	Overflowed bool `json:"overflowed"`
}

// ShowOverflow reports board b's overflow flag for an EVENTS reply and, when
// raised, remembers that a reply showed it: the next Ack lowers it
// (firmware-protocol.md 4.4).
func (d *Device) ShowOverflow(b int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b < 0 || b >= len(d.boards) {
		return false
	}
	q := &d.boards[b].queue
	if q.overflowed {
		q.shown = true
	}
	return q.overflowed
}

// Queue returns board b's queued (unacknowledged) events.
func (d *Device) Queue(b int) (QueueSnapshot, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b < 0 || b >= len(d.boards) {
		return QueueSnapshot{}, fmt.Errorf("board %d: %w", b, ErrNoSuchChannel)
	}
	q := &d.boards[b].queue
	return QueueSnapshot{BootID: q.BootID, Events: append([]QueuedEvent(nil), q.events...), Overflowed: q.overflowed}, nil
}

// Ack drops board b's queued events with sequence numbers up to and
// including seq (wrap-around aware within the queue), and lowers the
// overflow flag if an EVENTS reply showed it.
func (d *Device) Ack(b int, seq uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b < 0 || b >= len(d.boards) {
		return fmt.Errorf("board %d: %w", b, ErrNoSuchChannel)
	}
	q := &d.boards[b].queue
	if q.shown {
		q.overflowed, q.shown = false, false
	}
	n := 0
	for n < len(q.events) && int32(q.events[n].Seq-seq) <= 0 {
		n++
	}
	q.events = q.events[n:]
	return nil
}

// Reboot restarts board b: it gets a new boot id, its event queue is lost
// (and, through the new boot id, the Kluis responder's remembered command
// ids), energised locks drop and a carousel move stops.
// Subscribers see a BoardRebooted change; the new queue starts empty.
func (d *Device) Reboot(b int) error {
	d.mu.Lock()
	defer d.flush()
	defer d.mu.Unlock()
	if b < 0 || b >= len(d.boards) {
		return fmt.Errorf("board %d: %w", b, ErrNoSuchChannel)
	}
	d.rebootLocked(b)
	return nil
}

func (d *Device) rebootLocked(b int) {
	bd := d.boards[b]
	old := bd.queue.BootID
	id := d.rng.Uint32() | 1
	for id == old {
		id = d.rng.Uint32() | 1
	}
	bd.queue.reset(id)
	for _, ch := range bd.channels {
		ch.cooldownTill = time.Time{}
		if ch.energised {
			ch.energised = false
			ch.pulseGen++
		}
	}
	if bd.busy || bd.fault {
		// homing after the start: the carousel stops, a fault clears
		bd.busy, bd.fault = false, false
		bd.moveGen++
		d.senseLocked(bd, 0)
	}
	d.emitLocked(Change{Kind: hardware.BoardRebooted, Board: b, Channel: -1})
	d.log.Debug("board rebooted", "board", b, "boot_id", id)
}
