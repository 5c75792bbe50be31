package simulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/term"
)

// Responder is the board side of a serial protocol for all boards of one
// device on one line. Handle takes the bytes the line delivered and returns
// the bytes the boards answer (nil for none). Garbage, bad checksums and
// frames for other addresses get no answer, as on a real bus.
type Responder interface {
	Handle(in []byte) (out []byte)
}

// LineStats counts what a device's boards heard on their serial line: the
// frames and the bad input they skipped (garbage, damaged, cut-off or
// oversized frames), none of which is ever acted on.
type LineStats struct {
	// Frames is the valid frames received (for any address).
	Frames uint64 `json:"frames"`
	// Garbage is the runs of bytes skipped while looking for a start byte.
	Garbage uint64 `json:"garbage"`
	// BadFrames is the frames with a bad CRC (Kluis) or a bad ETX or sum
	// (Kerong).
	BadFrames uint64 `json:"bad_frames"`
	// Oversize is the Kluis start bytes followed by LEN > 64.
	Oversize uint64 `json:"oversize"`
	// Truncated is the Kluis partial frames dropped after the inter-byte
	// timeout or overtaken by a later valid frame.
	Truncated uint64 `json:"truncated"`
	// Ignored is the valid frames no board of the device answered: another
	// address, a reply (Kluis), an unknown command or an absent lock
	// (Kerong).
	Ignored uint64 `json:"ignored"`
}

// lineStatser is implemented by the responders that count their input.
type lineStatser interface{ LineStats() LineStats }

// Stats returns what the boards heard on this line so far.
func (l *Line) Stats() LineStats {
	if s, ok := l.resp.(lineStatser); ok {
		return s.LineStats()
	}
	return LineStats{}
}

// SerialOptions configure ServeSerial.
type SerialOptions struct {
	// Protocol is "kluis" or "kerong-cu16".
	Protocol string
	// Link is a path made a symlink to the pty's slave (e.g. /tmp/kluis-tty);
	// empty for none. An existing symlink there is replaced; any other file
	// is an error.
	Link string
	// Kerong configures the Kerong responder.
	Kerong KerongOptions
	// Logger; default discards.
	Logger *slog.Logger
}

// Line is a device's serial line on a pseudo-terminal.
type Line struct {
	// Path is the pty slave, e.g. /dev/pts/3; Link the symlink to it.
	Path, Link string

	master, slave *os.File
	dev           *Device
	resp          Responder
	log           *slog.Logger
	wmu           sync.Mutex
	done          chan struct{}
	closeOnce     sync.Once
}

// Protocol names.
const (
	ProtoKluis   = "kluis"
	ProtoKerong  = "kerong-cu16"
	ProtoTasmota = "tasmota"
)

// NewResponder builds the responder for protocol on dev.
func NewResponder(protocol string, dev *Device, ko KerongOptions) (Responder, error) {
	switch protocol {
	case ProtoKerong:
		return NewKerong(dev, ko)
	case ProtoKluis:
		return newKluisResponder(dev)
	default:
		return nil, fmt.Errorf("serial protocol %q (want kluis or kerong-cu16): %w", protocol, ErrBadInput)
	}
}

