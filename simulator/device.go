package simulator

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"kluis/hardware"
)

// Kind is what a simulated device is.
type Kind string

// The device kinds.
const (
	// Locker is a bank of doors, one item compartment behind each.
	Locker Kind = "locker"
	// Automaton has one hatch per board (channel 0) and a carousel of
	// slots behind it.
	Automaton Kind = "automaton"
)

// Errors of people actions and board commands, for errors.Is.
var (
	ErrNoSuchChannel = errors.New("simulator: no such board, channel or slot")
	ErrDoorClosed    = errors.New("simulator: the door is closed")
	ErrDoorOpen      = errors.New("simulator: the door is open")
	ErrEmpty         = errors.New("simulator: no item there")
	ErrOccupied      = errors.New("simulator: an item is already there")
	ErrNotAutomaton  = errors.New("simulator: not an automaton")
	ErrBadInput      = errors.New("simulator: bad input")
)

// Options configure a Device. Zero values get defaults.
type Options struct {
	// ID names the device; default "dev".
	ID string
	// Kind is Locker (default) or Automaton.
	Kind Kind
	// Boards is the number of boards, default 1 (max hardware.MaxBoards).
	Boards int
	// Channels per board of a Locker, default 16 (max hardware.MaxChannels).
	// An automaton board has exactly one channel, its hatch.
	Channels int
	// Slots per automaton board, default 20.
	Slots int
	// MoveTime is how long the carousel takes to bring a slot to the
	// hatch; default 3s.
	MoveTime time.Duration
	// MechDelay is how long a lock must be energised before the door
	// springs open; default 30ms. A shorter pulse leaves the door shut.
	MechDelay time.Duration
	// Cooldown is the duty-cycle rest a lock needs after a pulse ends;
	// a pulse asked for earlier is refused with hardware.ErrBusy. 0 means
	// none.
	Cooldown time.Duration
	// MaxEnergised, when positive, refuses a pulse with hardware.ErrBusy
	// while that many locks of the board are energised (Kluis boards: 4).
	MaxEnergised int
	// AutoClose, when positive, makes a simulated person close a door
	// this long after it opened, unless the channel was marked leave-open.
	AutoClose time.Duration
	// Seed feeds every random choice of this device (faults, boot ids).
	Seed uint64
	// NoBootCheck makes the Kluis boards firmware from before the boot
	// check (firmware-protocol.md 4.3.1): INFO does not advertise
	// CapBootCheck and an UNLOCK or PRESENT carrying a boot id is refused
	// with BAD_LENGTH.
	NoBootCheck bool
	// Clock drives time; default RealClock.
	Clock Clock
	// Logger receives debug lines; default discards.
	Logger *slog.Logger
}

// Device is one simulated device: boards of channels, each with a lock, a
// door and an item slot, and for automatons a carousel. It is the true
// physical state; protocol responders read its sensors and pulse its locks.
// All methods are safe for concurrent use.
type Device struct {
	id   string
	kind Kind
	opt  Options
	clk  Clock
	log  *slog.Logger

	mu       sync.Mutex
	rng      *rand.Rand
	boards   []*board
	pulses   []Pulse
	presents []Present
	rngRx    *rand.Rand
	rngTx    *rand.Rand
	faults   Faults
	subs     map[int]func(Change)
	nsub     int

	pending []Change
	flushMu sync.Mutex
}

type channel struct {
	energised    bool
	pulseGen     int
	doorOpen     bool
	item         string
	leaveOpen    bool
	stuck        bool
	sensorBroken bool
	cooldownTill time.Time
	releaseAt    time.Time
	// pulseAt is when the current pulse began; springGen the pulse whose
	// mechanical delay was already decided (the door sprang, or could
	// not), so that a pulse springs its door at most once.
	pulseAt   time.Time
	springGen int
	// last sensor readings reported (edges produce changes)
	seenDoor, seenItem bool
}

type board struct {
	addr     int
	channels []*channel
	queue    EventQueue
	// automaton
	slots     []string
	atHatch   int
	busy      bool
	fault     bool
	jamNext   bool
	moveGen   int
	seenBusy  bool
	seenFault bool
}

