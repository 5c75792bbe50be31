package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"kluis/deploy/dev/testenv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawConnect writes an MQTT 3.1.1 CONNECT (clean session, keep-alive 30 s)
// on c and returns the CONNACK's return code.
func rawConnect(t *testing.T, c net.Conn, clientID, user, pass string) byte {
	t.Helper()
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	body := append(str("MQTT"), 4, 0xC2, 0, 30) // level 4; user, password, clean session
	body = append(body, str(clientID)...)
	body = append(body, str(user)...)
	body = append(body, str(pass)...)
	require.Less(t, len(body), 128)
	_, err := c.Write(append([]byte{0x10, byte(len(body))}, body...))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	ack := make([]byte, 4)
	_, err = io.ReadFull(c, ack)
	require.NoError(t, err)
	require.Equal(t, []byte{0x20, 0x02}, ack[:2], "a CONNACK")
	return ack[3]
}

func gauge(t *testing.T, reg *prometheus.Registry, family string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == family {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

// The broker refuses connections past MaxConnections with CONNACK "server
// unavailable" and accepts again once one closes.
func TestConnectionCap(t *testing.T) {
	reg := prometheus.NewRegistry()
	b, err := New(Options{Addr: "127.0.0.1:0", Credentials: testCreds, MaxConnections: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })

	devA := connect(t, options(b.Addr(), "dev-a", "dev-a", "pw-dev-a"))
	assert.Equal(t, 1, b.Connections())
	assert.Equal(t, 1.0, gauge(t, reg, "kluis_broker_connections_open"))

	c, err := net.Dial("tcp", b.Addr())
	require.NoError(t, err)
	assert.Equal(t, byte(3), rawConnect(t, c, "dev-b", "dev-b", "pw-dev-b"), "server unavailable")
	_ = c.Close()
	assert.Error(t, connectErr(options(b.Addr(), "dev-b", "dev-b", "pw-dev-b")), "paho sees the refusal")
	assert.Equal(t, 2.0, metric(t, reg, "kluis_broker_connections_refused_total", "", ""))
	assert.True(t, devA.IsConnectionOpen(), "the connected device stays")
	assert.NoError(t, b.Healthy(), "a full broker still accepts (and refuses)")
	assert.True(t, b.Full(), "but says it is full")
	assert.Equal(t, 1.0, gauge(t, reg, "kluis_broker_full"))

	devA.Disconnect(100)
	testenv.Eventually(t, "the closed connection is given back", func() bool { return b.Connections() == 0 })
	assert.False(t, b.Full())
	assert.Equal(t, 0.0, gauge(t, reg, "kluis_broker_full"))
	assert.NoError(t, connectErr(options(b.Addr(), "dev-b", "dev-b", "pw-dev-b")))
}

// openFiles counts the process's open descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// Out of file descriptors, the broker's accept fails (EMFILE): it counts
// it, /readyz's check says so, and once descriptors are free again it
// accepts the connection that waited in the kernel's queue.
func TestAcceptRecoversFromDescriptorExhaustion(t *testing.T) {
	reg := prometheus.NewRegistry()
	b, err := New(Options{Addr: "127.0.0.1:0", Credentials: testCreds,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	require.NoError(t, connectErr(options(b.Addr(), "dev-a", "dev-a", "pw-dev-a")), "positive control")
	require.NoError(t, b.Healthy())
	// Its descriptor must be free before the count below.
	testenv.Eventually(t, "the control connection closes", func() bool { return b.Connections() == 0 })

	var orig syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig))
	low := orig
	low.Cur = uint64(openFiles(t) + 32)
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
	var fillers []*os.File
	release := func() {
		for _, f := range fillers {
			_ = f.Close()
		}
		fillers = nil
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig)
	}
	t.Cleanup(release)
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			require.True(t, errors.Is(err, syscall.EMFILE), "%v", err)
			break
		}
		fillers = append(fillers, f)
		require.Less(t, len(fillers), 1000)
	}
	// One descriptor for the client's socket; none is left for accept.
	_ = fillers[len(fillers)-1].Close()
	fillers = fillers[:len(fillers)-1]
	c, err := net.Dial("tcp", b.Addr())
	require.NoError(t, err)
	defer c.Close()
	testenv.Eventually(t, "accept fails", func() bool { return b.Healthy() != nil })
	testenv.Eventually(t, "the failure is counted", func() bool {
		return metric(t, reg, "kluis_broker_accept_errors_total", "", "") >= 1
	})
	assert.ErrorIs(t, b.Healthy(), syscall.EMFILE)

	release()
	assert.Equal(t, byte(0), rawConnect(t, c, "dev-b", "dev-b", "pw-dev-b"), "the waiting connection is served")
	assert.NoError(t, b.Healthy())
	assert.NoError(t, connectErr(options(b.Addr(), "dev-a", "dev-a", "pw-dev-a")), "and new ones too")
}

