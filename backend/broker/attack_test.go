package broker

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// These tests come from attacking the broker at the packet level with a
// raw TCP client (docs/security.md, "Probed and held").

// stallingReader gives its bytes, then reports that nothing more came
// (a client that announced a large packet and stopped sending).
type stallingReader struct{ b []byte }

func (s *stallingReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

// A remaining length is a promise, not bytes: a client that announced a
// packet of 1 MB and sent 100 bytes of it cost the broker 1 MB at once
// (the body was allocated before it was read), so a device's credentials
// opening connections that each announce the limit and stall held
// gigabytes (before CONNECT too: 64 KB each, for anyone). What a packet
// costs now grows with what arrives.
func TestAnnouncedLengthIsNotAllocated(t *testing.T) {
	const announced = 1 << 20
	hdr := appendLength([]byte{pktPublish << 4}, announced)
	in := append(hdr, make([]byte, 100)...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err := readPacket(bufio.NewReaderSize(&stallingReader{b: in}, readBufferSize), announced)
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<10), "bytes allocated for 100 bytes received")

	// and a whole packet still reads whole, in any chunks
	body := bytes.Repeat([]byte("kluis"), 50_000)
	whole := append(appendLength([]byte{pktPublish << 4}, len(body)), body...)
	h, got, err := readPacket(bufio.NewReaderSize(io.MultiReader(bytes.NewReader(whole[:7]), bytes.NewReader(whole[7:])), 16), len(body))
	require.NoError(t, err)
	assert.Equal(t, byte(pktPublish<<4), h)
	assert.Equal(t, body, got)
}

// One device's credentials held any number of connections, each with a
// client id of its own ("{device}.1", "{device}.2", ...), up to the
// broker's cap: the whole fleet's. Now a device holds at most
// MaxDeviceConnections at once; the next is refused "server unavailable"
// while another device still connects, and taking over one of its own
// sessions (the same client id) is not a new connection.
func TestDeviceConnectionsAreCapped(t *testing.T) {
	b, _ := start(t)
	held := make([]*rawClient, 0, defaultMaxDeviceConnections)
	for i := range defaultMaxDeviceConnections {
		rc := dialRaw(t, b.Addr())
		rc.login(fmt.Sprintf("dev-a.%d", i), "dev-a", "pw-dev-a", 30, "", "")
		held = append(held, rc)
	}
	over := dialRaw(t, b.Addr())
	over.send(connectPkt("dev-a.extra", "dev-a", "pw-dev-a", 30, "", ""))
	hdr, body := over.next()
	assert.Equal(t, byte(pktConnack<<4), hdr)
	assert.Equal(t, []byte{0, connUnavailable}, body, "one connection too many for dev-a")
	assert.True(t, over.closed())

	dialRaw(t, b.Addr()).login("dev-b", "dev-b", "pw-dev-b", 30, "", "")
	again := dialRaw(t, b.Addr())
	again.login("dev-a.0", "dev-a", "pw-dev-a", 30, "", "")
	assert.True(t, held[0].closed(), "taken over")

	_ = held[1].c.Close()
	testenv.Eventually(t, "a place is free again", func() bool {
		rc := dialRaw(t, b.Addr())
		rc.send(connectPkt("dev-a.later", "dev-a", "pw-dev-a", 30, "", ""))
		_, body := rc.next()
		return body[1] == connAccepted
	})
}

// A keep-alive of 0 (never time out) or beyond MaxKeepAlive let a
// connection whose peer vanished without a FIN hold its place and its
// device's session for hours or for ever. Refused, as Mosquitto does with
// max_keepalive (deploy/mosquitto/mosquitto.conf): "identifier rejected".
func TestKeepAliveIsBounded(t *testing.T) {
	b, _ := start(t)
	for _, ka := range []uint16{0, defaultMaxKeepAlive + 1, 65535} {
		rc := dialRaw(t, b.Addr())
		rc.send(connectPkt("dev-a", "dev-a", "pw-dev-a", ka, "", ""))
		hdr, body := rc.next()
		assert.Equal(t, byte(pktConnack<<4), hdr)
		assert.Equal(t, []byte{0, connBadClientID}, body, "keep-alive %d", ka)
		assert.True(t, rc.closed())
	}
	dialRaw(t, b.Addr()).login("dev-a", "dev-a", "pw-dev-a", defaultMaxKeepAlive, "", "")
}

