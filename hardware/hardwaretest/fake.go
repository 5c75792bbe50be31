package hardwaretest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"kluis/hardware"
)

// The operations the fake records and FailNext can target.
const (
	OpDescribe = "describe"
	OpPulse    = "pulse"
	OpStates   = "states"
	OpWatch    = "watch"
	OpHalt     = "halt"
	OpClose    = "close"
	OpPresent  = "present"
	OpHatch    = "hatch"
)

// ErrInjected is the error FailNext uses when it is given nil.
var ErrInjected = errors.New("hardwaretest: injected failure")

// Options configure a Fake. Zero values get defaults.
type Options struct {
	// Kind is reported by Describe; default "fake".
	Kind string
	// Boards are the boards the fake pretends to have; default one board
	// at address 0 with 16 channels (and no slots).
	Boards []hardware.BoardInfo
	// Caps are reported by Describe. Caps.Mechanism is set automatically
	// when a board has Slots. Caps.CommandIDs makes a repeated id a
	// duplicate that is recorded but not pulsed again.
	Caps hardware.Capabilities
	// Clock stamps calls and injected events without a time; default
	// time.Now.
	Clock func() time.Time
	// OnPulse and OnPresent, when set, are called after every pulse or
	// present that was carried out (not failed, not a duplicate), outside
	// the fake's lock: they may call Inject, SetState and the like, e.g. to
	// open the door a pulse unlocked.
	OnPulse   func(Call)
	OnPresent func(Call)
}

// Call is one recorded call to the fake.
type Call struct {
	Op       string             `json:"op"`
	Addr     hardware.Address   `json:"addr"`
	Duration time.Duration      `json:"duration,omitempty"`
	ID       hardware.CommandID `json:"id,omitempty"`
	// Slot is the slot of a Present (Addr.Board is its board).
	Slot int `json:"slot,omitempty"`
	// Duplicate is true when the hardware would have ignored the call
	// because its command id was already carried out (Caps.CommandIDs).
	Duplicate bool `json:"duplicate,omitempty"`
	// Err is the error returned, "" for success.
	Err string    `json:"err,omitempty"`
	At  time.Time `json:"at"`
}

// Fake is a recording hardware.Driver and hardware.Mechanism. All methods are
// safe for concurrent use. The zero value is not usable; call New.
type Fake struct {
	kind   string
	boards []hardware.BoardInfo
	caps   hardware.Capabilities
	clock  func() time.Time
	hooks  map[string]func(Call)

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change
	calls    []Call
	states   map[hardware.Address]hardware.ChannelState
	hatches  map[int]hardware.HatchState
	queue    []hardware.Event
	acked    []hardware.Event
	seenIDs  map[hardware.CommandID]bool
	failNext map[string][]error
	boots    map[int]uint32
	bound    map[hardware.CommandID]uint32
	halted   bool
	closed   bool
	watching bool
	script   []Step
	scriptAt int
	scriptEr error
	recorded []Step
}

