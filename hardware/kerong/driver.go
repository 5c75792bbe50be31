package kerong

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"kluis/controller/promtext"
	"kluis/hardware"
	"kluis/hardware/internal/evqueue"
)

// Kind is the driver kind reported by Describe.
const Kind = "kerong-cu16"

// ErrUncertain is wrapped (together with the cause, usually
// hardware.ErrTimeout) when an unlock's answer was lost and the status read
// afterwards does not show the lock open: the pulse may or may not have
// happened. The driver never retransmits it; upper layers should alarm.
var ErrUncertain = errors.New("kerong: unlock outcome uncertain")

// Options configure a Driver. Zero values get defaults.
type Options struct {
	// Port is the serial device path, e.g. /dev/ttyUSB0.
	Port string
	// Baud defaults to 19200 (8N1).
	Baud int
	// Boards are the board addresses (0-15) on the bus; default [0].
	Boards []int
	// PollInterval is how often Watch reads every board; default 200 ms.
	PollInterval time.Duration
	// Timeout bounds the wait for one answer; default 300 ms.
	Timeout time.Duration
	// Retries is how many times a status request is repeated after a lost
	// answer before the board counts as offline; default 2, negative for
	// none. Unlocks are never repeated.
	Retries int
	// OpenBitSet and OpenBitClear choose the polarity of the lock feedback
	// bit, about which published notes disagree. By default (neither set)
	// and with OpenBitSet a set bit means the door/lock is open, as the
	// Kluis simulator's Kerong boards report; OpenBitClear means a set bit
	// is closed. Setting both is an error.
	OpenBitSet   bool
	OpenBitClear bool
	// NoItemSensor: the IR inputs are not wired; ItemPresent stays false
	// and no item events are derived.
	NoItemSensor bool
	// Logger defaults to a discarding logger.
	Logger *slog.Logger
	// Registry receives the driver's metrics; default a private registry.
	Registry promtext.Registerer
	// Clock stamps events; default time.Now.
	Clock func() time.Time
	// Open opens the port; default OpenSerial.
	Open OpenFunc
	// QueueLimit bounds the events waiting for Watch; default 4096. When
	// full, the oldest is dropped and counted.
	QueueLimit int
}

type boardLink int

const (
	linkUnknown boardLink = iota
	linkOnline
	linkOffline
)

type metrics struct {
	frames   *promtext.CounterVec
	timeouts *promtext.Counter
	unlocks  *promtext.CounterVec
	reopens  *promtext.Counter
	dropped  *promtext.Counter
	online   *promtext.GaugeVec
}

func newMetrics(reg promtext.Registerer, bus string) (*metrics, error) {
	cl := promtext.Labels{"bus": bus}
	m := &metrics{
		frames: promtext.NewCounterVec(promtext.CounterOpts{Name: "kluis_kerong_frames_total",
			Help: "Frames read from Kerong boards by result (ok, garbage, unknown_command, framing, checksum, truncated, unexpected).", ConstLabels: cl}, []string{"result"}),
		timeouts: promtext.NewCounter(promtext.CounterOpts{Name: "kluis_kerong_timeouts_total",
			Help: "Requests to Kerong boards that got no answer in time.", ConstLabels: cl}),
		unlocks: promtext.NewCounterVec(promtext.CounterOpts{Name: "kluis_kerong_unlocks_total",
			Help: "Unlock commands by outcome (ok, confirmed_by_status, uncertain, not_sent).", ConstLabels: cl}, []string{"result"}),
		reopens: promtext.NewCounter(promtext.CounterOpts{Name: "kluis_kerong_port_reopens_total",
			Help: "Times the serial port was (re)opened.", ConstLabels: cl}),
		dropped: promtext.NewCounter(promtext.CounterOpts{Name: "kluis_kerong_events_dropped_total",
			Help: "Events dropped because the queue for Watch was full.", ConstLabels: cl}),
		online: promtext.NewGaugeVec(promtext.GaugeOpts{Name: "kluis_kerong_board_online",
			Help: "1 when the board answered its last status request.", ConstLabels: cl}, []string{"board"}),
	}
	for _, c := range []promtext.Collector{m.frames, m.timeouts, m.unlocks, m.reopens, m.dropped, m.online} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("kerong: register metrics: %w", err)
		}
	}
	return m, nil
}

