// Package kluisbus drives Kluis lock boards on one RS485 line with the Kluis
// lock-board protocol (firmware-protocol.md, codec hardware/kluisproto). It
// implements hardware.Driver and, for automaton boards, hardware.Mechanism.
//
//	d, err := kluisbus.New(kluisbus.Options{Port: "/dev/ttyUSB0", Boards: []int{0, 1}})
//	defer d.Close()
//	err = d.Pulse(ctx, hardware.Address{Board: 0, Channel: 4}, 500*time.Millisecond, id)
//	err = d.Watch(ctx, func(ev hardware.Event) error { ... })
//
// Every exchange on the half-duplex line is serialised. A request that gets
// no answer, or an answer with a bad CRC, is sent again byte for byte, so an
// UNLOCK or PRESENT is retried with the same command id and the board never
// carries it out twice. Watch polls each board's event queue and
// acknowledges events only after the callback took them; it notices board
// reboots (boot id changes), offline boards and lost events (queue
// overflow), and re-reads the state then.
//
// Construct it from a device path: kluisbus.Open(path, baud, boards...) or
// kluisbus.New(Options{Port: path, ...}); the port is opened on first use
// and reopened (hardware/serialport) when the device goes away. Against a
// pseudo-terminal (the simulator), the side holding the master end should
// keep a descriptor of the slave end open: while none is, reads on the
// master fail with EIO.
//
// Frame errors (bad CRC, oversize, truncated, garbage, wrong address,
// unexpected or malformed replies, replies from an earlier boot of the
// board) are counted in
// kluis_kluisbus_frame_errors_total{kind} and by FrameErrors, and skipped;
// a malformed reply is logged too, the first of an episode and then at most
// a summary and one line a minute (internal/loglimit), however many a
// board's firmware sends; so are a refused EVENTS poll and an event of a
// kind this driver does not know (skipped and acknowledged).
package kluisbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"kluis/controller/promtext"
	"kluis/hardware"
	"kluis/hardware/kluisproto"
	"kluis/hardware/serialport"
	"kluis/internal/loglimit"
)

// Kind is the driver kind reported by Describe.
const Kind = "kluis"

// Port is the byte line to the boards. A Read that finds nothing before the
// read timeout must return an error wrapping hardware.ErrTimeout.
// *serialport.Port is one.
type Port interface {
	io.ReadWriteCloser
	// Flush drops bytes received but not yet read.
	Flush() error
	// SetReadTimeout bounds the next reads.
	SetReadTimeout(d time.Duration) error
}

// OpenFunc opens the port at path with baud, 8N1.
type OpenFunc func(path string, baud int) (Port, error)