// New returns a fake with every channel locked, doors shut and no items.
func New(o Options) *Fake {
	if o.Kind == "" {
		o.Kind = "fake"
	}
	if len(o.Boards) == 0 {
		o.Boards = []hardware.BoardInfo{{Address: 0, Channels: 16}}
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	f := &Fake{
		kind:     o.Kind,
		boards:   append([]hardware.BoardInfo(nil), o.Boards...),
		caps:     o.Caps,
		clock:    o.Clock,
		changed:  make(chan struct{}),
		states:   map[hardware.Address]hardware.ChannelState{},
		hatches:  map[int]hardware.HatchState{},
		seenIDs:  map[hardware.CommandID]bool{},
		failNext: map[string][]error{},
		boots:    map[int]uint32{},
		bound:    map[hardware.CommandID]uint32{},
		hooks:    map[string]func(Call){OpPulse: o.OnPulse, OpPresent: o.OnPresent},
	}
	for _, b := range f.boards {
		for c := 0; c < b.Channels; c++ {
			a := hardware.Address{Board: b.Address, Channel: c}
			f.states[a] = hardware.ChannelState{Addr: a, Locked: true}
		}
		if b.Slots > 0 {
			f.caps.Mechanism = true
			f.hatches[b.Address] = hardware.HatchState{Locked: true, Slot: -1}
		}
	}
	return f
}

var (
	_ hardware.Driver    = (*Fake)(nil)
	_ hardware.Mechanism = (*Fake)(nil)
)

// notifyLocked wakes everybody waiting for a change. f.mu must be held.
func (f *Fake) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// begin records a call and returns the injected failure, if any, or the
// halted/closed error. f.mu must be held.
func (f *Fake) begin(c *Call) error {
	c.At = f.clock()
	var err error
	if errs := f.failNext[c.Op]; len(errs) > 0 {
		err = errs[0]
		f.failNext[c.Op] = errs[1:]
		if err == errPass {
			err = nil
			if f.closed {
				err = fmt.Errorf("fake %s: closed: %w", c.Op, hardware.ErrHalted)
			}
		}
	} else if f.closed {
		err = fmt.Errorf("fake %s: closed: %w", c.Op, hardware.ErrHalted)
	}
	return err
}

// finish stores the call with its outcome, advances the script and wakes
// waiters. f.mu must be held.
func (f *Fake) finish(c Call, err error) error {
	if err != nil {
		c.Err = err.Error()
	}
	f.calls = append(f.calls, c)
	if c.Op == OpPulse || c.Op == OpPresent {
		cc := c
		f.recorded = append(f.recorded, Step{Expect: &cc})
		f.matchScriptLocked(c)
	}
	f.notifyLocked()
	return err
}

func (f *Fake) board(n int) (hardware.BoardInfo, bool) {
	for _, b := range f.boards {
		if b.Address == n {
			return b, true
		}
	}
	return hardware.BoardInfo{}, false
}

func (f *Fake) checkAddr(a hardware.Address) error {
	if err := a.Validate(); err != nil {
		return err
	}
	b, ok := f.board(a.Board)
	if !ok {
		return fmt.Errorf("fake: no board %d: %w", a.Board, hardware.ErrOutOfRange)
	}
	if a.Channel >= b.Channels {
		return fmt.Errorf("fake: board %d has %d channels, not %d: %w", a.Board, b.Channels, a.Channel+1, hardware.ErrOutOfRange)
	}
	return nil
}

// Describe reports the configured kind, boards and capabilities.
func (f *Fake) Describe(ctx context.Context) (hardware.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := Call{Op: OpDescribe, Addr: hardware.Address{Channel: -1}}
	if err := f.begin(&c); err != nil {
		return hardware.Info{}, f.finish(c, err)
	}
	info := hardware.Info{Kind: f.kind, Boards: append([]hardware.BoardInfo(nil), f.boards...), Caps: f.caps}
	return info, f.finish(c, nil)
}

// Pulse records the pulse. It fails on a bad address, after Halt or Close,
// or when FailNext(OpPulse) was called; a failed pulse was not carried out.
func (f *Fake) Pulse(ctx context.Context, addr hardware.Address, d time.Duration, id hardware.CommandID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return f.hooked(func() error { return f.pulseLocked(addr, d, id) })
}

// hooked runs op under the lock and then, outside it, the hook of the call
// op recorded (finish records exactly one) if it was carried out.
func (f *Fake) hooked(op func() error) error {
	f.mu.Lock()
	err := op()
	c := f.calls[len(f.calls)-1]
	f.mu.Unlock()
	if err == nil && !c.Duplicate {
		if h := f.hooks[c.Op]; h != nil {
			h(c)
		}
	}
	return err
}

func (f *Fake) pulseLocked(addr hardware.Address, d time.Duration, id hardware.CommandID) error {
	c := Call{Op: OpPulse, Addr: addr, Duration: d, ID: id}
	if err := f.begin(&c); err != nil {
		return f.finish(c, err)
	}
	if err := f.checkAddr(addr); err != nil {
		return f.finish(c, err)
	}
	if d <= 0 {
		return f.finish(c, fmt.Errorf("fake: pulse duration %v must be positive: %w", d, hardware.ErrOutOfRange))
	}
	if f.halted {
		return f.finish(c, fmt.Errorf("fake pulse %s: %w", addr, hardware.ErrHalted))
	}
	if f.caps.CommandIDs && id != 0 {
		if f.seenIDs[id] {
			c.Duplicate = true
		}
		f.seenIDs[id] = true
	}
	return f.finish(c, nil)
}

// States returns every channel's state, sorted by board and channel.
func (f *Fake) States(ctx context.Context) ([]hardware.ChannelState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := Call{Op: OpStates, Addr: hardware.Address{Channel: -1}}
	if err := f.begin(&c); err != nil {
		return nil, f.finish(c, err)
	}
	out := make([]hardware.ChannelState, 0, len(f.states))
	for _, s := range f.states {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Addr.Board != out[j].Addr.Board {
			return out[i].Addr.Board < out[j].Addr.Board
		}
		return out[i].Addr.Channel < out[j].Addr.Channel
	})
	return out, f.finish(c, nil)
}