// Driver drives Kerong KR-CU16 compatible boards on one serial line. It
// implements hardware.Driver.
type Driver struct {
	o   Options
	log *slog.Logger
	m   *metrics

	lineMu sync.Mutex // serialises the line; guards port, rd, dl
	port   Port
	dl     *deadlineReader
	rd     *Reader

	events *evqueue.Queue // for Watch

	mu     sync.Mutex // guards the fields below
	last   map[int]Status
	link   map[int]boardLink
	halted bool
	closed bool
}

var _ hardware.Driver = (*Driver)(nil)

// New checks o, fills defaults and returns a driver. The port is opened on
// first use (and reopened after it failed), so New does not touch it.
func New(o Options) (*Driver, error) {
	if o.Port == "" && o.Open == nil {
		return nil, errors.New("kerong: Options.Port is empty")
	}
	if o.OpenBitSet && o.OpenBitClear {
		return nil, errors.New("kerong: OpenBitSet and OpenBitClear contradict each other")
	}
	o.OpenBitSet = !o.OpenBitClear
	if o.Baud == 0 {
		o.Baud = 19200
	}
	if len(o.Boards) == 0 {
		o.Boards = []int{0}
	}
	seen := map[int]bool{}
	for _, b := range o.Boards {
		if b < 0 || b >= MaxBoards {
			return nil, fmt.Errorf("kerong: board %d out of range 0-15: %w", b, hardware.ErrOutOfRange)
		}
		if seen[b] {
			return nil, fmt.Errorf("kerong: board %d listed twice", b)
		}
		seen[b] = true
	}
	o.Boards = append([]int(nil), o.Boards...)
	sort.Ints(o.Boards)
	if o.PollInterval <= 0 {
		o.PollInterval = 200 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = 300 * time.Millisecond
	}
	if o.Retries == 0 {
		o.Retries = 2
	} else if o.Retries < 0 {
		o.Retries = 0
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = promtext.NewRegistry()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Open == nil {
		o.Open = OpenSerial
	}
	if o.QueueLimit <= 0 {
		o.QueueLimit = 4096
	}
	m, err := newMetrics(o.Registry, o.Port)
	if err != nil {
		return nil, err
	}
	d := &Driver{
		o:    o,
		log:  o.Logger.With("part", "kerong", "port", o.Port),
		m:    m,
		last: map[int]Status{},
		link: map[int]boardLink{},
	}
	d.events = evqueue.New("kerong", o.QueueLimit, func() {
		m.dropped.Inc()
		d.log.Warn("event queue full, dropped the oldest event")
	})
	return d, nil
}

// Stats returns the decoding counts of the current port's reader (reset when
// the port is reopened).
func (d *Driver) Stats() Stats {
	d.lineMu.Lock()
	defer d.lineMu.Unlock()
	if d.rd == nil {
		return Stats{}
	}
	return d.rd.Stats()
}

func (d *Driver) hasBoard(b int) bool {
	for _, x := range d.o.Boards {
		if x == b {
			return true
		}
	}
	return false
}

// openLocked opens the port if it is not open. d.lineMu must be held.
func (d *Driver) openLocked() error {
	if d.port != nil {
		return nil
	}
	p, err := d.o.Open(d.o.Port, d.o.Baud)
	if err != nil {
		return err
	}
	d.port = p
	d.dl = &deadlineReader{p: p, now: time.Now}
	d.rd = NewReader(d.dl, FromBoard)
	d.rd.OnError = d.countDecodeError
	d.m.reopens.Inc()
	d.log.Info("port opened")
	return nil
}

// dropPortLocked closes a port that failed, so the next request reopens
// it. d.lineMu must be held.
func (d *Driver) dropPortLocked(cause error) {
	if d.port == nil {
		return
	}
	d.log.Warn("port failed, will reopen", "err", cause)
	_ = d.port.Close()
	d.port = nil
}

func (d *Driver) countDecodeError(err error) {
	r := "garbage"
	switch {
	case errors.Is(err, ErrUnknownCommand):
		r = "unknown_command"
	case errors.Is(err, ErrFraming):
		r = "framing"
	case errors.Is(err, ErrChecksum):
		r = "checksum"
	}
	d.m.frames.WithLabelValues(r).Inc()
	d.log.Debug("skipped bad bytes", "err", err)
}

// errNotSent marks a request that certainly did not reach the line.
var errNotSent = errors.New("kerong: request not sent")

// txnLocked sends req once and waits for the first frame that match
// accepts; other frames are counted as unexpected and skipped. d.lineMu
// must be held. An error wrapping errNotSent means nothing was written.
func (d *Driver) txnLocked(ctx context.Context, req Frame, match func(Frame) bool) (Frame, error) {
	if err := ctx.Err(); err != nil {
		return Frame{}, fmt.Errorf("%w: %w", errNotSent, err)
	}
	if err := d.openLocked(); err != nil {
		return Frame{}, fmt.Errorf("%w: %w", errNotSent, err)
	}
	// A late answer to an earlier request must not pass for this one's.
	if err := d.port.ResetInputBuffer(); err != nil {
		d.dropPortLocked(err)
		return Frame{}, fmt.Errorf("%w: reset input: %w", errNotSent, err)
	}
	if n := d.rd.Reset(); n > 0 {
		// the start of a frame whose end never came
		d.m.frames.WithLabelValues("truncated").Inc()
		d.log.Debug("dropped a partial frame", "bytes", n)
	}
	raw := Encode(req)
	n, err := d.port.Write(raw)
	if err != nil || n != len(raw) {
		d.dropPortLocked(err)
		if n == 0 {
			return Frame{}, fmt.Errorf("%w: write: %w", errNotSent, err)
		}
		return Frame{}, fmt.Errorf("kerong: short write (%d of %d bytes): %w", n, len(raw), err)
	}
	deadline := time.Now().Add(d.o.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	d.dl.deadline = deadline
	for {
		f, err := d.rd.Next()
		if err != nil {
			if isTimeout(err) {
				d.m.timeouts.Inc()
				return Frame{}, fmt.Errorf("kerong: board %d: %w", req.Board(), err)
			}
			d.dropPortLocked(err)
			return Frame{}, fmt.Errorf("kerong: board %d: %w", req.Board(), err)
		}
		if match(f) {
			d.m.frames.WithLabelValues("ok").Inc()
			return f, nil
		}
		d.m.frames.WithLabelValues("unexpected").Inc()
		d.log.Debug("skipped unexpected frame", "addr", f.Addr, "cmd", f.Cmd)
	}
}

func isStatusOf(board int) func(Frame) bool {
	return func(f Frame) bool { return f.Cmd == CmdStatusReply && f.Board() == board && len(f.Data) == 4 }
}

// readStatus asks board for its status, repeating a lost answer up to
// Retries times. It records the status (deriving events) or marks the board
// offline.
func (d *Driver) readStatus(ctx context.Context, board int) (Status, error) {
	req, err := StatusFrame(board)
	if err != nil {
		return Status{}, err
	}
	var last error
	for try := 0; try <= d.o.Retries; try++ {
		if err := ctx.Err(); err != nil {
			return Status{}, err
		}
		d.lineMu.Lock()
		f, err := d.txnLocked(ctx, req, isStatusOf(board))
		d.lineMu.Unlock()
		if err == nil {
			st, perr := ParseStatus(f)
			if perr == nil {
				d.observe(board, st)
				return st, nil
			}
			err = perr
		}
		last = err
		if ctx.Err() != nil {
			return Status{}, ctx.Err()
		}
	}
	d.markOffline(board, last)
	return Status{}, fmt.Errorf("kerong: board %d unreachable after %d tries: %w", board, d.o.Retries+1, last)
}

// open reports whether the lock feedback says lock is open.
func (d *Driver) open(st Status, lock int) bool { return st.LockBit(lock) == d.o.OpenBitSet }

// queueLocked adds an event for Watch. d.mu is held by the callers, so
// events are queued in the order the driver saw them.
func (d *Driver) queueLocked(ev hardware.Event) {
	if ev.At.IsZero() {
		ev.At = d.o.Clock()
	}
	d.events.Push(ev)
}

// observe records a board's status and queues the events its changes mean.
func (d *Driver) observe(board int, st Status) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m.online.WithLabelValues(strconv.Itoa(board)).Set(1)
	if d.link[board] == linkOffline {
		d.log.Info("board back online", "board", board)
		d.queueLocked(hardware.Event{Kind: hardware.BoardOnline, Addr: hardware.Address{Board: board, Channel: -1}})
	}
	d.link[board] = linkOnline
	prev, had := d.last[board]
	d.last[board] = st
	if !had {
		return
	}
	for lock := 0; lock < Locks; lock++ {
		a := hardware.Address{Board: board, Channel: lock}
		if was, is := d.open(prev, lock), d.open(st, lock); was != is {
			k := hardware.DoorClosed
			if is {
				k = hardware.DoorOpened
			}
			d.queueLocked(hardware.Event{Kind: k, Addr: a})
		}
		if d.o.NoItemSensor {
			continue
		}
		if was, is := prev.IRBit(lock), st.IRBit(lock); was != is {
			k := hardware.ItemRemoved
			if is {
				k = hardware.ItemPlaced
			}
			d.queueLocked(hardware.Event{Kind: k, Addr: a})
		}
	}
}

func (d *Driver) markOffline(board int, cause error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m.online.WithLabelValues(strconv.Itoa(board)).Set(0)
	if d.link[board] == linkOffline {
		return
	}
	d.link[board] = linkOffline
	d.log.Warn("board offline", "board", board, "err", cause)
	d.queueLocked(hardware.Event{Kind: hardware.BoardOffline, Addr: hardware.Address{Board: board, Channel: -1},
		Detail: fmt.Sprintf("no answer after %d tries", d.o.Retries+1)})
}

func (d *Driver) caps() hardware.Capabilities {
	return hardware.Capabilities{
		CommandIDs: false,
		EventQueue: false,
		DoorSensor: true,
		ItemSensor: !d.o.NoItemSensor,
		TimedPulse: true,
	}
}

// Describe reads every configured board and lists those that answered. It
// fails only when none did.
func (d *Driver) Describe(ctx context.Context) (hardware.Info, error) {
	if err := d.usable(); err != nil {
		return hardware.Info{}, err
	}
	info := hardware.Info{Kind: Kind, Caps: d.caps()}
	var errs []error
	for _, b := range d.o.Boards {
		if _, err := d.readStatus(ctx, b); err != nil {
			errs = append(errs, err)
			continue
		}
		info.Boards = append(info.Boards, hardware.BoardInfo{Address: b, Channels: Locks})
	}
	if len(info.Boards) == 0 {
		return info, fmt.Errorf("kerong: no board answered: %w", errors.Join(errs...))
	}
	return info, nil
}

// States reads every board. When some boards do not answer it returns the
// states of the others together with an error naming the silent ones.
func (d *Driver) States(ctx context.Context) ([]hardware.ChannelState, error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	var out []hardware.ChannelState
	var errs []error
	for _, b := range d.o.Boards {
		st, err := d.readStatus(ctx, b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for lock := 0; lock < Locks; lock++ {
			open := d.open(st, lock)
			out = append(out, hardware.ChannelState{
				Addr:        hardware.Address{Board: b, Channel: lock},
				Locked:      !open,
				DoorOpen:    open,
				ItemPresent: !d.o.NoItemSensor && st.IRBit(lock),
			})
		}
	}
	return out, errors.Join(errs...)
}

func (d *Driver) usable() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("kerong: closed: %w", hardware.ErrHalted)
	}
	return nil
}