// Connections that have not sent their CONNECT within the grace (2 s;
// 200 ms here) are capped per client address (MaxPendingPerAddress): past
// it the address's next such connection is closed at the end of its grace
// and counted, while connections from other addresses are served, and
// connections that send CONNECT at once are never held to it, however
// many arrive together from one address (a fleet behind one NAT). Found
// black-box: idle connections from one address (19,600, each kept for the
// 10 s CONNECT deadline and opened again) took every place of the broker
// (19,375 here): 2,665 connections were refused "server unavailable"
// while they lasted, whoever made them.
func TestPendingConnectionsCappedPerAddress(t *testing.T) {
	reg := prometheus.NewRegistry()
	anyDevice := func(_ context.Context, user, pass string) (string, Role, bool) {
		return user, RoleDevice, strings.HasPrefix(user, "d") && pass == "pw"
	}
	b, err := New(Options{Addr: "127.0.0.1:0", Credentials: anyDevice, MaxConnections: 500, MaxPendingPerAddress: 16,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg})
	require.NoError(t, err)
	const grace = 200 * time.Millisecond
	b.listener.grace = grace
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	dialFrom := func(local string) net.Conn {
		d := net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", b.Addr())
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	overdue := func() int64 {
		b.listener.pendMu.Lock()
		defer b.listener.pendMu.Unlock()
		var n int64
		for _, v := range b.listener.overdue {
			n += v
		}
		return n
	}

	// 40 connections from one address at once, more than the cap, each
	// sending its CONNECT as a device does: all served.
	var burst []net.Conn
	for range 40 {
		burst = append(burst, dialFrom("127.0.0.1"))
	}
	for i, c := range burst {
		require.Equal(t, byte(0), rawConnect(t, c, fmt.Sprintf("d%d", i), fmt.Sprintf("d%d", i), "pw"), "device %d", i)
	}
	// 16 idle connections from that address are held past their grace ...
	var idle []net.Conn
	for range 16 {
		idle = append(idle, dialFrom("127.0.0.1"))
	}
	testenv.Eventually(t, "16 idle connections overdue", func() bool { return overdue() == 16 })
	// ... the 17th is closed at the end of its grace,
	c := dialFrom("127.0.0.1")
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "closed by the broker (a timeout: it was held)")
	assert.Equal(t, 1.0, metric(t, reg, "kluis_broker_pending_refused_total", "", ""))
	assert.Equal(t, 0.0, metric(t, reg, "kluis_broker_connections_refused_total", "", ""), "the broker is not full")
	assert.Equal(t, int64(16), overdue())
	// ... another address connects, and so does a device of the same
	// address that sends its CONNECT at once,
	assert.Equal(t, byte(0), rawConnect(t, dialFrom("127.0.0.2"), "d41", "d41", "pw"))
	assert.Equal(t, byte(0), rawConnect(t, dialFrom("127.0.0.1"), "d42", "d42", "pw"))
	// ... and an overdue connection that sends its CONNECT makes room for
	// another idle one.
	assert.Equal(t, byte(0), rawConnect(t, idle[0], "d43", "d43", "pw"))
	assert.Equal(t, int64(15), overdue())
	late := dialFrom("127.0.0.1")
	testenv.Eventually(t, "the late connection overdue", func() bool { return overdue() == 16 })
	assert.Equal(t, byte(0), rawConnect(t, late, "d44", "d44", "pw"), "held, not closed")
	assert.Equal(t, 1.0, metric(t, reg, "kluis_broker_pending_refused_total", "", ""))
}

