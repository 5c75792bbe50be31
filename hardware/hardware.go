package hardware

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Address names one channel on a bus: the board's address (0-31) and the
// channel on that board, counted from 0 (0-47). People count from 1: lock 1
// of board 0 is Address{Board: 0, Channel: 0}.
type Address struct {
	Board   int `json:"board"`
	Channel int `json:"channel"`
}

// String formats the address as "b0/c3".
func (a Address) String() string { return fmt.Sprintf("b%d/c%d", a.Board, a.Channel) }

// Limits of any bus this package drives.
const (
	MaxBoards   = 32
	MaxChannels = 48
)

// Validate reports whether the address lies within the bus limits.
func (a Address) Validate() error {
	if a.Board < 0 || a.Board >= MaxBoards {
		return fmt.Errorf("board %d out of range 0-%d: %w", a.Board, MaxBoards-1, ErrOutOfRange)
	}
	if a.Channel < 0 || a.Channel >= MaxChannels {
		return fmt.Errorf("channel %d out of range 0-%d: %w", a.Channel, MaxChannels-1, ErrOutOfRange)
	}
	return nil
}

// CommandID identifies one unlock or present command. A driver that talks to
// hardware with command ids (the Kluis protocol) sends it along, so that a
// retransmission never pulses twice; callers give every logical command a
// fresh, non-zero id and reuse it only to retry that same command.
type CommandID uint32

// Capabilities says what a driver and its hardware can do.
type Capabilities struct {
	// CommandIDs: the hardware deduplicates retransmitted commands.
	CommandIDs bool `json:"command_ids"`
	// EventQueue: the hardware queues door events with sequence numbers, so
	// none is lost between polls; otherwise events are derived from polled
	// state changes and a short open-close between two polls goes unseen.
	EventQueue bool `json:"event_queue"`
	// DoorSensor and ItemSensor: the state fields of the same name are real
	// readings; when false they are always false and mean nothing.
	DoorSensor bool `json:"door_sensor"`
	ItemSensor bool `json:"item_sensor"`
	// TimedPulse: the hardware times the pulse itself (a lost link cannot
	// leave a lock energised).
	TimedPulse bool `json:"timed_pulse"`
	// RebootDetect: a board restart is detected and reported.
	RebootDetect bool `json:"reboot_detect"`
	// Mechanism: the driver implements Mechanism (an automaton's carousel
	// and hatch).
	Mechanism bool `json:"mechanism"`
}

// BoardInfo describes one board on the bus.
type BoardInfo struct {
	Address  int    `json:"address"`
	Channels int    `json:"channels"`
	Protocol int    `json:"protocol,omitempty"`
	Firmware string `json:"firmware,omitempty"`
	// Slots is the number of carousel slots of an automaton board, 0 otherwise.
	Slots int `json:"slots,omitempty"`
}

// Info describes a driver and the hardware it found.
type Info struct {
	// Kind names the driver: "kluis", "kerong-cu16" or "tasmota".
	Kind   string       `json:"kind"`
	Boards []BoardInfo  `json:"boards"`
	Caps   Capabilities `json:"caps"`
}

// ChannelState is one channel's reading.
type ChannelState struct {
	Addr Address `json:"addr"`
	// Locked is false while the lock is energised (a pulse in progress) or
	// when the lock reports unlocked.
	Locked      bool `json:"locked"`
	DoorOpen    bool `json:"door_open"`
	ItemPresent bool `json:"item_present"`
}

// EventKind names what happened.
type EventKind string

// The events a driver reports.
const (
	DoorOpened     EventKind = "door_opened"
	DoorClosed     EventKind = "door_closed"
	ItemPlaced     EventKind = "item_placed"
	ItemRemoved    EventKind = "item_removed"
	Unlocked       EventKind = "unlocked" // a pulse was carried out
	BoardRebooted  EventKind = "board_rebooted"
	BoardOnline    EventKind = "board_online"
	BoardOffline   EventKind = "board_offline" // unreachable after retries
	SlotPresented  EventKind = "slot_presented"
	HatchOpened    EventKind = "hatch_opened"
	HatchClosed    EventKind = "hatch_closed"
	MechanismFault EventKind = "mechanism_fault"
	// LockUncommanded: a lock (or, on an automaton, the carousel's drive)
	// was switched on that the driver did not command: whoever reaches a
	// relay module's broker can switch its relays (Tasmota over MQTT).
	// Addr is the lock's channel (an automaton's: its hatch, channel 0,
	// with Slot the carousel slot its drive brought to the hatch, or -1
	// for the hatch lock itself); Detail names the relay.
	LockUncommanded EventKind = "lock_uncommanded"
	// BoardWatchdog: the board's own watchdog relocked every lock because
	// the master was silent for its timeout (a pulse in progress was cut).
	BoardWatchdog EventKind = "board_watchdog"
)