// New builds a device from o.
func New(o Options) (*Device, error) {
	if o.ID == "" {
		o.ID = "dev"
	}
	if o.Kind == "" {
		o.Kind = Locker
	}
	if o.Kind != Locker && o.Kind != Automaton {
		return nil, fmt.Errorf("kind %q: %w", o.Kind, ErrBadInput)
	}
	if o.Boards == 0 {
		o.Boards = 1
	}
	if o.Channels == 0 {
		o.Channels = 16
	}
	if o.Kind == Automaton {
		o.Channels = 1
		if o.Slots == 0 {
			o.Slots = 20
		}
	} else {
		o.Slots = 0
	}
	if o.Boards < 0 || o.Boards > hardware.MaxBoards {
		return nil, fmt.Errorf("boards %d not in 1-%d: %w", o.Boards, hardware.MaxBoards, ErrBadInput)
	}
	if o.Channels < 0 || o.Channels > hardware.MaxChannels {
		return nil, fmt.Errorf("channels %d not in 1-%d: %w", o.Channels, hardware.MaxChannels, ErrBadInput)
	}
	if o.Slots < 0 || o.Slots > 1000 {
		return nil, fmt.Errorf("slots %d not in 1-1000: %w", o.Slots, ErrBadInput)
	}
	if o.MoveTime <= 0 {
		o.MoveTime = 3 * time.Second
	}
	if o.MechDelay <= 0 {
		o.MechDelay = 30 * time.Millisecond
	}
	if o.Clock == nil {
		o.Clock = RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Device{
		id:    o.ID,
		kind:  o.Kind,
		opt:   o,
		clk:   o.Clock,
		log:   o.Logger.With("part", "simulator", "device", o.ID),
		rng:   rand.New(rand.NewPCG(o.Seed, 0x6b6c756973)),
		subs:  map[int]func(Change){},
		rngRx: rand.New(rand.NewPCG(o.Seed, 1)),
		rngTx: rand.New(rand.NewPCG(o.Seed, 2)),
	}
	for b := 0; b < o.Boards; b++ {
		bd := &board{addr: b, atHatch: -1}
		for c := 0; c < o.Channels; c++ {
			bd.channels = append(bd.channels, &channel{})
		}
		if o.Kind == Automaton {
			bd.slots = make([]string, o.Slots)
		}
		bd.queue.reset(d.rng.Uint32() | 1)
		d.boards = append(d.boards, bd)
	}
	return d, nil
}

// ID returns the device id.
func (d *Device) ID() string { return d.id }

// Kind returns Locker or Automaton.
func (d *Device) Kind() Kind { return d.kind }

// Options returns the options the device was built with, defaults filled.
func (d *Device) Options() Options { return d.opt }

// Clock returns the device's clock.
func (d *Device) Clock() Clock { return d.clk }

func (d *Device) channelLocked(b, c int) (*board, *channel, error) {
	if b < 0 || b >= len(d.boards) {
		return nil, nil, fmt.Errorf("board %d of %s: %w", b, d.id, ErrNoSuchChannel)
	}
	bd := d.boards[b]
	if c < 0 || c >= len(bd.channels) {
		return nil, nil, fmt.Errorf("channel %d on board %d of %s: %w", c, b, d.id, ErrNoSuchChannel)
	}
	return bd, bd.channels[c], nil
}

// Pulse is one lock energisation the device received.
type Pulse struct {
	At       time.Time     `json:"at"`
	Board    int           `json:"board"`
	Channel  int           `json:"channel"`
	Duration time.Duration `json:"duration"`
	// CommandID is the protocol's command id, 0 when the protocol has none.
	CommandID uint32 `json:"command_id,omitempty"`
	// Via names who sent it: "kluis", "kerong-cu16", "tasmota" or "api".
	Via string `json:"via"`
}

// PulseRequest asks a lock to be energised.
type PulseRequest struct {
	Board, Channel int
	Duration       time.Duration
	CommandID      uint32
	Via            string
}

// Pulse energises a lock for r.Duration. The door springs open after
// MechDelay if the pulse still lasts, the lock is not stuck and the door is
// shut; the lock relocks when the pulse ends. A lock still cooling down from
// its last pulse (Options.Cooldown) or hit by the busy fault refuses with
// hardware.ErrBusy and nothing is recorded. Every accepted pulse is
// recorded (see Pulses).
func (d *Device) Pulse(r PulseRequest) error {
	if r.Duration <= 0 || r.Duration > time.Minute {
		return fmt.Errorf("pulse duration %s not in (0, 1m]: %w", r.Duration, ErrBadInput)
	}
	d.mu.Lock()
	bd, ch, err := d.channelLocked(r.Board, r.Channel)
	if err != nil {
		d.mu.Unlock()
		return err
	}
	now := d.clk.Now()
	if ch.energised {
		d.mu.Unlock()
		return &BusyError{Reason: fmt.Sprintf("lock b%d/c%d energised", r.Board, r.Channel), Wait: ch.releaseAt.Sub(now) + d.opt.Cooldown}
	}
	if now.Before(ch.cooldownTill) {
		d.mu.Unlock()
		return &BusyError{Reason: fmt.Sprintf("lock b%d/c%d cooling down", r.Board, r.Channel), Wait: ch.cooldownTill.Sub(now)}
	}
	if d.opt.MaxEnergised > 0 {
		n := 0
		for _, x := range bd.channels {
			if x.energised {
				n++
			}
		}
		if n >= d.opt.MaxEnergised {
			d.mu.Unlock()
			return &BusyError{Reason: fmt.Sprintf("board %d: %d locks energised", r.Board, n)}
		}
	}
	if p := d.faults.BusyProb; p > 0 && d.rng.Float64() < p {
		d.mu.Unlock()
		return &BusyError{Reason: fmt.Sprintf("lock b%d/c%d refused (busy fault)", r.Board, r.Channel), Wait: 100 * time.Millisecond}
	}
	ch.energised = true
	ch.releaseAt = now.Add(r.Duration)
	ch.pulseAt = now
	ch.pulseGen++
	gen := ch.pulseGen
	d.pulses = append(d.pulses, Pulse{At: now, Board: r.Board, Channel: r.Channel, Duration: r.Duration, CommandID: r.CommandID, Via: r.Via})
	d.emitLocked(Change{Kind: hardware.Unlocked, Board: r.Board, Channel: r.Channel, At: now})
	d.mu.Unlock()
	d.flush()
	d.log.Debug("pulse", "board", r.Board, "channel", r.Channel, "duration", r.Duration, "id", r.CommandID, "via", r.Via)

	if d.opt.MechDelay < r.Duration {
		d.clk.AfterFunc(d.opt.MechDelay, func() { d.spring(r.Board, r.Channel, gen) })
	}
	d.clk.AfterFunc(r.Duration, func() { d.release(r.Board, r.Channel, gen) })
	return nil
}

func (d *Device) spring(b, c, gen int) {
	d.mu.Lock()
	bd, ch, _ := d.channelLocked(b, c)
	if ch.energised && ch.pulseGen == gen {
		d.springLocked(bd, b, c, ch)
	}
	d.mu.Unlock()
	d.flush()
}

// springLocked opens the door of an energised lock whose mechanical delay
// ran out, once per pulse: not when the lock is stuck, the door already
// open or an automaton's carousel moving.
func (d *Device) springLocked(bd *board, b, c int, ch *channel) {
	if ch.springGen == ch.pulseGen {
		return
	}
	ch.springGen = ch.pulseGen
	if ch.stuck || ch.doorOpen {
		return
	}
	if d.kind == Automaton && bd.busy {
		return // the hatch is mechanically blocked while the carousel moves
	}
	ch.doorOpen = true
	d.senseLocked(bd, c)
	d.scheduleAutoCloseLocked(b, c)
}

// springDueLocked springs the door of an energised lock about to be
// de-energised at now if its pulse lasted the mechanical delay: the door
// opens by the clock, not by which of the spring's and the relock's timer
// goroutines a loaded machine happens to run first.
func (d *Device) springDueLocked(bd *board, b, c int, ch *channel, now time.Time) {
	if ch.energised && d.opt.MechDelay < ch.releaseAt.Sub(ch.pulseAt) && !now.Before(ch.pulseAt.Add(d.opt.MechDelay)) {
		d.springLocked(bd, b, c, ch)
	}
}

func (d *Device) release(b, c, gen int) {
	d.mu.Lock()
	defer d.flush()
	bd, ch, _ := d.channelLocked(b, c)
	if ch.pulseGen == gen && ch.energised {
		d.springDueLocked(bd, b, c, ch, d.clk.Now())
		ch.energised = false
		ch.cooldownTill = d.clk.Now().Add(d.opt.Cooldown)
	}
	d.mu.Unlock()
}

func (d *Device) scheduleAutoCloseLocked(b, c int) {
	if d.opt.AutoClose <= 0 {
		return
	}
	d.clk.AfterFunc(d.opt.AutoClose, func() {
		d.mu.Lock()
		bd, ch, _ := d.channelLocked(b, c)
		if ch.doorOpen && !ch.leaveOpen {
			ch.doorOpen = false
			d.senseLocked(bd, c)
		}
		d.mu.Unlock()
		d.flush()
	})
}

// Pulses returns every pulse received so far, oldest first.
func (d *Device) Pulses() []Pulse {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Pulse(nil), d.pulses...)
}

