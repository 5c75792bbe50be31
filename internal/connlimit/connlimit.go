// Package connlimit caps the connections an HTTP listener holds open.
// Past the cap a new connection is answered a short "503 Service
// Unavailable" with Retry-After (no body) and closed, instead of being served: a
// flood of connections then costs the process a bounded number of file
// descriptors and of memory, and what else it opens (its database
// connections, the broker's devices, the journal) keeps its descriptors.
// Refusals are counted through a hook and logged bounded (loglimit).
// Stdlib only: kluisd and kluis-backend both use it.
package connlimit

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"kluis/internal/loglimit"
)

// Options configure a Listener.
type Options struct {
	// Max is the most connections held open at once (at least 1).
	Max int
	// Name names the listener in log lines ("kiosk", "api", ...).
	Name string
	// Logger receives one warning per minute while connections are
	// refused (and a summary of the lines left out).
	Logger *slog.Logger
	// OnRefuse, when set, is called for every refused connection (a
	// counter's Inc).
	OnRefuse func()
	// OnOpen, when set, is called with the number of connections held
	// open each time it changes (a gauge's Set).
	OnOpen func(n int64)
	// Now is the clock of the log bound (time.Now when nil).
	Now func() time.Time
}

// maxRefusing bounds the refusals in progress (each holds a descriptor
// for at most refuseTime); past it, excess connections are closed without
// an answer.
const maxRefusing = 16

// refuseTime bounds how long one refusal holds its connection.
const refuseTime = time.Second

// refusal is the answer to a connection past the cap.
// (no body: it is read by programs, the kiosk screen and clients retry).
const refusal = "HTTP/1.1 503 Service Unavailable\r\nCache-Control: no-store\r\nRetry-After: 1\r\n" +
	"Connection: close\r\nContent-Length: 0\r\n\r\n"

// Listener is a net.Listener holding at most Max connections open.
type Listener struct {
	net.Listener
	max      int64
	name     string
	warn     *loglimit.Limiter
	onRefuse func()
	onOpen   func(n int64)
	refusing chan struct{}
	live     atomic.Int64
	wg       sync.WaitGroup // refusals in progress
}

// New wraps ln.
func New(ln net.Listener, o Options) *Listener {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: ln, max: int64(max(o.Max, 1)), name: o.Name,
		warn: loglimit.New(log, 1, time.Minute, now), onRefuse: o.OnRefuse, onOpen: o.OnOpen,
		refusing: make(chan struct{}, maxRefusing)}
}

// Open is the number of connections held open (not counting those being
// refused).
func (l *Listener) Open() int64 { return l.live.Load() }

// Accept returns the next connection under the cap; connections past it
// are refused here and never returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		n := l.live.Add(1)
		if n > l.max {
			l.live.Add(-1)
			l.refuse(c)
			continue
		}
		l.opened(n)
		return &conn{Conn: c, l: l}, nil
	}
}

// Close closes the listener and waits for the refusals in progress.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	l.wg.Wait()
	return err
}

func (l *Listener) opened(n int64) {
	if l.onOpen != nil {
		l.onOpen(n)
	}
}

func (l *Listener) refuse(c net.Conn) {
	if l.onRefuse != nil {
		l.onRefuse()
	}
	l.warn.Warn("connection refused: the listener holds its maximum of connections",
		"listener", l.name, "max", l.max, "remote", c.RemoteAddr().String())
	select {
	case l.refusing <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer func() { <-l.refusing }()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(refuseTime))
		_, _ = io.WriteString(c, refusal)
		if tc, ok := c.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite() // the client reads the answer before the close
		}
		// Reading what the client sent (a request) lets the close be a FIN,
		// not a reset that could destroy the answer before it is read.
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
}

// conn gives its place back when closed (once).
type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.opened(c.l.live.Add(-1)) })
	return err
}

// DefaultMax is a default cap for a listener of a process: MaxFor the
// process's open-file limit (ceiling when it cannot be read).
func DefaultMax(ceiling int) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return ceiling
	}
	return MaxFor(rl.Cur, ceiling)
}

// MaxFor is the default cap for a listener of a process whose open-file
// limit is limit: a quarter of it (the rest stays for what else it
// opens), at least 64 and at most ceiling.
func MaxFor(limit uint64, ceiling int) int {
	return int(min(max(limit/4, 64), uint64(ceiling)))
}