// Event is something the hardware saw. Addr.Channel is -1 for board-wide
// events. Seq is the board's event sequence number where the hardware has an
// event queue, 0 otherwise.
type Event struct {
	Kind EventKind `json:"kind"`
	Addr Address   `json:"addr"`
	Seq  uint32    `json:"seq,omitempty"`
	// Slot is the carousel slot for SlotPresented.
	Slot int `json:"slot,omitempty"`
	// At is when the driver received the event (its clock).
	At time.Time `json:"at"`
	// Detail is a short human text for faults; never a secret.
	Detail string `json:"detail,omitempty"`
}

// Driver is one bus of lock boards or relay modules. Pulse, States and
// Describe may be called from several goroutines while Watch runs; the driver
// serialises access to the line.
type Driver interface {
	// Describe returns the driver's kind, the boards it found and their
	// capabilities.
	Describe(ctx context.Context) (Info, error)
	// Pulse energises the lock at addr for d, once. id identifies the
	// command: retrying with the same id never pulses a second time on
	// hardware with CommandIDs. A nil error means the hardware accepted the
	// command; the door opening is seen later as an event.
	Pulse(ctx context.Context, addr Address, d time.Duration, id CommandID) error
	// States reads every channel of every board.
	States(ctx context.Context) ([]ChannelState, error)
	// Watch polls or listens and hands every event to fn, in order, until
	// ctx ends. An event is acknowledged to the hardware (where it has an
	// event queue) only after fn returned nil; fn returning an error stops
	// Watch with that error and the event is delivered again by the next
	// Watch. Watch returns ctx.Err() when ctx ends.
	Watch(ctx context.Context, fn func(Event) error) error
	// Halt de-energises every lock and stops any mechanism, leaving the
	// hardware inert and everything locked. It is safe to call more than
	// once and from any goroutine.
	Halt() error
	// Close halts and releases the port or connection.
	Close() error
}

// HatchState is an automaton's hatch and mechanism reading.
type HatchState struct {
	Open        bool `json:"open"`
	Locked      bool `json:"locked"`
	Busy        bool `json:"busy"`  // the carousel is moving
	Fault       bool `json:"fault"` // the mechanism reports a fault
	Slot        int  `json:"slot"`  // the slot at the hatch, -1 when none
	ItemAtHatch bool `json:"item_at_hatch"`
}

// BootBinder is implemented by drivers whose boards have boot ids and
// refuse a command id meant for another boot (kluisbus,
// firmware-protocol.md 4.3.1). A daemon that journals its pulse intents
// records Boot with each; after its own restart it calls BindBoot with the
// journaled boot id before re-sending the intent's id, so a board that
// restarted in between refuses the re-send instead of pulsing a second
// time.
type BootBinder interface {
	// Boot returns board's boot id as last seen, 0 when not known.
	Boot(board int) uint32
	// BindBoot tells the driver that id may have been carried out by
	// board in boot boot: it sends id only to that boot. 0 does nothing.
	BindBoot(board int, id CommandID, boot uint32)
}

// Mechanism is implemented by drivers of automatons (Caps.Mechanism): slots
// behind one hatch per board.
type Mechanism interface {
	// Present starts bringing slot to the hatch of board; completion is the
	// SlotPresented event, failure MechanismFault. Same id, same command.
	Present(ctx context.Context, board, slot int, id CommandID) error
	// Hatch reads the hatch and mechanism state of board.
	Hatch(ctx context.Context, board int) (HatchState, error)
}

// Errors drivers wrap so callers can tell what went wrong with errors.Is.
var (
	ErrOutOfRange  = errors.New("hardware: address out of range")
	ErrTimeout     = errors.New("hardware: no answer in time")
	ErrBusy        = errors.New("hardware: busy or cooling down")
	ErrFault       = errors.New("hardware: mechanism fault")
	ErrHalted      = errors.New("hardware: halted")
	ErrProtocol    = errors.New("hardware: protocol error")
	ErrUnsupported = errors.New("hardware: not supported by this hardware")
	// ErrRebooted: the board restarted since an earlier attempt of this
	// command id went out, which may have been carried out (and cut short
	// by the restart); the restarted board has forgotten the id, so the
	// driver did not send it again. Nothing was done by this call. The
	// caller decides from the sensors (a door not seen open stays shut)
	// and, for a new try, uses a new command id.
	ErrRebooted = errors.New("hardware: the board restarted since this command id was sent")
)
