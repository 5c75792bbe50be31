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
	pendMax  int64         // connections an address may hold before their CONNECT
	connect  time.Duration // deadline to send CONNECT
	log      *slog.Logger
	m        *metrics
	sleep    func(time.Duration)
	refusing chan struct{} // bounds refusals in progress

	live    atomic.Int64
	pendMu  sync.Mutex
	pending map[netip.Prefix]int64 // connections whose CONNECT has not arrived, by address
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
		sleep: time.Sleep, refusing: make(chan struct{}, maxRefusing), pending: map[netip.Prefix]int64{},
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
		key, ok := l.waitForConnect(conn)
		if !ok {
			l.live.Add(-1)
			l.m.pendRefused.Inc()
			l.warn.Warn("connection refused: its address holds its maximum of connections that have not sent CONNECT",
				"max", l.pendMax, "remote", conn.RemoteAddr().String())
			l.refuse(conn)
			continue
		}
		l.m.open.Inc()
		c := &countedConn{Conn: conn, l: l, key: key}
		_ = c.SetDeadline(time.Now().Add(l.connect)) // the server sets the keep-alive deadline after CONNECT
		var nc net.Conn = c
		if l.tls != nil {
			nc = tls.Server(c, l.tls)
		}
		go serve(nc)
	}
}

// waitForConnect counts conn among its address's connections that have
// not sent CONNECT, unless the address holds pendMax of them already.
func (l *listener) waitForConnect(conn net.Conn) (netip.Prefix, bool) {
	key := addressKey(conn.RemoteAddr())
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	if l.pending[key] >= l.pendMax {
		return key, false
	}
	l.pending[key]++
	return key, true
}

// connectArrived takes a connection out of its address's count of those
// that have not sent CONNECT.
func (l *listener) connectArrived(key netip.Prefix) {
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	if l.pending[key]--; l.pending[key] <= 0 {
		delete(l.pending, key)
	}
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
// its address's connections waiting for CONNECT.
func firstPacketRead(conn net.Conn) {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	if c, ok := conn.(*countedConn); ok {
		c.arrived.Do(func() { c.l.connectArrived(c.key) })
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
	l       *listener
	key     netip.Prefix // the client's address block
	arrived sync.Once    // out of the count waiting for CONNECT
	once    sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.arrived.Do(func() { c.l.connectArrived(c.key) })
	c.once.Do(func() {
		c.l.live.Add(-1)
		c.l.m.open.Dec()
	})
	return err
}

// descriptorCap is the default connection cap: the process's open-file
// limit minus a reserve for everything else the backend opens (database
// pool, HTTP clients, files): 1/32 of the limit, at least 64 and at most
// 1,024.
func descriptorCap() int64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 || rl.Cur > 1<<30 {
		return 10000
	}
	limit := int64(rl.Cur)
	reserve := min(max(limit/32, 64), 1024)
	return max(limit-reserve, 1)
}