// OpenSerial opens path with hardware/serialport (which reopens a device that
// went away).
func OpenSerial(path string, baud int) (Port, error) {
	p, err := serialport.Open(path, baud, serialport.Options{ReadTimeout: 10 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Options configure a Driver. Zero values get defaults.
type Options struct {
	// Port is the serial device path, e.g. /dev/ttyUSB0 or a pty.
	Port string
	// Baud defaults to 9600 (8N1).
	Baud int
	// Boards are the board addresses (0-31) on the bus; default [0].
	Boards []int
	// Timeout is the response timeout of one attempt; default 200 ms.
	Timeout time.Duration
	// Retries is how many times a request is sent again after no valid
	// answer; default 2 (3 attempts), negative for none.
	Retries int
	// PollInterval is the pause between two rounds of Watch over every
	// board; default 100 ms.
	PollInterval time.Duration
	// OfflineRetry is how often Watch tries a board that is offline;
	// default 2 s.
	OfflineRetry time.Duration
	// Watchdog is set on every board when Watch first reaches it and
	// after it rebooted: a board hearing nothing for this long relocks
	// everything. Default 10 s; negative leaves the board's own default.
	// Whole seconds, 1-255.
	Watchdog time.Duration
	// Logger defaults to a discarding logger.
	Logger *slog.Logger
	// Registry receives the driver's metrics; default a private registry.
	Registry promtext.Registerer
	// Clock stamps events and times the retries of offline boards
	// (OfflineRetry); default time.Now. Line timing (timeouts, gaps, the
	// pause between Watch rounds) uses real time.
	Clock func() time.Time
	// Open opens the port; default OpenSerial. The port is opened on first
	// use, not by New.
	Open OpenFunc
}

type boardLink int

const (
	linkUnknown boardLink = iota
	linkOnline
	linkOffline
)

// board is what the driver knows about one board; guarded by Driver.mu.
type board struct {
	addr     int
	link     boardLink
	info     kluisproto.InfoReply
	haveInfo bool
	bootID   uint32
	haveBoot bool
	// delivered is the last sequence number handed to Watch's callback
	// under bootID (0: none yet).
	delivered uint32
	// state is the last known state, kept up to date by events, used to
	// find what changed unseen across a reboot or a queue overflow.
	state     kluisproto.StatusReply
	haveState bool
	// resync: a reboot or overflow was seen; Watch must set the watchdog
	// and compare the state.
	resync bool
	// dropNoop: a re-read of the state reported changes in this boot, so a
	// door, item or hatch event that changes nothing repeats one of them.
	dropNoop bool
	// watchdogSet: WATCHDOG was set in this boot.
	watchdogSet bool
	nextTry     time.Time
	// bootCheck: the board's INFO advertised CapBootCheck (kept across a
	// reboot; a refusal of the longer form clears it).
	bootCheck bool
	// sent binds the UNLOCK and PRESENT command ids that may have been
	// carried out to the boot id they were sent to (firmware-protocol.md
	// 4.3.1), the most recent sentMax of them; sentOrder is their order.
	sent      map[uint32]uint32
	sentOrder []uint32
	// pastBoots are the board's boot ids before bootID, the most recent
	// pastBootsMax, forgotten when it goes offline (a swapped board may
	// count boots from anywhere). A board never starts again in one of
	// them, so a reply carrying one is a stale or replayed frame, once
	// bootID is confirmed (bootReplies).
	pastBoots []uint32
	// bootReplies counts the replies that carried bootID (up to 2). One
	// alone may be a frame of another boot the driver never saw (from
	// before it started, or damaged with a CRC that still matches): until
	// a second confirms it, a reply in an earlier boot id is taken for a
	// reboot back, not skipped, else the board's every genuine reply was
	// skipped until it was given up for offline.
	bootReplies int
}

// pastBootsMax is how many earlier boot ids of a board are kept.
const pastBootsMax = 8

// sentMax is how many command ids a board's binding keeps: more than the
// board remembers (kluisproto.IDCacheSize) and more than an operation's
// retries need.
const sentMax = 256

type metrics struct {
	frameErrors *promtext.CounterVec
	frames      *promtext.Counter
	timeouts    *promtext.Counter
	retries     *promtext.Counter
	unlocks     *promtext.CounterVec
	events      *promtext.Counter
	reboots     *promtext.Counter
	online      *promtext.GaugeVec
}

// Frame error kinds counted in kluis_kluisbus_frame_errors_total{kind}.
const (
	ErrKindBadCRC       = "bad_crc"
	ErrKindOversize     = "oversize"
	ErrKindTruncated    = "truncated"
	ErrKindGarbage      = "garbage"
	ErrKindWrongAddress = "wrong_address"
	ErrKindUnexpected   = "unexpected"
	ErrKindMalformed    = "malformed"
	// ErrKindStaleBoot: a good reply carrying a boot id the board had
	// before its current one (a late or replayed frame), skipped rather
	// than taken for a reboot back.
	ErrKindStaleBoot = "stale_boot"
)

func newMetrics(reg promtext.Registerer, bus string) (*metrics, error) {
	cl := promtext.Labels{"bus": bus}
	m := &metrics{
		frameErrors: promtext.NewCounterVec(promtext.CounterOpts{Name: "kluis_kluisbus_frame_errors_total",
			Help: "Bad input on the Kluis bus by kind (bad_crc, oversize, truncated, garbage, wrong_address, unexpected, malformed, stale_boot); all skipped.", ConstLabels: cl}, []string{"kind"}),
		frames: promtext.NewCounter(promtext.CounterOpts{Name: "kluis_kluisbus_frames_total",
			Help: "Valid frames received on the Kluis bus.", ConstLabels: cl}),
		timeouts: promtext.NewCounter(promtext.CounterOpts{Name: "kluis_kluisbus_timeouts_total",
			Help: "Attempts that got no valid answer in time.", ConstLabels: cl}),
		retries: promtext.NewCounter(promtext.CounterOpts{Name: "kluis_kluisbus_retries_total",
			Help: "Requests sent again (same bytes, same command id).", ConstLabels: cl}),
		unlocks: promtext.NewCounterVec(promtext.CounterOpts{Name: "kluis_kluisbus_unlocks_total",
			Help: "UNLOCK commands by result (ok, repeat, nak, timeout).", ConstLabels: cl}, []string{"result"}),
		events: promtext.NewCounter(promtext.CounterOpts{Name: "kluis_kluisbus_events_total",
			Help: "Board events delivered and acknowledged.", ConstLabels: cl}),
		reboots: promtext.NewCounter(promtext.CounterOpts{Name: "kluis_kluisbus_board_reboots_total",
			Help: "Board reboots detected (boot id changed).", ConstLabels: cl}),
		online: promtext.NewGaugeVec(promtext.GaugeOpts{Name: "kluis_kluisbus_board_online",
			Help: "1 when the board answered its last request, 0 when it is offline.", ConstLabels: cl}, []string{"board"}),
	}
	for _, c := range []promtext.Collector{m.frameErrors, m.frames, m.timeouts, m.retries, m.unlocks, m.events, m.reboots, m.online} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("kluisbus: register metrics: %w", err)
		}
	}
	for _, k := range []string{ErrKindBadCRC, ErrKindOversize, ErrKindTruncated, ErrKindGarbage, ErrKindWrongAddress, ErrKindUnexpected, ErrKindMalformed, ErrKindStaleBoot} {
		m.frameErrors.WithLabelValues(k)
	}
	return m, nil
}

// Driver drives Kluis boards on one serial line.
type Driver struct {
	o   Options
	log *slog.Logger
	m   *metrics
	// warn logs what a board's firmware can repeat on every exchange (a
	// malformed reply): the first of an episode, then at most one summary
	// and one line a minute; the metrics count every one.
	warn *loglimit.Limiter

	lineMu sync.Mutex // serialises the line; guards port, dec, lastRx, relocked, errCounts
	port   Port
	dec    kluisproto.Decoder
	lastRx time.Time
	buf    [256]byte
	// relocked holds the boards that acknowledged RELOCK_ALL with no other
	// frame written to the line since: Close need not relock them again.
	relocked map[int]bool

	cmu       sync.Mutex // guards errCounts (read by FrameErrors without the line)
	errCounts map[string]uint64

	mu       sync.Mutex // guards the fields below
	boards   map[int]*board
	pending  []hardware.Event // driver-made events waiting for Watch
	halted   bool
	closed   bool
	watching bool
}

var (
	_ hardware.Driver    = (*Driver)(nil)
	_ hardware.Mechanism = (*Driver)(nil)
)

// New checks o, fills defaults and returns a driver. The port is opened on
// first use (and reopened after it failed), so New does not touch it.
func New(o Options) (*Driver, error) {
	if o.Port == "" && o.Open == nil {
		return nil, errors.New("kluisbus: Options.Port is empty")
	}
	if o.Baud == 0 {
		o.Baud = 9600
	}
	if len(o.Boards) == 0 {
		o.Boards = []int{0}
	}
	seen := map[int]bool{}
	for _, b := range o.Boards {
		if b < 0 || b > kluisproto.MaxAddr {
			return nil, fmt.Errorf("kluisbus: board %d out of range 0-%d: %w", b, kluisproto.MaxAddr, hardware.ErrOutOfRange)
		}
		if seen[b] {
			return nil, fmt.Errorf("kluisbus: board %d listed twice", b)
		}
		seen[b] = true
	}
	o.Boards = append([]int(nil), o.Boards...)
	sort.Ints(o.Boards)
	if o.Timeout <= 0 {
		o.Timeout = 200 * time.Millisecond
	}
	if o.Retries == 0 {
		o.Retries = 2
	} else if o.Retries < 0 {
		o.Retries = 0
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	if o.OfflineRetry <= 0 {
		o.OfflineRetry = 2 * time.Second
	}
	if o.Watchdog == 0 {
		o.Watchdog = 10 * time.Second
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
	m, err := newMetrics(o.Registry, o.Port)
	if err != nil {
		return nil, err
	}
	log := o.Logger.With("part", "kluisbus", "port", o.Port)
	d := &Driver{
		o:         o,
		log:       log,
		m:         m,
		warn:      loglimit.New(log, 1, badReplyLogWindow, o.Clock),
		boards:    map[int]*board{},
		errCounts: map[string]uint64{},
		relocked:  map[int]bool{},
	}
	for _, b := range o.Boards {
		d.boards[b] = &board{addr: b}
	}
	d.dec.OnError = func(err error) {
		switch err {
		case kluisproto.ErrBadCRC:
			d.countErr(ErrKindBadCRC)
		case kluisproto.ErrOversize:
			d.countErr(ErrKindOversize)
		case kluisproto.ErrTruncated:
			d.countErr(ErrKindTruncated)
		case kluisproto.ErrNoStart:
			d.countErr(ErrKindGarbage)
		}
	}
	return d, nil
}

// Open is New with a port path, a baud rate (0 for 9600) and the board
// addresses (none for [0]), the other options at their defaults.
func Open(path string, baud int, boards ...int) (*Driver, error) {
	return New(Options{Port: path, Baud: baud, Boards: boards})
}

// badReplyLogWindow is how often at most a board's malformed replies are
// logged (a summary and one line), however many arrive.
const badReplyLogWindow = time.Minute

func (d *Driver) countErr(kind string) {
	d.m.frameErrors.WithLabelValues(kind).Inc()
	d.cmu.Lock()
	d.errCounts[kind]++
	d.cmu.Unlock()
}

// FrameErrors returns the counts of bad input seen so far by kind (the
// ErrKind* names), the same numbers as the kluis_kluisbus_frame_errors_total
// counter.
func (d *Driver) FrameErrors() map[string]uint64 {
	d.cmu.Lock()
	defer d.cmu.Unlock()
	out := make(map[string]uint64, len(d.errCounts))
	for k, v := range d.errCounts {
		out[k] = v
	}
	return out
}

func (d *Driver) usable() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("kluisbus: closed: %w", hardware.ErrHalted)
	}
	return nil
}

func (d *Driver) board(b int) (*board, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	bd, ok := d.boards[b]
	if !ok {
		return nil, fmt.Errorf("kluisbus: board %d is not on this bus: %w", b, hardware.ErrOutOfRange)
	}
	return bd, nil
}

// ---- the line ----

// interFrameGap is the silence the master keeps between a reply (or a
// timeout) and its next request: max(2 ms, 3.5 characters).
func (d *Driver) interFrameGap() time.Duration {
	return max(2*time.Millisecond, time.Duration(35*float64(time.Second)/float64(d.o.Baud)))
}

func (d *Driver) portLocked() (Port, error) {
	if d.port != nil {
		return d.port, nil
	}
	p, err := d.o.Open(d.o.Port, d.o.Baud)
	if err != nil {
		return nil, fmt.Errorf("kluisbus: open %s: %w", d.o.Port, err)
	}
	if err := p.SetReadTimeout(min(d.o.Timeout, 10*time.Millisecond)); err != nil {
		p.Close()
		return nil, fmt.Errorf("kluisbus: %s: %w", d.o.Port, err)
	}
	d.port = p
	d.log.Info("port open", "baud", d.o.Baud)
	return p, nil
}

// errNoAnswer marks an attempt that got no valid answer.
var errNoAnswer = fmt.Errorf("kluisbus: no valid answer: %w", hardware.ErrTimeout)

// exchange sends req to board addr and returns its reply (a *Nak too). It
// sends the same bytes again after a timeout, a damaged answer or NAK
// BAD_CRC, Retries times. The error wraps hardware.ErrTimeout when no valid
// answer came.
func (d *Driver) exchange(ctx context.Context, addr int, req kluisproto.Message) (kluisproto.Message, error) {
	return d.exchangeN(ctx, addr, req, d.o.Retries)
}

// cmdTrace follows one UNLOCK or PRESENT through exchangeN's attempts.
type cmdTrace struct {
	// unanswered: an attempt went out and got no valid answer, so the
	// board may have carried it out.
	unanswered bool
	// legacyBoot, for a board without CapBootCheck: the boot id the
	// command is bound to. Before every re-send (and before the first
	// send when checkFirst) STATUS is read; if the board's boot id is not
	// legacyBoot the command is not sent (errRebootedCmd).
	legacyBoot uint32
	checkFirst bool
}

// errRebootedCmd: the board restarted since the command may have been
// carried out.
var errRebootedCmd = fmt.Errorf("kluisbus: %w", hardware.ErrRebooted)

func (d *Driver) exchangeN(ctx context.Context, addr int, req kluisproto.Message, retries int) (kluisproto.Message, error) {
	return d.exchangeT(ctx, addr, req, retries, nil)
}

// bootMovedLocked reads STATUS once (the fallback boot check of boards
// without CapBootCheck) and reports whether the board's boot id is no
// longer want. No answer is not proof of a restart: false.
func (d *Driver) bootMovedLocked(ctx context.Context, addr int, want uint32) bool {
	req := &kluisproto.StatusRequest{}
	raw, err := kluisproto.EncodeMessage(byte(addr), req)
	if err != nil {
		return false
	}
	reply, err := d.attemptLocked(ctx, addr, req, raw)
	if err != nil {
		return false
	}
	st, ok := reply.(*kluisproto.StatusReply)
	if !ok {
		return false
	}
	d.noteBoot(addr, st.BootID)
	return st.BootID != want
}

func (d *Driver) exchangeT(ctx context.Context, addr int, req kluisproto.Message, retries int, tr *cmdTrace) (kluisproto.Message, error) {
	raw, err := kluisproto.EncodeMessage(byte(addr), req)
	if err != nil {
		return nil, fmt.Errorf("kluisbus: encode: %w", err)
	}
	if err := d.usable(); err != nil {
		return nil, err
	}
	d.lineMu.Lock()
	defer d.lineMu.Unlock()
	var last error
	for attempt := 0; attempt <= retries; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if tr != nil && tr.legacyBoot != 0 && (tr.unanswered || (attempt == 0 && tr.checkFirst)) &&
			d.bootMovedLocked(ctx, addr, tr.legacyBoot) {
			d.log.Warn("board restarted since the command may have been carried out: not sent again", "board", addr,
				"cmd", kluisproto.CmdName(req.Command()))
			return nil, fmt.Errorf("kluisbus: board %d: %s: %w", addr, kluisproto.CmdName(req.Command()), errRebootedCmd)
		}
		if attempt > 0 {
			d.m.retries.Inc()
			d.log.Debug("retry", "board", addr, "cmd", kluisproto.CmdName(req.Command()), "attempt", attempt+1, "after", last)
		}
		reply, err := d.attemptLocked(ctx, addr, req, raw)
		if err != nil && tr != nil {
			tr.unanswered = true
		}
		if err == nil {
			if nak, ok := reply.(*kluisproto.Nak); ok && nak.Code == kluisproto.CodeBadCRC {
				last = fmt.Errorf("kluisbus: board %d: %w", addr, nak)
				continue
			}
			if _, ok := reply.(*kluisproto.RelockAllReply); ok {
				d.relocked[addr] = true
			}
			return reply, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, serialport.ErrClosed) {
			return nil, fmt.Errorf("kluisbus: %w: %w", err, hardware.ErrHalted)
		}
		last = err
	}
	return nil, fmt.Errorf("kluisbus: board %d: %s: %d attempts: %w", addr, kluisproto.CmdName(req.Command()), retries+1, ensureTimeout(last))
}