// Probes that held (kept as tests so that they keep holding).
func TestProbedAndHeld(t *testing.T) {
	b, _ := start(t)
	login := connectPkt("dev-a", "dev-a", "pw-dev-a", 30, "", "")
	closes := map[string][][]byte{
		"U+0000 in a PUBLISH topic":       {login, packet(pktPublish<<4, str("kluis/v1/dev/dev-a/event\x00"), []byte("x"))},
		"U+0000 in a topic filter":        {login, packet(pktSubscribe<<4|2, []byte{0, 1}, str("kluis/\x00/#"), []byte{0})},
		"surrogate half in a topic":       {login, packet(pktPublish<<4, str("kluis/\xed\xa0\x80"), []byte("x"))},
		"SUBSCRIBE packet id 0":           {login, packet(pktSubscribe<<4|2, []byte{0, 0}, str("kluis/v1/dev/dev-a/cmd"), []byte{1})},
		"SUBSCRIBE QoS 3":                 {login, packet(pktSubscribe<<4|2, []byte{0, 1}, str("kluis/v1/dev/dev-a/cmd"), []byte{3})},
		"PUBLISH QoS 2 id 0":              {login, packet(pktPublish<<4|4, str("kluis/v1/dev/dev-a/event"), []byte{0, 0})},
		"PUBLISH QoS 1 to another device": {login, packet(pktPublish<<4|2, str("kluis/v1/dev/dev-b/event"), []byte{0, 1})},
		"PUBLISH QoS 1 on $SYS":           {login, packet(pktPublish<<4|2, str("$SYS/broker/x"), []byte{0, 1})},
		"CONNECT level 3 named MQTT":      {packet(pktConnect<<4, str("MQTT"), []byte{3, 0xC2, 0, 30}, str("dev-a"), str("dev-a"), str("pw-dev-a"))},
		"CONNECT will QoS 3":              {packet(pktConnect<<4, str("MQTT"), []byte{4, 0xC2 | 0x04 | 3<<3, 0, 30}, str("dev-a"), str("t"), str("w"), str("dev-a"), str("pw-dev-a"))},
		"CONNECT reserved flag":           {packet(pktConnect<<4, str("MQTT"), []byte{4, 0xC3, 0, 30}, str("dev-a"), str("dev-a"), str("pw-dev-a"))},
		"packet type 15 (MQTT 5 AUTH)":    {login, {0xf0, 0x00}},
		"CONNECT with a 70 KB client id":  {connectPkt("dev-a."+strings.Repeat("x", 70<<10), "dev-a", "pw-dev-a", 30, "", "")},
		"CONNECT trailing bytes":          {packet(pktConnect<<4, str("MQTT"), []byte{4, 0xC2, 0, 30}, str("dev-a"), str("dev-a"), str("pw-dev-a"), []byte{0})},
	}
	closesEach(t, b.Addr(), closes)

	// client ids: empty (a device: not authorized); 60 KB under the
	// device's prefix (accepted: bounded by the CONNECT's 64 KB and the
	// device's connections)
	empty := dialRaw(t, b.Addr())
	empty.send(connectPkt("", "dev-a", "pw-dev-a", 30, "", ""))
	_, body := empty.next()
	assert.Equal(t, []byte{0, connNotAuthorized}, body, "empty client id")
	dialRaw(t, b.Addr()).login("dev-a."+strings.Repeat("x", 60<<10), "dev-a", "pw-dev-a", 30, "", "")

	// a remaining length or a body cut short waits for the rest no longer
	// than the keep-alive allows
	for _, part := range [][]byte{{pktPingreq << 4, 0x80}, {pktPublish << 4, 0x7f, 0, 1}} {
		rc := dialRaw(t, b.Addr())
		rc.login("dev-a.short", "dev-a", "pw-dev-a", 1, "", "")
		rc.send(part)
		assert.True(t, rc.closed(), "% x", part)
	}

	// QoS 2 messages never released: at most 1,024 held, the next closes
	q2 := dialRaw(t, b.Addr())
	q2.login("dev-a.q2", "dev-a", "pw-dev-a", 30, "", "")
	for id := 1; id <= 1025; id++ {
		q2.send(packet(pktPublish<<4|4, str("kluis/v1/dev/dev-a/event"), []byte{byte(id >> 8), byte(id)}, []byte("x")))
	}
	assert.True(t, q2.closed(), "the 1,025th unreleased QoS 2 message")

	// a flood of retained messages: one kept per topic, on the device's
	// own six topics only
	rf := dialRaw(t, b.Addr())
	rf.login("dev-a.retain", "dev-a", "pw-dev-a", 30, "", "")
	for i := range 600 {
		kind := wire.DeviceKinds()[i%len(wire.DeviceKinds())]
		rf.send(packet(pktPublish<<4|1, str("kluis/v1/dev/dev-a/"+string(kind)), []byte(fmt.Sprint(i))))
		rf.send(packet(pktPublish<<4|1, str(fmt.Sprintf("kluis/v1/dev/dev-%d/presence", i)), []byte("x"))) // dropped: not its own
	}
	rf.send(packet(pktPingreq << 4))
	hdr, _ := rf.next()
	require.Equal(t, byte(pktPingresp<<4), hdr)
	b.srv.mu.RLock()
	assert.Len(t, b.srv.retained, len(wire.DeviceKinds()), "one retained message per own topic")
	b.srv.mu.RUnlock()

	rc := dialRaw(t, b.Addr())
	rc.login("dev-a", "dev-a", "pw-dev-a", 30, "", "")
	// acknowledgements of nothing are ignored or answered, never fatal
	rc.send(packet(pktPuback<<4, []byte{0x55, 0x55}))
	rc.send(packet(pktPubcomp<<4, []byte{0x55, 0x56}))
	rc.send(packet(pktPubrel<<4|2, []byte{0x55, 0x57}))
	hdr, body = rc.next()
	assert.Equal(t, byte(pktPubcomp<<4), hdr)
	assert.Equal(t, []byte{0x55, 0x57}, body)
	// thousands of filters in one SUBSCRIBE, every one outside dev-a's
	// ACL: each refused, the connection kept, no subscription made
	const n = 5000
	filters := make([][]byte, 0, 2*n+1)
	filters = append(filters, []byte{0, 2})
	for i := range n {
		f := []string{"#", "+/+/+/+/+", "kluis/v1/dev/dev-b/cmd", "$SYS/#", "$share/g/kluis/v1/dev/dev-a/cmd",
			"kluis/v1/dev/+/cmd", "kluis/v1/dev/dev-a/#", "kluis/v1/dev/dev-a/event"}[i%8]
		filters = append(filters, str(f), []byte{1})
	}
	rc.send(packet(pktSubscribe<<4|2, filters...))
	hdr, body = rc.next()
	require.Equal(t, byte(pktSuback<<4), hdr)
	assert.Equal(t, append([]byte{0, 2}, bytes.Repeat([]byte{subackFailure}, n)...), body)
	b.srv.mu.RLock()
	assert.Empty(t, b.srv.wild, "no wildcard subscription")
	assert.Empty(t, b.srv.exact, "no subscription")
	b.srv.mu.RUnlock()
	rc.send(packet(pktPingreq << 4))
	hdr, _ = rc.next()
	assert.Equal(t, byte(pktPingresp<<4), hdr, "still connected")
}