// Take removes the item behind an open door (for an automaton's hatch: the
// item of the slot at the hatch) and returns its label.
func (d *Device) Take(b, c int) (string, error) {
	d.mu.Lock()
	defer d.flush()
	defer d.mu.Unlock()
	bd, ch, err := d.channelLocked(b, c)
	if err != nil {
		return "", err
	}
	if !ch.doorOpen {
		return "", fmt.Errorf("take from b%d/c%d: %w", b, c, ErrDoorClosed)
	}
	item := d.itemLocked(bd, ch)
	if item == "" {
		return "", fmt.Errorf("take from b%d/c%d: %w", b, c, ErrEmpty)
	}
	d.setItemLocked(bd, ch, "")
	d.senseLocked(bd, c)
	return item, nil
}

// Put places an item labelled label behind an open door.
func (d *Device) Put(b, c int, label string) error {
	if label == "" || len(label) > 200 {
		return fmt.Errorf("item label must be 1-200 bytes: %w", ErrBadInput)
	}
	d.mu.Lock()
	defer d.flush()
	defer d.mu.Unlock()
	bd, ch, err := d.channelLocked(b, c)
	if err != nil {
		return err
	}
	if !ch.doorOpen {
		return fmt.Errorf("put into b%d/c%d: %w", b, c, ErrDoorClosed)
	}
	if d.kind == Automaton && bd.atHatch < 0 {
		return fmt.Errorf("put into hatch of board %d: no slot at the hatch: %w", b, ErrNoSuchChannel)
	}
	if d.itemLocked(bd, ch) != "" {
		return fmt.Errorf("put into b%d/c%d: %w", b, c, ErrOccupied)
	}
	d.setItemLocked(bd, ch, label)
	d.senseLocked(bd, c)
	return nil
}