func ensureTimeout(err error) error {
	if errors.Is(err, hardware.ErrTimeout) {
		return err
	}
	return fmt.Errorf("%w (last: %v)", hardware.ErrTimeout, err)
}

// attemptLocked writes raw (req encoded) once and waits for the matching
// reply.
func (d *Driver) attemptLocked(ctx context.Context, addr int, req kluisproto.Message, raw []byte) (kluisproto.Message, error) {
	p, err := d.portLocked()
	if err != nil {
		time.Sleep(min(d.o.Timeout, 50*time.Millisecond)) // do not spin on a missing device
		return nil, err
	}
	if gap := time.Until(d.lastRx.Add(d.interFrameGap())); gap > 0 {
		time.Sleep(gap)
	}
	// Bytes still waiting belong to an earlier exchange (a late answer).
	d.drainLocked(p)
	defer func() { d.lastRx = time.Now() }()
	if _, ok := req.(*kluisproto.RelockAllRequest); !ok {
		// Any other frame (an UNLOCK among them) makes every board's last
		// relock stale.
		clear(d.relocked)
	}
	if _, err := p.Write(raw); err != nil {
		return nil, fmt.Errorf("kluisbus: write: %w", err)
	}
	deadline := time.Now().Add(d.o.Timeout + time.Duration(len(raw))*d.charTime())
	for {
		for {
			f, ok := d.dec.Next()
			if !ok {
				break
			}
			d.m.frames.Inc()
			if m, ok := d.match(f, addr, req); ok {
				return m, nil
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			d.dec.Reset() // a partial frame counts as truncated
			d.m.timeouts.Inc()
			return nil, errNoAnswer
		}
		n, err := p.Read(d.buf[:])
		if n > 0 {
			d.dec.Write(d.buf[:n])
		}
		if err != nil && !errors.Is(err, hardware.ErrTimeout) {
			d.dec.Reset()
			if errors.Is(err, serialport.ErrClosed) {
				return nil, err
			}
			// A stale port: serialport reopens it on a later call; keep
			// waiting out this attempt so a vanished device does not spin.
			if time.Now().Before(deadline) {
				time.Sleep(time.Until(deadline))
			}
			d.m.timeouts.Inc()
			return nil, fmt.Errorf("kluisbus: read: %w (%w)", err, hardware.ErrTimeout)
		}
	}
}

func (d *Driver) charTime() time.Duration {
	return time.Duration(10 * float64(time.Second) / float64(d.o.Baud))
}

// drainLocked drops bytes waiting on the line, counting them as errors.
func (d *Driver) drainLocked(p Port) {
	_ = p.Flush()
	for {
		f, ok := d.dec.Next()
		if !ok {
			break
		}
		d.m.frames.Inc()
		d.countErr(ErrKindUnexpected)
		d.log.Debug("late frame dropped", "frame", f.String())
	}
	d.dec.Reset()
}

// match decides whether f is the answer to req from addr; anything else is
// counted and skipped. An UNLOCK or PRESENT reply must also carry req's
// command id: one that does not is a late answer to an earlier command (it
// came after that exchange gave up), not this one's. (The same id with
// another channel or slot is this command's answer: the caller reused an
// id, which Pulse and Present report.)
func (d *Driver) match(f kluisproto.Frame, addr int, req kluisproto.Message) (kluisproto.Message, bool) {
	cmd := req.Command()
	if !f.IsReply() {
		return nil, false // our own request echoed by the adapter
	}
	if int(f.Addr) != addr {
		d.countErr(ErrKindWrongAddress)
		return nil, false
	}
	if f.Cmd != cmd|kluisproto.ReplyBit && f.Cmd != kluisproto.CmdNak {
		d.countErr(ErrKindUnexpected)
		return nil, false
	}
	m, err := kluisproto.ParseReply(f)
	if err != nil {
		d.countErr(ErrKindMalformed)
		d.warn.Warn("malformed reply", "board", addr, "frame", f.String(), "err", err)
		return nil, false
	}
	if nak, ok := m.(*kluisproto.Nak); ok && nak.Cmd != cmd {
		d.countErr(ErrKindUnexpected)
		return nil, false
	}
	if boot, ok := replyBoot(m); ok && d.pastBoot(addr, boot) {
		d.countErr(ErrKindStaleBoot)
		d.log.Debug("reply from an earlier boot skipped", "board", addr, "frame", f.String())
		return nil, false
	}
	late := false
	switch r := m.(type) {
	case *kluisproto.UnlockReply:
		q, _ := req.(*kluisproto.UnlockRequest)
		late = q == nil || r.ID != q.ID
	case *kluisproto.PresentReply:
		q, _ := req.(*kluisproto.PresentRequest)
		late = q == nil || r.ID != q.ID
	}
	if late {
		d.countErr(ErrKindUnexpected)
		d.log.Debug("late reply to an earlier command skipped", "board", addr, "frame", f.String())
		return nil, false
	}
	return m, true
}

// replyBoot returns the boot id a reply carries.
func replyBoot(m kluisproto.Message) (uint32, bool) {
	switch r := m.(type) {
	case *kluisproto.InfoReply:
		return r.BootID, true
	case *kluisproto.StatusReply:
		return r.BootID, true
	case *kluisproto.EventsReply:
		return r.BootID, true
	case *kluisproto.AckReply:
		return r.BootID, true
	case *kluisproto.WatchdogReply:
		return r.BootID, true
	}
	return 0, false
}

// pastBoot reports whether boot is one of board addr's earlier boot ids.
func (d *Driver) pastBoot(addr int, boot uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	bd := d.boards[addr]
	return bd.haveBoot && boot != bd.bootID && bd.bootReplies > 1 && slices.Contains(bd.pastBoots, boot)
}

// request is exchange plus the bookkeeping of every answer: the board is
// online, its boot id is noted; no answer marks it offline.
func (d *Driver) request(ctx context.Context, addr int, req kluisproto.Message) (kluisproto.Message, error) {
	return d.requestN(ctx, addr, req, d.o.Retries)
}

func (d *Driver) requestN(ctx context.Context, addr int, req kluisproto.Message, retries int) (kluisproto.Message, error) {
	return d.requestT(ctx, addr, req, retries, nil)
}

func (d *Driver) requestT(ctx context.Context, addr int, req kluisproto.Message, retries int, tr *cmdTrace) (kluisproto.Message, error) {
	reply, err := d.exchangeT(ctx, addr, req, retries, tr)
	if err != nil {
		if errors.Is(err, hardware.ErrTimeout) && ctx.Err() == nil {
			d.markOffline(addr, err)
		}
		return nil, err
	}
	d.markOnline(addr)
	switch r := reply.(type) {
	case *kluisproto.InfoReply:
		d.noteBoot(addr, r.BootID)
		d.mu.Lock()
		d.boards[addr].info, d.boards[addr].haveInfo = *r, true
		d.boards[addr].bootCheck = r.Caps&kluisproto.CapBootCheck != 0
		d.mu.Unlock()
	case *kluisproto.StatusReply:
		d.noteBoot(addr, r.BootID)
	case *kluisproto.EventsReply:
		d.noteBoot(addr, r.BootID)
	case *kluisproto.AckReply:
		d.noteBoot(addr, r.BootID)
	case *kluisproto.WatchdogReply:
		d.noteBoot(addr, r.BootID)
	}
	return reply, nil
}

// nakErr maps a NAK to the hardware errors.
func nakErr(addr int, nak *kluisproto.Nak) error {
	var base error
	switch nak.Code {
	case kluisproto.CodeBusy:
		base = hardware.ErrBusy
	case kluisproto.CodeFault:
		base = hardware.ErrFault
	case kluisproto.CodeOutOfRange, kluisproto.CodeBadArgument:
		base = hardware.ErrOutOfRange
	case kluisproto.CodeUnknownCmd:
		base = hardware.ErrUnsupported
	case kluisproto.CodeStaleBoot:
		base = hardware.ErrRebooted
	default:
		base = hardware.ErrProtocol
	}
	return fmt.Errorf("kluisbus: board %d: %w: %w", addr, nak, base)
}

// expect turns a reply into T or an error.
func expect[T kluisproto.Message](addr int, reply kluisproto.Message) (T, error) {
	var zero T
	if nak, ok := reply.(*kluisproto.Nak); ok {
		return zero, nakErr(addr, nak)
	}
	r, ok := reply.(T)
	if !ok {
		return zero, fmt.Errorf("kluisbus: board %d: unexpected reply %T: %w", addr, reply, hardware.ErrProtocol)
	}
	return r, nil
}

// ---- board bookkeeping ----

func (d *Driver) queueLocked(ev hardware.Event) {
	if ev.At.IsZero() {
		ev.At = d.o.Clock()
	}
	d.pending = append(d.pending, ev)
}

func boardAddr(b int) hardware.Address { return hardware.Address{Board: b, Channel: -1} }

func (d *Driver) markOnline(addr int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	bd := d.boards[addr]
	d.m.online.WithLabelValues(strconv.Itoa(addr)).Set(1)
	if bd.link == linkOffline {
		d.log.Info("board back online", "board", addr)
		d.queueLocked(hardware.Event{Kind: hardware.BoardOnline, Addr: boardAddr(addr)})
	}
	bd.link = linkOnline
}

func (d *Driver) markOffline(addr int, cause error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	bd := d.boards[addr]
	d.m.online.WithLabelValues(strconv.Itoa(addr)).Set(0)
	bd.nextTry = d.o.Clock().Add(d.o.OfflineRetry)
	if bd.link == linkOffline {
		return
	}
	bd.link = linkOffline
	bd.pastBoots = nil // it may come back another board
	d.log.Warn("board offline", "board", addr, "err", cause)
	d.queueLocked(hardware.Event{Kind: hardware.BoardOffline, Addr: boardAddr(addr),
		Detail: fmt.Sprintf("no answer after %d tries", d.o.Retries+1)})
}

// noteBoot records a boot id; a changed one is a reboot.
func (d *Driver) noteBoot(addr int, boot uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	bd := d.boards[addr]
	if bd.haveBoot && bd.bootID == boot {
		bd.bootReplies = min(bd.bootReplies+1, 2)
		return
	}
	bd.bootReplies = 1
	if bd.haveBoot {
		d.m.reboots.Inc()
		d.log.Warn("board rebooted", "board", addr, "old_boot", bd.bootID, "new_boot", boot)
		d.queueLocked(hardware.Event{Kind: hardware.BoardRebooted, Addr: boardAddr(addr),
			Detail: fmt.Sprintf("boot id %d -> %d", bd.bootID, boot)})
		bd.resync = true
		bd.haveInfo = false // the firmware may have changed
		bd.pastBoots = append(bd.pastBoots, bd.bootID)
		if len(bd.pastBoots) > pastBootsMax {
			bd.pastBoots = bd.pastBoots[1:]
		}
	}
	bd.dropNoop = false
	bd.watchdogSet = false
	bd.bootID, bd.haveBoot = boot, true
	bd.delivered = 0
}

// ---- hardware.Driver ----

func (d *Driver) caps(boards []kluisproto.InfoReply) hardware.Capabilities {
	c := hardware.Capabilities{CommandIDs: true, EventQueue: true, TimedPulse: true, RebootDetect: true,
		DoorSensor: len(boards) > 0, ItemSensor: len(boards) > 0}
	for _, b := range boards {
		c.DoorSensor = c.DoorSensor && b.Caps&kluisproto.CapDoorSensor != 0
		c.ItemSensor = c.ItemSensor && b.Caps&kluisproto.CapItemSensor != 0
		c.Mechanism = c.Mechanism || b.Caps&kluisproto.CapMechanism != 0
	}
	return c
}

// Describe asks every configured board for its INFO and lists those that
// answered. It fails only when none did.
func (d *Driver) Describe(ctx context.Context) (hardware.Info, error) {
	if err := d.usable(); err != nil {
		return hardware.Info{}, err
	}
	info := hardware.Info{Kind: Kind}
	var found []kluisproto.InfoReply
	var errs []error
	for _, b := range d.o.Boards {
		reply, err := d.request(ctx, b, &kluisproto.InfoRequest{})
		if err == nil {
			var r *kluisproto.InfoReply
			if r, err = expect[*kluisproto.InfoReply](b, reply); err == nil {
				found = append(found, *r)
				info.Boards = append(info.Boards, hardware.BoardInfo{Address: b, Channels: int(r.Channels),
					Protocol: int(r.Protocol), Firmware: r.Firmware(), Slots: int(r.Slots)})
				continue
			}
		}
		if ctx.Err() != nil {
			return info, ctx.Err()
		}
		errs = append(errs, err)
	}
	info.Caps = d.caps(found)
	if len(info.Boards) == 0 {
		return info, fmt.Errorf("kluisbus: no board answered: %w", errors.Join(errs...))
	}
	return info, nil
}

func (d *Driver) readStatus(ctx context.Context, b int) (*kluisproto.StatusReply, error) {
	reply, err := d.request(ctx, b, &kluisproto.StatusRequest{})
	if err != nil {
		return nil, err
	}
	return expect[*kluisproto.StatusReply](b, reply)
}

func channelStates(b int, st *kluisproto.StatusReply) []hardware.ChannelState {
	out := make([]hardware.ChannelState, 0, st.Channels)
	for ch := 0; ch < int(st.Channels); ch++ {
		out = append(out, hardware.ChannelState{
			Addr:        hardware.Address{Board: b, Channel: ch},
			Locked:      st.Locked.Get(ch),
			DoorOpen:    st.DoorOpen.Get(ch),
			ItemPresent: st.ItemPresent.Get(ch),
		})
	}
	return out
}

// States reads every board's STATUS. When some boards do not answer it
// returns the states of the others together with an error naming the
// silent ones.
func (d *Driver) States(ctx context.Context) ([]hardware.ChannelState, error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	var out []hardware.ChannelState
	var errs []error
	for _, b := range d.o.Boards {
		st, err := d.readStatus(ctx, b)
		if err != nil {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			errs = append(errs, err)
			continue
		}
		out = append(out, channelStates(b, st)...)
	}
	return out, errors.Join(errs...)
}

func (d *Driver) commandable() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.halted {
		return fmt.Errorf("kluisbus: halted: %w", hardware.ErrHalted)
	}
	return nil
}

