// Package serialport wraps go.bug.st/serial for the serial lock-board
// drivers (kluisbus, kerong).
//
// It fixes two things the library leaves to its callers: a read that times
// out returns (0, nil) from go.bug.st/serial, which this package turns into
// an error wrapping hardware.ErrTimeout; and a port whose device vanished
// (a USB adapter unplugged, a pseudo-terminal whose other end closed, an I/O
// error) is marked stale and reopened on the next use, with a bounded
// exponential backoff between attempts.
//
//	p, err := serialport.Open("/dev/ttyUSB0", 9600, serialport.Options{ReadTimeout: 50 * time.Millisecond})
//	n, err := p.Read(buf)      // errors.Is(err, hardware.ErrTimeout) when nothing came in time
//	p.Flush()                  // drop whatever is waiting in the input buffer
//	p.Close()
package serialport

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.bug.st/serial"

	"kluis/hardware"
)

// Errors of this package; timeouts wrap hardware.ErrTimeout.
var (
	// ErrClosed: Close was called.
	ErrClosed = errors.New("serialport: closed")
	// ErrStale: the device went away and is not (yet) open again.
	ErrStale = errors.New("serialport: port unavailable")
)

// Options of Open. Zero values take the defaults.
type Options struct {
	// ReadTimeout bounds one Read (default 100 ms).
	ReadTimeout time.Duration
	// DataBits (default 8), Parity (default none), StopBits (default 1).
	DataBits int
	Parity   serial.Parity
	StopBits serial.StopBits
	// MinBackoff and MaxBackoff bound the wait between reopen attempts
	// (defaults 50 ms and 2 s); the wait doubles after every failed attempt.
	MinBackoff, MaxBackoff time.Duration
	// Logger, default slog.Default().
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 100 * time.Millisecond
	}
	if o.DataBits == 0 {
		o.DataBits = 8
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 50 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(2*time.Second, o.MinBackoff)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Port is a serial port that reopens itself. Read, Write, Flush and Close
// may be called from different goroutines (a Close ends a blocked Read);
// the bytes of concurrent Writes may interleave, so callers serialise their
// exchanges themselves.
type Port struct {
	path string
	baud int
	opts Options

	mu       sync.Mutex
	sp       serial.Port // nil while stale
	closed   bool
	backoff  time.Duration
	nextTry  time.Time
	lastErr  error
	reopened int
}

// Open opens path at baud (8N1 unless opts say otherwise) with a read
// timeout. An error here is final: the first open must work.
func Open(path string, baud int, opts Options) (*Port, error) {
	opts.defaults()
	p := &Port{path: path, baud: baud, opts: opts}
	sp, err := p.open()
	if err != nil {
		return nil, err
	}
	p.sp = sp
	return p, nil
}

func (p *Port) open() (serial.Port, error) {
	sp, err := serial.Open(p.path, &serial.Mode{
		BaudRate: p.baud, DataBits: p.opts.DataBits, Parity: p.opts.Parity, StopBits: p.opts.StopBits,
	})
	if err != nil {
		return nil, fmt.Errorf("serialport: open %s: %w", p.path, err)
	}
	if err := sp.SetReadTimeout(p.opts.ReadTimeout); err != nil {
		sp.Close()
		return nil, fmt.Errorf("serialport: %s: set read timeout: %w", p.path, err)
	}
	return sp, nil
}

// Path is the device path given to Open.
func (p *Port) Path() string { return p.path }

// Reopens counts the successful reopens after the device went stale.
func (p *Port) Reopens() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reopened
}

// Stale reports whether the port is waiting to be reopened.
func (p *Port) Stale() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sp == nil && !p.closed
}

