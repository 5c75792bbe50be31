package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"kluis/internal/loglimit"
)

// listener is the broker's TCP listener. It never stops accepting
// until closed: an accept error (EMFILE "too many open files", ENFILE,
// ENOBUFS, ...) is counted, logged and retried after a back-off (5 ms
// doubling to 1 s), and Healthy reports it meanwhile. It also caps the
// connections it holds open: past max, a new connection gets a clean
// refusal (CONNACK "server unavailable") and is closed, so that the
// process keeps descriptors for its database, HTTP and files.
type listener struct {
	id       string
	tls      *tls.Config
	ln       net.Listener
	max      int64
	pendMax  int64         // connections an address may hold overdue for their CONNECT
	grace    time.Duration // after it, a connection without CONNECT is overdue
	connect  time.Duration // deadline to send CONNECT
	log      *slog.Logger
	m        *metrics
	sleep    func(time.Duration)
	refusing chan struct{} // bounds refusals in progress

	live    atomic.Int64
	pendMu  sync.Mutex
	overdue map[netip.Prefix]int64 // connections overdue for their CONNECT, by address
	warn    *loglimit.Limiter
	end     atomic.Bool
	mu      sync.Mutex
	failed  error     // the accept error since the last success, nil when accepting
	since   time.Time // when failed began
}

// maxRefusing bounds the connections being refused at once (each holds a
// descriptor for up to a second); past it, excess connections are closed
// without an answer.
const maxRefusing = 32

// errAcceptFailing is what Healthy wraps while accepting fails.
var errAcceptFailing = errors.New("broker: not accepting connections")

func newListener(id, addr string, tlsConf *tls.Config, max, pendMax int64, connect time.Duration, log *slog.Logger, m *metrics) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &listener{id: id, tls: tlsConf, ln: ln, max: max, pendMax: pendMax, connect: connect, log: log, m: m,
		sleep: time.Sleep, refusing: make(chan struct{}, maxRefusing), overdue: map[netip.Prefix]int64{}, grace: connectGrace,
		warn: loglimit.New(log, 1, time.Minute, time.Now)}, nil
}

// Address is the address listened on.
func (l *listener) Address() string { return l.ln.Addr().String() }

// Healthy returns nil while the listener accepts connections, else an
// error wrapping errAcceptFailing with the last accept error.
func (l *listener) Healthy() error {
	if l.end.Load() {
		return fmt.Errorf("%w: closed", errAcceptFailing)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed != nil {
		return fmt.Errorf("%w since %s: %w", errAcceptFailing, l.since.UTC().Format(time.RFC3339), l.failed)
	}
	return nil
}

// Live is the number of connections held open (including those not yet
// authenticated).
func (l *listener) Live() int64 { return l.live.Load() }

// Serve accepts until Close, running serve in a goroutine of its own for
// each connection (with the CONNECT deadline set).
func (l *listener) Serve(serve func(net.Conn)) {
	var backoff time.Duration
	var lastLog time.Time
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if l.end.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			l.m.acceptErrors.Inc()
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.mu.Lock()
			first := l.failed == nil
			if first {
				l.since = time.Now()
			}
			l.failed = err
			l.mu.Unlock()
			if first || time.Since(lastLog) >= 10*time.Second {
				lastLog = time.Now()
				l.log.Error("accepting a connection failed; retrying", "err", err,
					"fd_exhausted", errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE),
					"connections", l.live.Load(), "backoff", backoff)
			}
			l.sleep(backoff)
			continue
		}
		if backoff > 0 {
			backoff = 0
			l.mu.Lock()
			down := time.Since(l.since)
			l.failed = nil
			l.mu.Unlock()
			l.log.Info("accepting connections again", "after", down.Round(time.Millisecond))
		}
		if l.live.Add(1) > l.max {
			l.live.Add(-1)
			l.m.refused.Inc()
			l.refuse(conn)
			continue
		}
		l.m.open.Inc()
		c := &countedConn{Conn: conn, l: l, key: addressKey(conn.RemoteAddr())}
		_ = c.SetDeadline(time.Now().Add(l.connect)) // the server sets the keep-alive deadline after CONNECT
		l.pendMu.Lock()
		c.timer = time.AfterFunc(l.grace, c.overdue)
		l.pendMu.Unlock()
		var nc net.Conn = c
		if l.tls != nil {
			nc = tls.Server(c, l.tls)
		}
		go serve(nc)
	}
}

// connectGrace is how long a new connection may take to send its first
// packet before it counts against its address (MaxPendingPerAddress): a
// device sends CONNECT as soon as it is connected, so only connections
// left idle count, not a fleet reconnecting at once from one address.
//
// At the end of the grace a connection counts only if the broker is
// waiting on its client: its serving goroutine blocked reading it with
// nothing unread in the kernel's receive queue (or not reading it yet
// with nothing arrived). A connection whose bytes arrived but were not
// read yet (the broker is behind: a storm on a busy machine, its
// goroutines not scheduled for seconds) or whose serving goroutine is busy
// with it (a TLS handshake's computation) gets another grace: the
// broker's own delay never costs a device its connection. A client that
// sent part of its CONNECT and stopped counts once the broker has read
// the part; ConnectTimeout bounds every connection in any case.
const connectGrace = 2 * time.Second

// The states of a connection's first packet (countedConn.state, under the
// listener's pendMu).
const (
	firstWaiting = iota // within the grace
	firstOverdue        // counted in overdue
	firstDone           // read, failed or closed
)