// A device that floods requests and never reads its answers held every
// worker that answers for the whole fleet: the first answer it did not
// take blocked its worker for Options.WriteTimeout, and every other
// worker that picked one of its requests waited behind that one for the
// client's write lock, so another device's request waited as long (the
// backend's device link answers with 64 workers from one queue, which a
// flood fills). Now a message that cannot have the client's write lock
// within a second is dropped (counted in kluis_broker_dropped_total), and
// one for a client whose write has been stuck that long is dropped at
// once: a stuck client holds one publisher, the rest go on.
func TestStalledReaderDoesNotHoldThePublishers(t *testing.T) {
	reg := prometheus.NewRegistry()
	b, err := New(Options{Addr: "127.0.0.1:0", Credentials: testCreds, WriteTimeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })

	// the device link in small: a queue and workers answering each request
	const workers = 4
	queue := make(chan string, 4)
	stop := make(chan struct{})
	var busySince [workers]atomic.Int64 // when a worker's answer began, 0 when idle
	big := make([]byte, 1<<20)
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); _ = b.Close(); wg.Wait() })
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case topic := <-queue:
					answer := []byte("ok")
					if strings.Contains(topic, "/dev-a/") {
						answer = big
					}
					busySince[w].Store(time.Now().UnixNano())
					_ = b.Publish(strings.TrimSuffix(topic, "/req")+"/res", answer, false, 1)
					busySince[w].Store(0)
				}
			}
		}()
	}
	require.NoError(t, b.Subscribe("kluis/v1/dev/+/verify/req", func(topic string, _ []byte) {
		select {
		case queue <- topic:
		case <-stop:
		}
	}))

	flooder := dialRaw(t, b.Addr())
	flooder.login("dev-a", "dev-a", "pw-dev-a", 30, "", "")
	flooder.send(packet(pktSubscribe<<4|2, []byte{0, 1}, str("kluis/v1/dev/dev-a/verify/res"), []byte{1}))
	hdr, _ := flooder.next()
	require.Equal(t, byte(pktSuback<<4), hdr)
	go func() { // and never reads again
		req := packet(pktPublish<<4, str("kluis/v1/dev/dev-a/verify/req"), []byte(`{"v":1}`))
		for range 200 {
			if _, err := flooder.c.Write(req); err != nil {
				return
			}
		}
	}()
	testenv.Eventually(t, "an answer to the flooder is stuck", func() bool {
		for w := range workers {
			if s := busySince[w].Load(); s != 0 && time.Since(time.Unix(0, s)) > 2*time.Second {
				return true
			}
		}
		return false
	})

	other := dialRaw(t, b.Addr())
	other.login("dev-b", "dev-b", "pw-dev-b", 30, "", "")
	other.send(packet(pktSubscribe<<4|2, []byte{0, 1}, str("kluis/v1/dev/dev-b/verify/res"), []byte{1}))
	hdr, _ = other.next()
	require.Equal(t, byte(pktSuback<<4), hdr)
	other.send(packet(pktPublish<<4, str("kluis/v1/dev/dev-b/verify/req"), []byte(`{"v":1}`)))
	hdr, body := other.next() // within mqtttest.Wait, long before the flooder's write times out
	assert.Equal(t, byte(pktPublish<<4|2), hdr)
	assert.True(t, bytes.HasSuffix(body, []byte("ok")), "dev-b's answer")
	assert.Positive(t, metric(t, reg, "kluis_broker_dropped_total", "", ""), "the flooder's answers dropped")
}

