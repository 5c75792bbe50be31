package tasmota

import (
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"kluis/internal/mqttconn"
)

// abortConn is the driver's broker connection. Closed by paho after a
// lost connection (a write that timed out, a read error), it resets the
// TCP connection (SO_LINGER 0: the kernel discards what it has not yet
// delivered and sends RST) when bytes written are still unacknowledged by
// the other end; a plain close would leave the kernel delivering them
// after the driver has given up on them, whenever the link comes back: a
// door's POWER ON seconds or minutes after its pulse was reported failed
// (nothing of a lost connection is needed later: commands are QoS 0, and
// the driver's own re-sends go on the next connection).
type abortConn struct {
	net.Conn
	tcp   *net.TCPConn
	d     *Driver
	once  sync.Once
	abort atomic.Bool // reset at close, whatever the kernel still holds
	// written counts the bytes written to the connection.
	written atomic.Int64
	// unackedAtAbort is what the connection held unacknowledged when
	// resetIfUndelivered reset it (after the reset the kernel's count
	// means nothing).
	unackedAtAbort atomic.Int64
}

// Write writes p, paho's writer's one packet. A connection being reset
// takes nothing more (paho's writer sets a fresh write deadline before
// every packet, over the one in the past that resetIfUndelivered set). A
// relay ON is written only for a pulse still waiting for it, before its
// deadline, and by then at the latest (the ON gate, ongate.go); otherwise
// it is withheld: reported written to paho, nothing sent.
func (c *abortConn) Write(p []byte) (int, error) {
	if c.abort.Load() {
		return 0, fmt.Errorf("tasmota: connection being reset: %w", net.ErrClosed)
	}
	if topic, ok := onPublishTopic(p); ok {
		now := time.Now()
		s := c.d.ons.take(topic, now)
		if s == nil {
			c.d.log.Warn("relay ON withheld: its pulse's deadline passed before paho's writer took it", "topic", topic)
			return len(p), nil
		}
		// paho set its write deadline (handOver from now) just before.
		_ = c.Conn.SetWriteDeadline(earliest(s.deadline, now.Add(c.d.handOver())))
	}
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// writeMark is how much c had been written once a command was written
// (c nil: it was not, or not to a TCP connection).
type writeMark struct {
	c *abortConn
	n int64
}

func (c *abortConn) Close() error {
	c.once.Do(func() {
		n, known := unacked(c.tcp)
		if c.abort.Load() {
			n = int(c.unackedAtAbort.Load())
		}
		// The driver's own Close ends gracefully: the OFFs of its Halt
		// and the DISCONNECT may still be waiting for the broker's ACK.
		if c.abort.Load() || (!c.d.disconnecting.Load() && (n > 0 || !known)) {
			if err := c.tcp.SetLinger(0); err == nil {
				c.d.m.resets.Inc()
				c.d.log.Warn("broker connection reset: bytes written not yet delivered are discarded", "unacked_bytes", n)
			}
		}
	})
	return c.Conn.Close()
}

// open opens a broker connection (internal/mqttconn) and keeps it as the
// current one; a TCP connection (tcp, mqtt, and the TLS schemes) closes by
// a reset when bytes are still undelivered (abortConn).
func (d *Driver) open(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	c, err := mqttconn.Open(uri, o)
	if err != nil {
		return nil, fmt.Errorf("tasmota: %w", err)
	}
	tc, ok := mqttconn.TCPConn(c)
	if !ok {
		return c, nil
	}
	ac := &abortConn{Conn: c, tcp: tc, d: d}
	d.mu.Lock()
	d.conn = ac
	d.mu.Unlock()
	return ac, nil
}

// currentConn is the connection opened last (nil before the first, or for
// a websocket).
func (d *Driver) currentConn() *abortConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn
}

// resetIfUndelivered has the connection of a command (mark) closed by a
// reset when the command may still be in the socket, undelivered: an ON
// whose deadline passed unconfirmed must not reach the module later. The
// other end has acknowledged the command when the bytes written minus
// those not yet acknowledged (SIOCOUTQ) reach the mark: then nothing a
// reset could take back, and the connection (a healthy link to a module
// that did not answer) is left alone. A command paho did not write in time
// (no mark) resets the current connection if it holds anything
// unacknowledged.
//
// The reset is made here, before the pulse is reported failed (abortNow:
// the kernel sends RST and discards what it holds before the call
// returns), the descriptor left open: paho takes a read or write on a
// connection closed under it for a deliberate disconnection and never
// connects again. Its reads and writes fail at once instead (deadlines in
// the past, SO_LINGER 0 already set): paho reports the connection lost,
// closes it and connects again. Left to paho's close, the reset came
// after the pulse had been reported failed, and a link coming back
// meanwhile took the ON to the module (once in three runs of
// TestUndeliveredOnIsDiscardedByAReset). Where abortNow is not available
// (not Linux) the reset still waits for paho's close.
func (d *Driver) resetIfUndelivered(mark writeMark) {
	c := mark.c
	if c == nil {
		if c = d.currentConn(); c == nil {
			return
		}
		if n, known := unacked(c.tcp); known && n == 0 {
			return
		}
	} else if n, known := unacked(c.tcp); known && c.written.Load()-int64(n) >= mark.n {
		return
	}
	n, _ := unacked(c.tcp)
	c.unackedAtAbort.Store(int64(n))
	c.abort.Store(true)
	_ = c.tcp.SetLinger(0)
	abortNow(c.tcp)
	past := time.Now().Add(-time.Second)
	_ = c.tcp.SetReadDeadline(past)
	_ = c.tcp.SetWriteDeadline(past)
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