// Watch hands queued events to fn in order until ctx ends. An event leaves
// the queue only when fn returned nil; when fn fails, Watch returns that
// error and the event stays first in line for the next Watch. Only one Watch
// runs at a time; a second concurrent one fails with hardware.ErrBusy.
func (f *Fake) Watch(ctx context.Context, fn func(hardware.Event) error) error {
	f.mu.Lock()
	c := Call{Op: OpWatch, Addr: hardware.Address{Channel: -1}}
	if err := f.begin(&c); err != nil {
		err = f.finish(c, err)
		f.mu.Unlock()
		return err
	}
	if f.watching {
		err := f.finish(c, fmt.Errorf("fake: watch already running: %w", hardware.ErrBusy))
		f.mu.Unlock()
		return err
	}
	f.watching = true
	_ = f.finish(c, nil)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.watching = false
		f.mu.Unlock()
	}()
	for {
		f.mu.Lock()
		closed := f.closed
		var ev hardware.Event
		have := len(f.queue) > 0
		if have {
			ev = f.queue[0]
		}
		changed := f.changed
		f.mu.Unlock()
		if closed {
			return fmt.Errorf("fake watch: closed: %w", hardware.ErrHalted)
		}
		if !have {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-changed:
				continue
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(ev); err != nil {
			return err
		}
		f.mu.Lock()
		// The head is still ev: only Watch removes events and only one runs.
		f.queue = f.queue[1:]
		f.acked = append(f.acked, ev)
		f.notifyLocked()
		f.mu.Unlock()
	}
}

// Halt records the call, marks every lock de-energised and refuses further
// pulses and presents until Resume.
func (f *Fake) Halt() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := Call{Op: OpHalt, Addr: hardware.Address{Channel: -1}}
	if errs := f.failNext[OpHalt]; len(errs) > 0 {
		f.failNext[OpHalt] = errs[1:]
		if errs[0] != errPass {
			c.At = f.clock()
			return f.finish(c, errs[0])
		}
	}
	c.At = f.clock()
	f.halted = true
	return f.finish(c, nil)
}

// Resume lets a halted fake accept pulses again (a test helper: real
// drivers are constructed anew).
func (f *Fake) Resume() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.halted = false
	f.notifyLocked()
}

// Halted reports whether Halt was called (and not undone by Resume).
func (f *Fake) Halted() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.halted
}

// Close halts and makes every later call fail with hardware.ErrHalted. It is
// safe to call more than once.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := Call{Op: OpClose, Addr: hardware.Address{Channel: -1}, At: f.clock()}
	f.halted = true
	f.closed = true
	return f.finish(c, nil)
}