// Pulse sends UNLOCK for addr with duration d (50 ms to 10 s, whole
// milliseconds) and command id id. Lost answers are retried with the same
// id, so the lock is pulsed at most once per id. A nil error means the board
// started the pulse now or had already started it for this id. Errors wrap
// hardware.ErrOutOfRange (bad address, duration or id), ErrBusy (the board
// is cooling the lock down; retry later with the same id), ErrFault,
// ErrTimeout (no answer: the pulse may or may not have happened; retrying
// with the same id is safe) or ErrHalted.
func (d *Driver) Pulse(ctx context.Context, addr hardware.Address, dur time.Duration, id hardware.CommandID) error {
	if err := d.commandable(); err != nil {
		return err
	}
	if err := addr.Validate(); err != nil {
		return err
	}
	bd, err := d.board(addr.Board)
	if err != nil {
		return err
	}
	ms := (dur + time.Millisecond/2) / time.Millisecond
	if ms < kluisproto.MinPulseMS || ms > kluisproto.MaxPulseMS {
		return fmt.Errorf("kluisbus: pulse %v outside %d-%d ms: %w", dur, kluisproto.MinPulseMS, kluisproto.MaxPulseMS, hardware.ErrOutOfRange)
	}
	if id == 0 {
		return fmt.Errorf("kluisbus: command id 0: %w", hardware.ErrOutOfRange)
	}
	d.mu.Lock()
	if bd.haveInfo && addr.Channel >= int(bd.info.Channels) {
		n := bd.info.Channels
		d.mu.Unlock()
		return fmt.Errorf("kluisbus: %v: board has %d channels: %w", addr, n, hardware.ErrOutOfRange)
	}
	d.mu.Unlock()
	req := &kluisproto.UnlockRequest{Channel: byte(addr.Channel), DurationMS: uint16(ms), ID: uint32(id)}
	reply, err := d.command(ctx, addr.Board, req.ID, func(boot uint32) kluisproto.Message {
		r := *req
		r.BootID = boot
		return &r
	})
	if errors.Is(err, hardware.ErrRebooted) {
		d.m.unlocks.WithLabelValues("rebooted").Inc()
		return err
	}
	if err != nil {
		d.m.unlocks.WithLabelValues("timeout").Inc()
		return err
	}
	r, err := expect[*kluisproto.UnlockReply](addr.Board, reply)
	if err != nil {
		d.m.unlocks.WithLabelValues("nak").Inc()
		return err
	}
	if r.ID != req.ID || r.Channel != req.Channel {
		d.m.unlocks.WithLabelValues("nak").Inc()
		return fmt.Errorf("kluisbus: %v: reply for channel %d id %#x, sent channel %d id %#x (command id reused?): %w",
			addr, r.Channel, r.ID, req.Channel, req.ID, hardware.ErrProtocol)
	}
	if r.Repeat {
		d.m.unlocks.WithLabelValues("repeat").Inc()
		d.log.Info("unlock already carried out for this id", "addr", addr.String(), "id", id)
	} else {
		d.m.unlocks.WithLabelValues("ok").Inc()
	}
	return nil
}

