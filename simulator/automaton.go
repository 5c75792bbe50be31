package simulator

import (
	"fmt"
	"time"

	"kluis/hardware"
)

// Present is one carousel command the device received.
type Present struct {
	At        time.Time `json:"at"`
	Board     int       `json:"board"`
	Slot      int       `json:"slot"`
	CommandID uint32    `json:"command_id,omitempty"`
	Via       string    `json:"via"`
}

// Present starts the carousel of automaton board b toward slot. It refuses
// with hardware.ErrBusy while the carousel moves or the hatch is open, and
// with hardware.ErrFault while the mechanism is faulted. After MoveTime the
// slot is at the hatch (SlotPresented) or, when a jam was injected, the
// mechanism faults (MechanismFault) until a reboot or SetMechanismFault
// clears it. A slot already at the hatch is presented at once (the busy
// output still pulses on and off).
func (d *Device) Present(b, slot int, id uint32, via string) error {
	d.mu.Lock()
	defer d.flush()
	defer d.mu.Unlock()
	if d.kind != Automaton {
		return fmt.Errorf("present on %s: %w", d.id, ErrNotAutomaton)
	}
	if b < 0 || b >= len(d.boards) || slot < 0 || slot >= len(d.boards[b].slots) {
		return fmt.Errorf("slot %d on board %d: %w", slot, b, ErrNoSuchChannel)
	}
	bd := d.boards[b]
	switch {
	case bd.fault:
		return fmt.Errorf("board %d mechanism: %w", b, hardware.ErrFault)
	case bd.busy:
		return fmt.Errorf("board %d carousel moving: %w", b, hardware.ErrBusy)
	case bd.channels[0].doorOpen:
		return fmt.Errorf("board %d hatch open: %w", b, hardware.ErrBusy)
	case bd.channels[0].energised:
		return fmt.Errorf("board %d hatch unlocked: %w", b, hardware.ErrBusy)
	}
	now := d.clk.Now()
	d.presents = append(d.presents, Present{At: now, Board: b, Slot: slot, CommandID: id, Via: via})
	if bd.atHatch == slot {
		// Already there: presented at once, nothing moves. The mechanism
		// still runs its (empty) cycle, so the busy output pulses: a
		// Tasmota module's driver sees busy go on and off, as for a move.
		// Busy and idle are not board events (the Kluis queue only gets
		// SlotPresented) and leave the sensed busy state unchanged.
		d.emitLocked(Change{Kind: MechanismBusy, Board: b, Channel: -1})
		d.emitLocked(Change{Kind: MechanismIdle, Board: b, Channel: -1})
		d.emitLocked(Change{Kind: hardware.SlotPresented, Board: b, Channel: -1, Slot: slot})
		return nil
	}
	bd.busy = true
	bd.atHatch = -1
	bd.moveGen++
	gen := bd.moveGen
	d.senseLocked(bd, 0)
	d.clk.AfterFunc(d.opt.MoveTime, func() { d.arrive(b, slot, gen) })
	return nil
}

func (d *Device) arrive(b, slot, gen int) {
	d.mu.Lock()
	defer d.flush()
	defer d.mu.Unlock()
	bd := d.boards[b]
	if bd.moveGen != gen || !bd.busy {
		return
	}
	bd.busy = false
	if bd.jamNext {
		bd.jamNext = false
		bd.fault = true
		d.senseLocked(bd, 0)
		return
	}
	bd.atHatch = slot
	d.senseLocked(bd, 0)
	d.emitLocked(Change{Kind: hardware.SlotPresented, Board: b, Channel: -1, Slot: slot})
}

// Presents returns every carousel command received, oldest first.
func (d *Device) Presents() []Present {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Present(nil), d.presents...)
}

// Hatch returns board b's hatch as its sensors report it.
func (d *Device) Hatch(b int) (hardware.HatchState, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.kind != Automaton {
		return hardware.HatchState{}, fmt.Errorf("hatch on %s: %w", d.id, ErrNotAutomaton)
	}
	if b < 0 || b >= len(d.boards) {
		return hardware.HatchState{}, fmt.Errorf("board %d: %w", b, ErrNoSuchChannel)
	}
	bd := d.boards[b]
	r := d.readingLocked(bd, 0)
	return hardware.HatchState{Open: r.DoorOpen, Locked: r.Locked, Busy: bd.busy, Fault: bd.fault, Slot: bd.atHatch, ItemAtHatch: r.ItemPresent}, nil
}