// Pulse sends one unlock command to addr. The board times the pulse itself
// with its configured unlock time; d is not sent (the board has no field
// for it) and must be positive.
//
// The unlock is sent exactly once. When its answer is lost the driver
// reads the board's status instead of retransmitting: a lock that reads
// open counts as unlocked (nil error); otherwise the error wraps
// ErrUncertain and the cause, and the caller should alarm rather than
// retry blindly. An error wrapping neither ErrUncertain nor a short write
// means nothing was sent.
func (d *Driver) Pulse(ctx context.Context, addr hardware.Address, dur time.Duration, _ hardware.CommandID) error {
	if err := addr.Validate(); err != nil {
		return err
	}
	if !d.hasBoard(addr.Board) || addr.Channel >= Locks {
		return fmt.Errorf("kerong: no lock %s on this bus: %w", addr, hardware.ErrOutOfRange)
	}
	if dur <= 0 {
		return fmt.Errorf("kerong: pulse duration %v must be positive: %w", dur, hardware.ErrOutOfRange)
	}
	req, err := UnlockFrame(addr.Board, addr.Channel)
	if err != nil {
		return fmt.Errorf("%w: %w", err, hardware.ErrOutOfRange)
	}
	d.lineMu.Lock()
	d.mu.Lock()
	halted, closed := d.halted, d.closed
	d.mu.Unlock()
	if halted || closed {
		d.lineMu.Unlock()
		d.m.unlocks.WithLabelValues("not_sent").Inc()
		return fmt.Errorf("kerong: pulse %s: %w", addr, hardware.ErrHalted)
	}
	f, err := d.txnLocked(ctx, req, func(f Frame) bool {
		return (f.Cmd == CmdUnlockReply && f.Addr == req.Addr && len(f.Data) == 1) ||
			(f.Cmd == CmdStatusReply && f.Board() == addr.Board && len(f.Data) == 4)
	})
	d.lineMu.Unlock()
	if errors.Is(err, errNotSent) {
		d.m.unlocks.WithLabelValues("not_sent").Inc()
		return fmt.Errorf("kerong: pulse %s not sent: %w", addr, err)
	}
	if err == nil {
		if f.Cmd == CmdStatusReply {
			if st, perr := ParseStatus(f); perr == nil {
				d.observe(addr.Board, st)
			}
		}
		d.m.unlocks.WithLabelValues("ok").Inc()
		d.unlocked(addr)
		return nil
	}
	// The unlock went out but its answer was lost: never send it again.
	// Read the status (a harmless, repeatable request) and decide.
	cause := err
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(d.o.Retries+1)*d.o.Timeout+time.Second)
	defer cancel()
	st, serr := d.readStatus(sctx, addr.Board)
	if serr == nil && d.open(st, addr.Channel) {
		d.log.Warn("unlock answer lost, status shows the lock open", "addr", addr.String())
		d.m.unlocks.WithLabelValues("confirmed_by_status").Inc()
		d.unlocked(addr)
		return nil
	}
	d.m.unlocks.WithLabelValues("uncertain").Inc()
	d.log.Error("unlock outcome uncertain, not retransmitted", "addr", addr.String(), "err", cause, "status_err", serr)
	if serr != nil {
		return fmt.Errorf("kerong: pulse %s: answer lost and status unreadable (%v): %w: %w", addr, serr, ErrUncertain, cause)
	}
	return fmt.Errorf("kerong: pulse %s: answer lost and lock reads closed: %w: %w", addr, ErrUncertain, cause)
}