// overdue runs at the end of c's grace: without its first packet it
// counts against its address, or is closed (counted, warned) when its
// address holds pendMax overdue connections already.
func (c *countedConn) overdue() {
	l := c.l
	l.pendMu.Lock()
	if c.state != firstWaiting {
		l.pendMu.Unlock()
		return
	}
	if c.brokerBehind() {
		l.m.pendExtended.Inc()
		c.timer.Reset(l.grace)
		l.pendMu.Unlock()
		return
	}
	full := l.overdue[c.key] >= l.pendMax
	if !full {
		l.overdue[c.key]++
		c.state = firstOverdue
	}
	l.pendMu.Unlock()
	if full {
		l.m.pendRefused.Inc()
		l.warn.Warn("connection closed: its address holds its maximum of connections that have not sent CONNECT",
			"max", l.pendMax, "remote", c.RemoteAddr().String())
		_ = c.Close()
	}
}

// firstArrived ends c's wait for its first packet (once).
func (c *countedConn) firstArrived() {
	l := c.l
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.state == firstOverdue {
		if l.overdue[c.key]--; l.overdue[c.key] <= 0 {
			delete(l.overdue, c.key)
		}
	}
	c.state = firstDone
}

// addressKey is the block a client address counts in: itself, or its /64
// for IPv6 (the block one subscriber gets).
func addressKey(a net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap()
	bits := ip.BitLen()
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// firstPacketRead tells conn's listener that its first packet has been
// read (or reading it failed): the connection no longer counts against
// its address's connections overdue for CONNECT.
func firstPacketRead(conn net.Conn) {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	if c, ok := conn.(*countedConn); ok {
		c.firstArrived()
	}
}

// refuse answers a connection past a cap with CONNACK "server
// unavailable" (MQTT 3.1.1 return code 3, or MQTT 5 reason 0x88) after
// reading its CONNECT, then closes it; with too many refusals in progress
// it closes at once.
func (l *listener) refuse(conn net.Conn) {
	select {
	case l.refusing <- struct{}{}:
	default:
		_ = conn.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		var c net.Conn = conn
		if l.tls != nil {
			c = tls.Server(conn, l.tls)
		}
		buf := make([]byte, 512)
		n, _ := io.ReadAtLeast(c, buf, 9)
		answer := []byte{0x20, 0x02, 0x00, 0x03}
		if connectVersion(buf[:n]) == 5 {
			answer = []byte{0x20, 0x03, 0x00, 0x88, 0x00}
		}
		_, _ = c.Write(answer)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite() // the client reads the answer before the close
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
}

// connectVersion is the protocol level of a CONNECT packet's start (0 if
// it is not one).
func connectVersion(b []byte) byte {
	if len(b) < 2 || b[0]>>4 != 1 {
		return 0
	}
	i := 1
	for i < len(b) && i < 5 && b[i]&0x80 != 0 { // remaining length
		i++
	}
	i++
	// protocol name: 2-byte length + "MQTT" (or "MQIsdp"), then the level
	if i+2 > len(b) {
		return 0
	}
	nameLen := int(b[i])<<8 | int(b[i+1])
	i += 2 + nameLen
	if i >= len(b) {
		return 0
	}
	return b[i]
}

// Close stops accepting and calls closeClients (once).
func (l *listener) Close(closeClients func()) {
	if l.end.CompareAndSwap(false, true) {
		closeClients()
	}
	_ = l.ln.Close()
}

// countedConn gives its descriptor back to the listener's count when
// closed (once).
type countedConn struct {
	net.Conn
	l     *listener
	key   netip.Prefix // the client's address block
	timer *time.Timer  // the end of the grace for the first packet
	state int          // firstWaiting, firstOverdue, firstDone (under l.pendMu)
	once  sync.Once
	// reads counts Read calls begun and ended (begun in the high 32
	// bits): equal counts with a Read ended mean the serving goroutine
	// is busy with the connection (not waiting on its client).
	reads atomic.Uint64
}

// Read reads from the connection, noting that the broker waits on it.
func (c *countedConn) Read(b []byte) (int, error) {
	c.reads.Add(1 << 32)
	n, err := c.Conn.Read(b)
	c.reads.Add(1)
	return n, err
}

// brokerBehind reports whether the broker, not c's client, is why c's
// first packet has not been read yet: bytes of c wait unread in the
// kernel, or the broker has read from c and is not reading it now (busy
// with what it read). Without a way to see the kernel's queue, only the
// second counts.
func (c *countedConn) brokerBehind() bool {
	r := c.reads.Load()
	begun, ended := r>>32, r&(1<<32-1)
	if begun > 0 && begun == ended {
		return true
	}
	n, ok := unreadBytes(c.Conn)
	return ok && n > 0
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.firstArrived()
	c.once.Do(func() {
		c.l.live.Add(-1)
		c.l.m.open.Dec()
	})
	return err
}

// descriptorCap is the default connection cap: the process's open-file
// limit minus Reserve.
func descriptorCap() int64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 || rl.Cur > 1<<30 {
		return 10000
	}
	limit := int64(rl.Cur)
	return max(limit-int64(Reserve(rl.Cur)), 1)
}

// Reserve is the part of an open-file limit kept for everything else the
// backend opens (database pool, HTTP clients, files) when the broker's
// cap is derived from it: 1/32 of the limit, at least 64 and at most
// 1,024.
func Reserve(limit uint64) int { return int(min(max(limit/32, 64), 1024)) }