// command sends an UNLOCK or PRESENT with command id id to board b (mk
// builds it for a boot id, 0 for the short form without one) so that a
// restart of the board can never turn a re-send of id into a second pulse
// or move (firmware-protocol.md 4.3.1). Once an attempt of id went out
// unanswered or was accepted, id is bound to the boot id it was sent to:
//
//   - a board with CapBootCheck gets that boot id in every later send of
//     id (the driver's own retries and the caller's): a restarted board
//     answers STALE_BOOT and does nothing, and command returns
//     hardware.ErrRebooted. A STALE_BOOT for an id that cannot have been
//     carried out (only refused so far) just means the driver had not yet
//     seen the restart: STATUS is read and id is sent bound to the new
//     boot;
//   - a board without it gets the short form, but STATUS is read before
//     every re-send of a bound id, and a new boot id stops the re-send
//     (hardware.ErrRebooted). That narrows the hole to a restart between
//     that STATUS and the re-send.
func (d *Driver) command(ctx context.Context, b int, id uint32, mk func(boot uint32) kluisproto.Message) (kluisproto.Message, error) {
	for round := 0; round < 3; round++ {
		d.mu.Lock()
		bd := d.boards[b]
		bound, maybe := bd.sent[id]
		check, cur, haveBoot := bd.bootCheck, bd.bootID, bd.haveBoot
		d.mu.Unlock()
		boot := bound
		if !maybe && haveBoot {
			boot = cur
		}
		if maybe && !check && haveBoot && bound != 0 && cur != bound {
			return nil, fmt.Errorf("kluisbus: board %d: command id %#x sent to boot %d, board now at boot %d: %w", b, id, bound, cur, errRebootedCmd)
		}
		tr := &cmdTrace{}
		var req kluisproto.Message
		if check && boot != 0 {
			req = mk(boot)
		} else {
			req = mk(0)
			tr.legacyBoot, tr.checkFirst = boot, maybe
		}
		reply, err := d.requestT(ctx, b, req, d.o.Retries, tr)
		if tr.unanswered {
			d.bindID(b, id, boot)
		}
		if err != nil {
			return nil, err
		}
		nak, _ := reply.(*kluisproto.Nak)
		switch {
		case nak != nil && nak.Code == kluisproto.CodeStaleBoot:
			if maybe || tr.unanswered {
				d.log.Warn("board restarted since the command may have been carried out: not sent again", "board", b,
					"cmd", kluisproto.CmdName(req.Command()), "id", id, "boot", boot)
				return nil, fmt.Errorf("kluisbus: board %d: command id %#x: %w", b, id, errRebootedCmd)
			}
			if _, err := d.readStatus(ctx, b); err != nil {
				return nil, err
			}
			continue
		case nak != nil && nak.Code == kluisproto.CodeBadLength && check && boot != 0:
			// firmware without the boot check after all (a downgrade):
			// the refused request did nothing; use the short form
			d.log.Warn("board refused the boot-checked form: falling back", "board", b)
			d.mu.Lock()
			bd.bootCheck = false
			d.mu.Unlock()
			continue
		case nak == nil:
			d.bindID(b, id, boot)
		}
		return reply, nil
	}
	return nil, fmt.Errorf("kluisbus: board %d: command id %#x: the board kept restarting: %w", b, id, hardware.ErrProtocol)
}