// Topics that look like a device's own but are not: refused both ways.
func TestAllowedRefusesLookalikes(t *testing.T) {
	for _, tp := range []string{"kluis/v1/dev/dev-a/event/", "kluis/v1/dev/dev-a/verify/req/x", "kluis//v1/dev/dev-a/event",
		"/kluis/v1/dev/dev-a/event", "kluis/v1/dev/dev-a/../dev-b/event", "kluis/v1/dev/dev-a/verify",
		"kluis/v1/dev/DEV-A/event", "kluis/v1/dev/dev-a/event\u200b", "kluis/v2/dev/dev-a/event"} {
		assert.False(t, Allowed(RoleDevice, "dev-a", tp, true), tp)
		assert.False(t, Allowed(RoleDevice, "dev-a", tp, false), tp)
	}
}

// FuzzSession drives a whole connection: a device (or, for an odd first
// byte, the backend) logs in, then any bytes follow. Whatever they are,
// the connection ends when they do, without a panic, and leaves nothing
// behind: no session, no subscription, no place counted for its device.
func FuzzSession(f *testing.F) {
	own := func(k string) []byte { return str("kluis/v1/dev/dev-a/" + k) }
	f.Add(bytes.Join([][]byte{{0},
		packet(pktSubscribe<<4|2, []byte{0, 1}, own("cmd"), []byte{1}, str("#"), []byte{0}),
		packet(pktPublish<<4|2, own("event"), []byte{0, 2}, []byte(`{"v":1}`)),
		packet(pktPublish<<4|4|1, own("presence"), []byte{0, 3}, []byte("on")),
		packet(pktPubrel<<4|2, []byte{0, 3}),
		packet(pktUnsubscribe<<4|2, []byte{0, 4}, own("cmd")),
		packet(pktPingreq << 4),
		packet(pktDisconnect << 4)}, nil))
	f.Add(bytes.Join([][]byte{{1},
		packet(pktSubscribe<<4|2, []byte{0, 1}, str("$share/g/kluis/v1/dev/+/event"), []byte{1}, str("kluis/#"), []byte{2}),
		packet(pktPublish<<4|2, str("kluis/v1/dev/dev-a/cmd"), []byte{0, 2}, []byte("c")),
		packet(pktUnsubscribe<<4|2, []byte{0, 4}, str("$share/g/kluis/v1/dev/+/event"))}, nil))
	f.Add([]byte{0, pktPublish << 4, 0x7f, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		s := newServer(testCreds, time.Second, 200*time.Millisecond, 64<<10,
			slog.New(slog.NewTextHandler(io.Discard, nil)), newMetrics(prometheus.NewRegistry()))
		s.maxPerDevice, s.maxKeepAlive = defaultMaxDeviceConnections, defaultMaxKeepAlive
		if err := s.subscribeFunc("#", func(string, []byte) {}); err != nil {
			t.Fatal(err)
		}
		login := connectPkt("dev-a", "dev-a", "pw-dev-a", 1, "kluis/v1/dev/dev-a/presence", "gone")
		if data[0]&1 == 1 {
			login = connectPkt("backend-1", "backend", "pw-backend", 1, "", "")
		}
		srv, cl := net.Pipe()
		done := make(chan struct{})
		go func() { defer close(done); s.serve(srv) }()
		go func() { _, _ = io.Copy(io.Discard, cl) }()
		_, _ = cl.Write(login)
		_, _ = cl.Write(data[1:])
		_ = cl.Close()
		<-done
		s.mu.RLock()
		defer s.mu.RUnlock()
		if len(s.clients) != 0 || len(s.pending) != 0 || len(s.devices) != 0 {
			t.Fatalf("left behind: %d sessions, %d pending, %d devices counted", len(s.clients), len(s.pending), len(s.devices))
		}
		if len(s.wild) != 1 || len(s.exact) != 0 {
			t.Fatalf("left behind: %d wildcard and %d exact subscriptions besides the in-process one", len(s.wild)-1, len(s.exact))
		}
	})
}

// A device's last will must be its own presence topic, as the package
// says: it was any topic the device may publish, so a thief's connection
// made with a stolen password could leave a will on the device's event
// topic (an alarm_cleared, a pickup_completed), published by the broker
// after DisconnectDevice closed it when the password was set again: one
// message in after the thief was shut out. Refused "not authorized" now.
func TestWillOnlyOnOwnPresence(t *testing.T) {
	b, _ := start(t)
	for _, k := range wire.DeviceKinds() {
		rc := dialRaw(t, b.Addr())
		rc.send(connectPkt("dev-a", "dev-a", "pw-dev-a", 30, "kluis/v1/dev/dev-a/"+string(k), `{"v":1}`))
		_, body := rc.next()
		want := byte(connNotAuthorized)
		if k == wire.KindPresence {
			want = connAccepted
		}
		assert.Equal(t, []byte{0, want}, body, "a will on %s", k)
	}
}