func (d *Device) itemLocked(bd *board, ch *channel) string {
	if d.kind == Automaton {
		if bd.atHatch < 0 {
			return ""
		}
		return bd.slots[bd.atHatch]
	}
	return ch.item
}

func (d *Device) setItemLocked(bd *board, ch *channel, label string) {
	if d.kind == Automaton {
		if bd.atHatch >= 0 {
			bd.slots[bd.atHatch] = label
		}
		return
	}
	ch.item = label
}

// Close shuts a door (a person pushes it to). Closing a closed door is
// harmless.
func (d *Device) Close(b, c int) error {
	d.mu.Lock()
	defer d.flush()
	defer d.mu.Unlock()
	bd, ch, err := d.channelLocked(b, c)
	if err != nil {
		return err
	}
	ch.doorOpen = false
	ch.leaveOpen = false
	d.senseLocked(bd, c)
	return nil
}

// LeaveOpen marks a door that the person will not close: AutoClose skips
// it until Close is called.
func (d *Device) LeaveOpen(b, c int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ch, err := d.channelLocked(b, c)
	if err != nil {
		return err
	}
	ch.leaveOpen = true
	return nil
}

// Force opens a door without any pulse (a crowbar): the lock stays locked.
func (d *Device) Force(b, c int) error {
	d.mu.Lock()
	defer d.flush()
	defer d.mu.Unlock()
	bd, ch, err := d.channelLocked(b, c)
	if err != nil {
		return err
	}
	if ch.doorOpen {
		return fmt.Errorf("force b%d/c%d: %w", b, c, ErrDoorOpen)
	}
	ch.doorOpen = true
	d.senseLocked(bd, c)
	return nil
}