// BootCheck reports whether board b advertised CapBootCheck in its last
// INFO: UNLOCK and PRESENT then carry the boot id they are meant for.
func (d *Driver) BootCheck(b int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	bd, ok := d.boards[b]
	return ok && bd.bootCheck
}

// Boot implements hardware.BootBinder: board b's boot id as last seen, 0
// when not known.
func (d *Driver) Boot(b int) uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	bd, ok := d.boards[b]
	if !ok || !bd.haveBoot {
		return 0
	}
	return bd.bootID
}

// BindBoot implements hardware.BootBinder: id may have been carried out by
// board b in boot boot (a journaled intent re-sent after kluisd restarted);
// Pulse and Present send it only to that boot.
func (d *Driver) BindBoot(b int, id hardware.CommandID, boot uint32) {
	if boot == 0 || id == 0 {
		return
	}
	d.mu.Lock()
	_, ok := d.boards[b]
	d.mu.Unlock()
	if ok {
		d.bindID(b, uint32(id), boot)
	}
}

// bindID binds command id to boot (firmware-protocol.md 4.3.1): the board
// may have carried it out in that boot. An unknown boot (0) binds to the
// boot id known now. The first binding stays.
func (d *Driver) bindID(b int, id, boot uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	bd := d.boards[b]
	if _, ok := bd.sent[id]; ok {
		return
	}
	if boot == 0 && bd.haveBoot {
		boot = bd.bootID
	}
	if bd.sent == nil {
		bd.sent = map[uint32]uint32{}
	}
	if len(bd.sentOrder) >= sentMax {
		delete(bd.sent, bd.sentOrder[0])
		bd.sentOrder = bd.sentOrder[1:]
	}
	bd.sent[id] = boot
	bd.sentOrder = append(bd.sentOrder, id)
}