func (d *Driver) unlocked(addr hardware.Address) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queueLocked(hardware.Event{Kind: hardware.Unlocked, Addr: addr})
}

// Watch reads every board each PollInterval, derives door, item and board
// events from the changes, and hands them with Unlocked events to fn in
// order. An event leaves the queue only when fn returned nil; fn's error
// stops Watch and the event is delivered again by the next Watch. Only one
// Watch runs at a time (hardware.ErrBusy otherwise). Watch returns
// ctx.Err() when ctx ends and an error wrapping hardware.ErrHalted after
// Close.
func (d *Driver) Watch(ctx context.Context, fn func(hardware.Event) error) error {
	return d.events.Watch(ctx, fn, evqueue.Poll{Every: d.o.PollInterval, Poll: d.poll})
}

// poll reads every board once; failures are recorded as offline boards.
func (d *Driver) poll(ctx context.Context) {
	for _, b := range d.o.Boards {
		if ctx.Err() != nil || d.usable() != nil {
			return
		}
		if _, err := d.readStatus(ctx, b); err != nil && ctx.Err() == nil {
			d.log.Debug("poll failed", "board", b, "err", err)
		}
	}
}

// Halt refuses every further unlock. Kerong boards time their pulses
// themselves, so no lock stays energised and nothing needs to be sent.
func (d *Driver) Halt() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.halted {
		d.log.Info("halted")
	}
	d.halted = true
	return nil
}

// Close halts and closes the port. It is safe to call more than once.
func (d *Driver) Close() error {
	_ = d.Halt()
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.events.Close()
	d.lineMu.Lock()
	defer d.lineMu.Unlock()
	if d.port == nil {
		return nil
	}
	err := d.port.Close()
	d.port = nil
	if err != nil {
		return fmt.Errorf("kerong: close: %w", err)
	}
	return nil
}