// Closed reports whether Close was called.
func (f *Fake) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// Present records the command and marks the board's mechanism busy. The
// test completes it with CompletePresent or FaultPresent (or a Script).
func (f *Fake) Present(ctx context.Context, board, slot int, id hardware.CommandID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return f.hooked(func() error { return f.presentLocked(board, slot, id) })
}

func (f *Fake) presentLocked(board, slot int, id hardware.CommandID) error {
	c := Call{Op: OpPresent, Addr: hardware.Address{Board: board, Channel: -1}, Slot: slot, ID: id}
	if err := f.begin(&c); err != nil {
		return f.finish(c, err)
	}
	b, ok := f.board(board)
	if !ok || b.Slots == 0 {
		return f.finish(c, fmt.Errorf("fake: board %d has no mechanism: %w", board, hardware.ErrUnsupported))
	}
	if slot < 0 || slot >= b.Slots {
		return f.finish(c, fmt.Errorf("fake: slot %d out of range 0-%d: %w", slot, b.Slots-1, hardware.ErrOutOfRange))
	}
	if f.halted {
		return f.finish(c, fmt.Errorf("fake present: %w", hardware.ErrHalted))
	}
	if f.caps.CommandIDs && id != 0 {
		if f.seenIDs[id] {
			c.Duplicate = true
			return f.finish(c, nil)
		}
		f.seenIDs[id] = true
	}
	h := f.hatches[board]
	if h.Fault {
		return f.finish(c, fmt.Errorf("fake present: %w", hardware.ErrFault))
	}
	if h.Busy {
		return f.finish(c, fmt.Errorf("fake present: mechanism moving: %w", hardware.ErrBusy))
	}
	h.Busy = true
	f.hatches[board] = h
	return f.finish(c, nil)
}