// Halt sends RELOCK_ALL to every board: every lock de-energised, every
// mechanism stopped. Afterwards Pulse and Present fail with ErrHalted;
// Watch, States and Describe keep working until Close. Safe to call more
// than once and from any goroutine; it returns the boards that did not
// confirm.
func (d *Driver) Halt() error {
	d.mu.Lock()
	if !d.halted {
		d.log.Info("halting: relocking every board")
	}
	d.halted = true
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil
	}
	var errs []error
	for _, b := range d.o.Boards {
		// A board known to be offline gets one try, so halting a bus with
		// dead boards stays quick.
		retries := d.o.Retries
		d.mu.Lock()
		if d.boards[b].link == linkOffline {
			retries = 0
		}
		d.mu.Unlock()
		reply, err := d.requestN(context.Background(), b, &kluisproto.RelockAllRequest{}, retries)
		if err == nil {
			_, err = expect[*kluisproto.RelockAllReply](b, reply)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close halts every board and closes the port; a board that acknowledged
// Halt's relock with no frame on the line since is not relocked again.
// Safe to call more than once; Watch returns an error wrapping
// hardware.ErrHalted.
func (d *Driver) Close() error {
	// No command is accepted from here on.
	d.mu.Lock()
	wasHalted := d.halted
	d.halted = true
	d.mu.Unlock()
	// Every board acknowledged a relock and nothing went out on the line
	// since (kluisd's start-up halts a fresh driver, then closes it): the
	// port is closed under the same hold of the line, so no frame can slip
	// in, and relocking again would only cost an exchange and the
	// inter-frame gap (4 ms at 9600 baud).
	d.lineMu.Lock()
	clean := true
	for _, b := range d.o.Boards {
		clean = clean && d.relocked[b]
	}
	if clean {
		defer d.lineMu.Unlock()
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		return d.closePortLocked(nil)
	}
	d.lineMu.Unlock()
	if !wasHalted {
		d.log.Info("halting: relocking every board")
	}
	herr := d.Halt()
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.lineMu.Lock()
	defer d.lineMu.Unlock()
	return d.closePortLocked(herr)
}

// closePortLocked closes the port (under lineMu), joining its error to herr.
func (d *Driver) closePortLocked(herr error) error {
	if d.port == nil {
		return herr
	}
	err := d.port.Close()
	d.port = nil
	if err != nil {
		return errors.Join(herr, fmt.Errorf("kluisbus: close: %w", err))
	}
	return herr
}

// ---- hardware.Mechanism ----

// Present sends PRESENT: bring slot (from 0) of automaton board to the
// hatch. Same id, same command: lost answers are retried with it.
// Completion is the SlotPresented event, failure MechanismFault.
func (d *Driver) Present(ctx context.Context, b, slot int, id hardware.CommandID) error {
	if err := d.commandable(); err != nil {
		return err
	}
	bd, err := d.board(b)
	if err != nil {
		return err
	}
	if id == 0 {
		return fmt.Errorf("kluisbus: command id 0: %w", hardware.ErrOutOfRange)
	}
	if slot < 0 || slot > 254 {
		return fmt.Errorf("kluisbus: slot %d: %w", slot, hardware.ErrOutOfRange)
	}
	d.mu.Lock()
	if bd.haveInfo {
		if bd.info.Caps&kluisproto.CapMechanism == 0 {
			d.mu.Unlock()
			return fmt.Errorf("kluisbus: board %d has no mechanism: %w", b, hardware.ErrUnsupported)
		}
		if slot >= int(bd.info.Slots) {
			n := bd.info.Slots
			d.mu.Unlock()
			return fmt.Errorf("kluisbus: board %d has %d slots, not slot %d: %w", b, n, slot, hardware.ErrOutOfRange)
		}
	}
	d.mu.Unlock()
	req := &kluisproto.PresentRequest{Slot: byte(slot), ID: uint32(id)}
	reply, err := d.command(ctx, b, req.ID, func(boot uint32) kluisproto.Message {
		r := *req
		r.BootID = boot
		return &r
	})
	if err != nil {
		return err
	}
	r, err := expect[*kluisproto.PresentReply](b, reply)
	if err != nil {
		return err
	}
	if r.ID != req.ID || r.Slot != req.Slot {
		return fmt.Errorf("kluisbus: board %d: reply for slot %d id %#x, sent slot %d id %#x: %w", b, r.Slot, r.ID, req.Slot, req.ID, hardware.ErrProtocol)
	}
	return nil
}

// Hatch reads HATCH of an automaton board.
func (d *Driver) Hatch(ctx context.Context, b int) (hardware.HatchState, error) {
	if err := d.usable(); err != nil {
		return hardware.HatchState{}, err
	}
	if _, err := d.board(b); err != nil {
		return hardware.HatchState{}, err
	}
	reply, err := d.request(ctx, b, &kluisproto.HatchRequest{})
	if err != nil {
		return hardware.HatchState{}, err
	}
	r, err := expect[*kluisproto.HatchReply](b, reply)
	if err != nil {
		return hardware.HatchState{}, err
	}
	hs := hardware.HatchState{Open: r.Open, Locked: r.Locked, Busy: r.Busy, Fault: r.Fault, ItemAtHatch: r.ItemAtHatch, Slot: int(r.Slot)}
	if r.Slot == kluisproto.SlotNone {
		hs.Slot = -1
	}
	return hs, nil
}