// The per-address cap never closes a connection for the broker's own
// delay: in a storm on a busy machine the goroutine serving a connection
// may not read its CONNECT for seconds although the client sent it at
// once. 12 connections from one address over a cap of 4 stay and are
// served: 6 whose client sent its 5 bytes at once while the serving
// goroutine was not scheduled for 4 graces (the bytes wait in the
// kernel), 6 whose serving goroutine read a first byte and then worked
// on it for 4 graces before answering (a TLS handshake: the client sends
// the rest only after that answer). Idle connections from that address
// still count, and the 5th is closed at the end of its grace.
func TestPendingCapSparesConnectionsTheBrokerIsBehindOn(t *testing.T) {
	reg := prometheus.NewRegistry()
	const grace = 100 * time.Millisecond
	l, err := newListener("test", "127.0.0.1:0", nil, 100, 4, wait, slog.New(slog.NewTextHandler(io.Discard, nil)), newMetrics(reg))
	require.NoError(t, err)
	l.grace = grace
	go l.Serve(func(conn net.Conn) {
		defer conn.Close()
		buf := make([]byte, 5)
		time.Sleep(4 * grace) // not scheduled for 4 graces
		if _, err := io.ReadFull(conn, buf[:1]); err != nil {
			return
		}
		if buf[0] == 'b' {
			time.Sleep(4 * grace) // busy with what it read
			if _, err := conn.Write([]byte("?")); err != nil {
				return
			}
		}
		if _, err := io.ReadFull(conn, buf[1:]); err != nil {
			return
		}
		firstPacketRead(conn)
		_, _ = conn.Write([]byte("ok"))
	})
	t.Cleanup(func() { l.Close(func() {}) })
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", l.Address(), wait)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		require.NoError(t, c.SetDeadline(time.Now().Add(wait)))
		return c
	}
	read := func(c net.Conn, want string) error {
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c, got); err != nil {
			return err
		}
		assert.Equal(t, want, string(got))
		return nil
	}

	var sent, busy []net.Conn
	for range 6 {
		c := dial()
		_, err := c.Write([]byte("a1234"))
		require.NoError(t, err)
		sent = append(sent, c)
		c = dial()
		_, err = c.Write([]byte("b"))
		require.NoError(t, err)
		busy = append(busy, c)
	}
	for i, c := range busy {
		require.NoError(t, read(c, "?"), "connection b%d answered, not closed", i)
		_, err := c.Write([]byte("1234"))
		require.NoError(t, err)
		require.NoError(t, read(c, "ok"), "connection b%d served", i)
	}
	for i, c := range sent {
		require.NoError(t, read(c, "ok"), "connection a%d served, not closed", i)
	}
	assert.Equal(t, 0.0, metric(t, reg, "kluis_broker_pending_refused_total", "", ""))
	assert.Positive(t, metric(t, reg, "kluis_broker_pending_extended_total", "", ""))

	// Idle connections from the same address still count: 4 overdue, the
	// 5th closed at the end of its grace.
	var idle []net.Conn
	for range 4 {
		idle = append(idle, dial())
	}
	testenv.Eventually(t, "4 idle connections overdue", func() bool {
		l.pendMu.Lock()
		defer l.pendMu.Unlock()
		return l.overdue[addressKey(idle[0].LocalAddr())] == 4
	})
	c := dial()
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "closed at the end of its grace")
	assert.Equal(t, 1.0, metric(t, reg, "kluis_broker_pending_refused_total", "", ""))
}