// Hatch returns the hatch state of board.
func (f *Fake) Hatch(ctx context.Context, board int) (hardware.HatchState, error) {
	if err := ctx.Err(); err != nil {
		return hardware.HatchState{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := Call{Op: OpHatch, Addr: hardware.Address{Board: board, Channel: -1}}
	if err := f.begin(&c); err != nil {
		return hardware.HatchState{}, f.finish(c, err)
	}
	h, ok := f.hatches[board]
	if !ok {
		return hardware.HatchState{}, f.finish(c, fmt.Errorf("fake: board %d has no mechanism: %w", board, hardware.ErrUnsupported))
	}
	return h, f.finish(c, nil)
}

// CompletePresent ends a Present on board: the mechanism stops with slot at
// the hatch and a SlotPresented event is queued.
func (f *Fake) CompletePresent(board, slot int) {
	f.mu.Lock()
	h := f.hatches[board]
	h.Busy = false
	h.Slot = slot
	f.hatches[board] = h
	f.mu.Unlock()
	f.Inject(hardware.Event{Kind: hardware.SlotPresented, Addr: hardware.Address{Board: board, Channel: -1}, Slot: slot})
}

// FaultPresent ends a Present on board with a mechanism fault and queues a
// MechanismFault event with detail.
func (f *Fake) FaultPresent(board int, detail string) {
	f.mu.Lock()
	h := f.hatches[board]
	h.Busy = false
	h.Fault = true
	f.hatches[board] = h
	f.mu.Unlock()
	f.Inject(hardware.Event{Kind: hardware.MechanismFault, Addr: hardware.Address{Board: board, Channel: -1}, Detail: detail})
}

// SetState replaces the state of s.Addr. Unknown addresses are added.
func (f *Fake) SetState(s hardware.ChannelState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states[s.Addr] = s
	sc := s
	f.recorded = append(f.recorded, Step{State: &sc})
	f.notifyLocked()
}

// State returns the current state of addr and whether it exists.
func (f *Fake) State(addr hardware.Address) (hardware.ChannelState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.states[addr]
	return s, ok
}

// SetHatch replaces the hatch state of board.
func (f *Fake) SetHatch(board int, h hardware.HatchState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hatches[board] = h
	f.notifyLocked()
}

// Inject queues an event for Watch. A zero At is stamped with the clock.
func (f *Fake) Inject(ev hardware.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.injectLocked(ev)
}

func (f *Fake) injectLocked(ev hardware.Event) {
	if ev.At.IsZero() {
		ev.At = f.clock()
	}
	f.queue = append(f.queue, ev)
	evc := ev
	f.recorded = append(f.recorded, Step{Event: &evc})
	f.notifyLocked()
}

// Boot implements hardware.BootBinder: the boot id SetBoot gave board, 0
// when none.
func (f *Fake) Boot(board int) uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.boots[board]
}

// SetBoot sets the boot id Boot reports for board.
func (f *Fake) SetBoot(board int, boot uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.boots[board] = boot
}

// BindBoot implements hardware.BootBinder by recording the binding (Bound
// reads it); the fake does not act on it.
func (f *Fake) BindBoot(board int, id hardware.CommandID, boot uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if boot != 0 {
		f.bound[id] = boot
	}
}

// Bound returns the boot id BindBoot bound id to.
func (f *Fake) Bound(id hardware.CommandID) (uint32, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.bound[id]
	return b, ok
}

// FailNext makes the next call of op (one of the Op constants) return err,
// or ErrInjected when err is nil. Calls queue up: FailNext twice fails the
// next two calls.
func (f *Fake) FailNext(op string, err error) {
	if err == nil {
		err = ErrInjected
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext[op] = append(f.failNext[op], err)
}

// errPass marks a call queued by SucceedNext.
var errPass = errors.New("hardwaretest: pass")

// SucceedNext queues one call of op that works normally among the
// failures FailNext queued: FailNext, SucceedNext, FailNext fails the next
// call, lets the one after it through and fails the third (a noisy line
// that answers once in a while).
func (f *Fake) SucceedNext(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext[op] = append(f.failNext[op], errPass)
}

// Calls returns a copy of every recorded call, in order.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

func (f *Fake) filter(op string) []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Call
	for _, c := range f.calls {
		if c.Op == op && c.Err == "" && !c.Duplicate {
			out = append(out, c)
		}
	}
	return out
}

// Pulses returns the pulses that were carried out: successful and not
// duplicates.
func (f *Fake) Pulses() []Call { return f.filter(OpPulse) }

// Presents returns the presents that were carried out.
func (f *Fake) Presents() []Call { return f.filter(OpPresent) }

// PulseCount returns how many pulses addr received.
func (f *Fake) PulseCount(addr hardware.Address) int {
	n := 0
	for _, c := range f.Pulses() {
		if c.Addr == addr {
			n++
		}
	}
	return n
}

// Pending returns the events not yet acknowledged by a Watch callback.
func (f *Fake) Pending() []hardware.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]hardware.Event(nil), f.queue...)
}

// Acked returns the events a Watch callback accepted, in order.
func (f *Fake) Acked() []hardware.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]hardware.Event(nil), f.acked...)
}

// WaitFor blocks until cond (called with the fake's lock released) returns
// true or ctx ends.
func (f *Fake) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		f.mu.Lock()
		ch := f.changed
		f.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// WaitPulses blocks until at least n pulses were carried out or ctx ends,
// and returns them.
func (f *Fake) WaitPulses(ctx context.Context, n int) ([]Call, error) {
	err := f.WaitFor(ctx, func() bool { return len(f.Pulses()) >= n })
	return f.Pulses(), err
}

// WaitAcked blocks until at least n events were acknowledged or ctx ends,
// and returns them.
func (f *Fake) WaitAcked(ctx context.Context, n int) ([]hardware.Event, error) {
	err := f.WaitFor(ctx, func() bool { return len(f.Acked()) >= n })
	return f.Acked(), err
}