// current returns the open port, reopening a stale one when its backoff
// has passed. While waiting for the backoff it sleeps at most wait (so a
// caller polling in a loop does not spin) and returns ErrStale.
func (p *Port) current(wait time.Duration) (serial.Port, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if p.sp != nil {
		sp := p.sp
		p.mu.Unlock()
		return sp, nil
	}
	if d := time.Until(p.nextTry); d > 0 {
		last := p.lastErr
		p.mu.Unlock()
		time.Sleep(min(d, wait))
		if d > wait {
			return nil, fmt.Errorf("%w: %s: %v", ErrStale, p.path, last)
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		if p.sp != nil {
			sp := p.sp
			p.mu.Unlock()
			return sp, nil
		}
	}
	defer p.mu.Unlock()
	sp, err := p.open()
	if err != nil {
		p.lastErr = err
		p.backoff = min(max(2*p.backoff, p.opts.MinBackoff), p.opts.MaxBackoff)
		p.nextTry = time.Now().Add(p.backoff)
		return nil, fmt.Errorf("%w: %v", ErrStale, err)
	}
	p.sp = sp
	p.backoff = 0
	p.reopened++
	p.opts.Logger.Info("serial port reopened", "path", p.path)
	return sp, nil
}

// markStale drops sp after an I/O error, unless another goroutine already
// replaced it. The first attempt to reopen is after MinBackoff.
func (p *Port) markStale(sp serial.Port, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.sp != sp {
		return
	}
	p.opts.Logger.Warn("serial port stale, will reopen", "path", p.path, "err", err)
	sp.Close()
	p.sp = nil
	p.lastErr = err
	p.backoff = p.opts.MinBackoff
	p.nextTry = time.Now().Add(p.backoff)
}

func (p *Port) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Read reads at least one byte or fails: with an error wrapping
// hardware.ErrTimeout when nothing arrived within the read timeout, with
// ErrStale when the device went away (the port is reopened by a later
// call), with ErrClosed after Close.
func (p *Port) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	sp, err := p.current(p.opts.ReadTimeout)
	if err != nil {
		return 0, err
	}
	n, err := sp.Read(b)
	if err != nil {
		if p.isClosed() {
			return n, ErrClosed
		}
		p.markStale(sp, err)
		return n, fmt.Errorf("%w: read %s: %v", ErrStale, p.path, err)
	}
	if n == 0 {
		return 0, fmt.Errorf("serialport: read %s: %w", p.path, hardware.ErrTimeout)
	}
	return n, nil
}

// Write writes all of b.
func (p *Port) Write(b []byte) (int, error) {
	sp, err := p.current(p.opts.ReadTimeout)
	if err != nil {
		return 0, err
	}
	done := 0
	for done < len(b) {
		n, err := sp.Write(b[done:])
		done += n
		if err != nil {
			if p.isClosed() {
				return done, ErrClosed
			}
			p.markStale(sp, err)
			return done, fmt.Errorf("%w: write %s: %v", ErrStale, p.path, err)
		}
		if n == 0 {
			return done, fmt.Errorf("%w: write %s: no progress", ErrStale, p.path)
		}
	}
	return done, nil
}

// Flush discards the bytes received but not yet read (the input buffer).
func (p *Port) Flush() error {
	sp, err := p.current(0)
	if err != nil {
		return err
	}
	if err := sp.ResetInputBuffer(); err != nil {
		return fmt.Errorf("serialport: flush %s: %w", p.path, err)
	}
	return nil
}

// SetReadTimeout changes the read timeout (kept across reopens).
func (p *Port) SetReadTimeout(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("serialport: read timeout %v must be positive", d)
	}
	p.mu.Lock()
	p.opts.ReadTimeout = d
	sp := p.sp
	p.mu.Unlock()
	if sp != nil {
		return sp.SetReadTimeout(d)
	}
	return nil
}

// ReadTimeout is the current read timeout.
func (p *Port) ReadTimeout() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opts.ReadTimeout
}

// Close closes the port; a blocked Read returns ErrClosed. Safe to call
// more than once.
func (p *Port) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	sp := p.sp
	p.sp = nil
	p.mu.Unlock()
	if sp != nil {
		return sp.Close()
	}
	return nil
}