// Load puts an item in place directly (initial stock, a locker's channel or
// an automaton's slot), with no door involved. For a Locker slot is
// ignored; for an Automaton c is ignored and slot chosen.
func (d *Device) Load(b, c, slot int, label string) error {
	if label == "" || len(label) > 200 {
		return fmt.Errorf("item label must be 1-200 bytes: %w", ErrBadInput)
	}
	d.mu.Lock()
	defer d.flush()
	defer d.mu.Unlock()
	if d.kind == Automaton {
		if b < 0 || b >= len(d.boards) || slot < 0 || slot >= len(d.boards[b].slots) {
			return fmt.Errorf("slot %d on board %d: %w", slot, b, ErrNoSuchChannel)
		}
		d.boards[b].slots[slot] = label
		d.senseLocked(d.boards[b], 0)
		return nil
	}
	bd, ch, err := d.channelLocked(b, c)
	if err != nil {
		return err
	}
	ch.item = label
	d.senseLocked(bd, c)
	return nil
}

// Release ends an energised lock's pulse now (a relay switched off early).
// Releasing a lock that is not energised is harmless.
func (d *Device) Release(b, c int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ch, err := d.channelLocked(b, c)
	if err != nil {
		return err
	}
	if ch.energised {
		ch.energised = false
		ch.pulseGen++
		ch.cooldownTill = d.clk.Now().Add(d.opt.Cooldown)
	}
	return nil
}

// BusyError is a pulse refused for the duty cycle; it wraps hardware.ErrBusy.
type BusyError struct {
	Reason string
	// Wait is how long until the lock would accept, 0 when unknown.
	Wait time.Duration
}

func (e *BusyError) Error() string { return "simulator: " + e.Reason + ": " + hardware.ErrBusy.Error() }

// Unwrap returns hardware.ErrBusy.
func (e *BusyError) Unwrap() error { return hardware.ErrBusy }

// WatchdogRelock is the queued event of a board whose watchdog relocked
// everything.
const WatchdogRelock hardware.EventKind = "watchdog"

// RelockAll de-energises every lock of board b at once and stops a
// carousel move in progress (no slot at the hatch afterwards). With
// watchdog set it queues a WatchdogRelock event.
func (d *Device) RelockAll(b int, watchdog bool) error {
	d.mu.Lock()
	defer d.flush()
	defer d.mu.Unlock()
	if b < 0 || b >= len(d.boards) {
		return fmt.Errorf("board %d: %w", b, ErrNoSuchChannel)
	}
	bd := d.boards[b]
	now := d.clk.Now()
	for i, ch := range bd.channels {
		if ch.energised {
			d.springDueLocked(bd, b, i, ch, now)
			ch.energised = false
			ch.pulseGen++
			ch.cooldownTill = now.Add(d.opt.Cooldown)
		}
	}
	if bd.busy {
		bd.busy = false
		bd.moveGen++
		d.senseLocked(bd, 0)
	}
	if watchdog {
		d.emitLocked(Change{Kind: WatchdogRelock, Board: b, Channel: -1})
	}
	return nil
}