// ServeSerial opens a pseudo-terminal in raw mode and answers on it as the
// boards of dev would, with dev's line faults applied to every byte in both
// directions, until ctx ends or Close is called.
func ServeSerial(ctx context.Context, dev *Device, o SerialOptions) (*Line, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	resp, err := NewResponder(o.Protocol, dev, o.Kerong)
	if err != nil {
		return nil, err
	}
	master, slave, err := openPTY()
	if err != nil {
		return nil, err
	}
	if _, err := term.MakeRaw(int(slave.Fd())); err != nil {
		master.Close()
		slave.Close()
		return nil, fmt.Errorf("raw pty: %w", err)
	}
	l := &Line{Path: slave.Name(), Link: o.Link, master: master, slave: slave, dev: dev, resp: resp,
		log: o.Logger.With("part", "simulator-serial", "device", dev.ID(), "protocol", o.Protocol), done: make(chan struct{})}
	if o.Link != "" {
		if fi, err := os.Lstat(o.Link); err == nil {
			if fi.Mode()&os.ModeSymlink == 0 {
				l.closeFiles()
				return nil, fmt.Errorf("link %s exists and is not a symlink: %w", o.Link, ErrBadInput)
			}
			_ = os.Remove(o.Link)
		}
		if err := os.Symlink(l.Path, o.Link); err != nil {
			l.closeFiles()
			return nil, fmt.Errorf("link %s: %w", o.Link, err)
		}
	}
	go l.serve()
	go func() {
		select {
		case <-ctx.Done():
			l.Close()
		case <-l.done:
		}
	}()
	return l, nil
}

// openPTY opens a pseudo-terminal whose master is non-blocking and in Go's
// poller, so reads honour deadlines and Close unblocks a pending Read.
func openPTY() (master, slave *os.File, err error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	fd, err := syscall.Dup(int(m.Fd()))
	m.Close()
	if err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("dup pty: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		s.Close()
		return nil, nil, fmt.Errorf("pty non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), s, nil
}

func (l *Line) closeFiles() {
	l.master.Close()
	l.slave.Close()
}

// Close stops serving, closes the pty and removes the link.
func (l *Line) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.closeFiles()
		if c, ok := l.resp.(interface{ Close() }); ok {
			c.Close()
		}
		if l.Link != "" {
			if p, err := os.Readlink(l.Link); err == nil && p == l.Path {
				_ = os.Remove(l.Link)
			}
		}
	})
	return nil
}

func (l *Line) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.done:
		return false
	}
}

// idler is a Responder that holds partial frames: after InterByteTimeout of
// silence the line calls Idle so a cut-off frame cannot swallow the next.
type idler interface {
	Partial() bool
	Idle()
}

// InterByteTimeout is the silence after which a partial frame is dropped
// (firmware-protocol.md, section 2.2).
const InterByteTimeout = 20 * time.Millisecond

func (l *Line) serve() {
	buf := make([]byte, 256)
	idl, _ := l.resp.(idler)
	for {
		partial := idl != nil && idl.Partial()
		if partial {
			_ = l.master.SetReadDeadline(time.Now().Add(InterByteTimeout))
		} else {
			_ = l.master.SetReadDeadline(time.Time{})
		}
		n, err := l.master.Read(buf)
		if err != nil && partial && errors.Is(err, os.ErrDeadlineExceeded) {
			idl.Idle()
			continue
		}
		if err != nil {
			if !errors.Is(err, os.ErrClosed) && !errors.Is(err, io.EOF) {
				select {
				case <-l.done:
				default:
					l.log.Warn("pty read", "err", err)
					if !l.sleep(50 * time.Millisecond) {
						return
					}
					continue
				}
			}
			return
		}
		in := make([]byte, 0, n)
		for _, b := range buf[:n] {
			out, drop, delay := l.dev.LineFault(ToBoard, b)
			if drop {
				continue
			}
			if delay > 0 && !l.sleep(delay) {
				return
			}
			in = append(in, out)
		}
		if len(in) == 0 {
			continue
		}
		reply := l.resp.Handle(in)
		if len(reply) > 0 {
			l.send(reply)
		}
	}
}

func (l *Line) send(reply []byte) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	out := make([]byte, 0, len(reply))
	for _, b := range reply {
		x, drop, delay := l.dev.LineFault(FromBoard, b)
		if drop {
			continue
		}
		if delay > 0 {
			if len(out) > 0 {
				if _, err := l.master.Write(out); err != nil {
					return
				}
				out = out[:0]
			}
			if !l.sleep(delay) {
				return
			}
		}
		out = append(out, x)
	}
	if len(out) > 0 {
		_, _ = l.master.Write(out)
	}
}
