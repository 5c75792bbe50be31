package broker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/broker/mqtttest"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// str is an MQTT string field, packet a raw packet.
var (
	str    = mqtttest.String
	packet = mqtttest.Packet
)

// connectPkt is a CONNECT of MQTT 3.1.1 with user and password, clean
// session, keepAlive seconds and, if willTopic is set, a QoS 1 retained
// will.
func connectPkt(clientID, user, pass string, keepAlive uint16, willTopic, will string) []byte {
	flags := byte(0xC2)
	parts := [][]byte{str("MQTT"), {4, 0, byte(keepAlive >> 8), byte(keepAlive)}, str(clientID)}
	if willTopic != "" {
		flags |= 0x04 | 1<<3 | 0x20
		parts = append(parts, str(willTopic), str(will))
	}
	parts[1][1] = flags
	return packet(pktConnect<<4, append(parts, str(user), str(pass))...)
}

// rawClient is a connection that speaks MQTT by hand.
type rawClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &rawClient{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawClient) send(b []byte) {
	rc.t.Helper()
	_, err := rc.c.Write(b)
	require.NoError(rc.t, err)
}

// next reads the next packet (header byte and body).
func (rc *rawClient) next() (byte, []byte) {
	rc.t.Helper()
	require.NoError(rc.t, rc.c.SetReadDeadline(time.Now().Add(wait)))
	hdr, body, err := readPacket(rc.r, 1<<20)
	require.NoError(rc.t, err)
	return hdr, body
}

// closed waits until the broker closes the connection.
func (rc *rawClient) closed() bool {
	_ = rc.c.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, rc.r)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout())
}

func (rc *rawClient) login(clientID, user, pass string, keepAlive uint16, willTopic, will string) {
	rc.t.Helper()
	rc.send(connectPkt(clientID, user, pass, keepAlive, willTopic, will))
	hdr, body := rc.next()
	require.Equal(rc.t, byte(pktConnack<<4), hdr)
	require.Equal(rc.t, []byte{0, 0}, body, "accepted")
}

// Malformed input closes that one connection; the broker goes on serving.
func TestMalformedPacketsCloseTheConnection(t *testing.T) {
	b, _ := start(t)
	login := connectPkt("dev-a", "dev-a", "pw-dev-a", 30, "", "")
	cases := map[string][][]byte{
		"first packet not CONNECT":  {packet(pktPingreq << 4)},
		"unknown protocol name":     {packet(pktConnect<<4, str("HTTP"), []byte{4, 2, 0, 30}, str("x"))},
		"CONNECT cut short":         {packet(pktConnect<<4, str("MQTT"), []byte{4, 2})},
		"remaining length 5 bytes":  {{0x10, 0xff, 0xff, 0xff, 0xff, 0x01}},
		"packet over the limit":     {{0x30, 0xff, 0xff, 0xff, 0x7f}},
		"CONNECT over 64 KB":        {{0x10, 0x80, 0x80, 0x08}},
		"password without user":     {packet(pktConnect<<4, str("MQTT"), []byte{4, 0x42, 0, 30}, str("dev-a"), str("pw"))},
		"second CONNECT":            {login, login},
		"packet type 0":             {login, {0x00, 0x00}},
		"SUBSCRIBE with bad flags":  {login, packet(pktSubscribe<<4, []byte{0, 1}, str("kluis/v1/dev/dev-a/cmd"), []byte{1})},
		"SUBSCRIBE without filters": {login, packet(pktSubscribe<<4|2, []byte{0, 1})},
		"PUBLISH QoS 3":             {login, packet(pktPublish<<4|6, str("kluis/v1/dev/dev-a/event"), []byte{0, 1})},
		"PUBLISH to a wildcard":     {login, packet(pktPublish<<4, str("kluis/v1/dev/+/event"))},
		"PUBLISH topic not UTF-8":   {login, packet(pktPublish<<4, str("kluis/\xff"))},
		"PUBLISH QoS 1 id 0":        {login, packet(pktPublish<<4|2, str("kluis/v1/dev/dev-a/event"), []byte{0, 0})},
		"PINGREQ with a body":       {login, packet(pktPingreq<<4, []byte{1})},
	}
	closesEach(t, b.Addr(), cases)
	assert.NoError(t, connectErr(options(b.Addr(), "dev-a", "dev-a", "pw-dev-a")), "and still serves")
}

// closesEach sends each case's packets on a connection of its own and
// expects the broker to close it.
func closesEach(t *testing.T, addr string, cases map[string][][]byte) {
	t.Helper()
	for name, pkts := range cases {
		t.Run(name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			for _, p := range pkts {
				_, _ = rc.c.Write(p)
			}
			assert.True(t, rc.closed(), "the broker closes the connection")
		})
	}
}

// An MQTT 5 CONNECT gets "unacceptable protocol version".
func TestUnsupportedProtocolLevel(t *testing.T) {
	b, _ := start(t)
	rc := dialRaw(t, b.Addr())
	rc.send(packet(pktConnect<<4, str("MQTT"), []byte{5, 2, 0, 30, 0}, str("dev-a")))
	hdr, body := rc.next()
	assert.Equal(t, byte(pktConnack<<4), hdr)
	assert.Equal(t, []byte{0, connBadVersion}, body)
	assert.True(t, rc.closed())
}

// QoS 1 is acknowledged with its id after the message is handed on; QoS 2
// goes through PUBREC, PUBREL, PUBCOMP and is delivered once, even resent.
func TestPublishAcknowledgements(t *testing.T) {
	b, _ := start(t)
	var mu sync.Mutex
	var got []string
	require.NoError(t, b.Subscribe("kluis/v1/dev/+/event", func(topic string, payload []byte) {
		mu.Lock()
		got = append(got, string(payload))
		mu.Unlock()
	}))
	rc := dialRaw(t, b.Addr())
	rc.login("dev-a", "dev-a", "pw-dev-a", 30, "", "")
	topic := str("kluis/v1/dev/dev-a/event")
	rc.send(packet(pktPublish<<4|2, topic, []byte{0x12, 0x34}, []byte("q1")))
	hdr, body := rc.next()
	assert.Equal(t, byte(pktPuback<<4), hdr)
	assert.Equal(t, []byte{0x12, 0x34}, body)
	mu.Lock()
	assert.Equal(t, []string{"q1"}, got, "handed on before the PUBACK")
	mu.Unlock()

	rc.send(packet(pktPublish<<4|4, topic, []byte{0, 7}, []byte("q2")))
	hdr, body = rc.next()
	assert.Equal(t, byte(pktPubrec<<4), hdr)
	assert.Equal(t, []byte{0, 7}, body)
	rc.send(packet(pktPublish<<4|4|8, topic, []byte{0, 7}, []byte("q2"))) // DUP before PUBREL
	hdr, _ = rc.next()
	assert.Equal(t, byte(pktPubrec<<4), hdr)
	rc.send(packet(pktPubrel<<4|2, []byte{0, 7}))
	hdr, body = rc.next()
	assert.Equal(t, byte(pktPubcomp<<4), hdr)
	assert.Equal(t, []byte{0, 7}, body)
	rc.send(packet(pktPingreq << 4))
	hdr, _ = rc.next()
	assert.Equal(t, byte(pktPingresp<<4), hdr)
	mu.Lock()
	assert.Equal(t, []string{"q1", "q2"}, got)
	mu.Unlock()
}

// A client that stays silent past 1.5 times its keep-alive is
// disconnected, and its last will published.
func TestKeepAliveTimeout(t *testing.T) {
	b, _ := start(t)
	presence := make(chan string, 4)
	require.NoError(t, b.Subscribe("kluis/v1/dev/+/presence", func(_ string, p []byte) { presence <- string(p) }))
	rc := dialRaw(t, b.Addr())
	rc.login("dev-a", "dev-a", "pw-dev-a", 1, "kluis/v1/dev/dev-a/presence", "gone")
	began := time.Now()
	assert.True(t, rc.closed())
	assert.GreaterOrEqual(t, time.Since(began), time.Second, "not before the keep-alive")
	select {
	case p := <-presence:
		assert.Equal(t, "gone", p)
	case <-time.After(wait):
		t.Fatal("no last will")
	}
	testenv.Eventually(t, "the connection is given back", func() bool { return b.Connections() == 0 })
}

// A new connection with the same client id takes the session over: the
// old connection is closed without its last will, the new one serves, and
// a DISCONNECT ends a session without its will.
func TestTakeover(t *testing.T) {
	b, _ := start(t)
	presence := make(chan string, 4)
	require.NoError(t, b.Subscribe("kluis/v1/dev/+/presence", func(_ string, p []byte) { presence <- string(p) }))
	old := dialRaw(t, b.Addr())
	old.login("dev-a", "dev-a", "pw-dev-a", 30, "kluis/v1/dev/dev-a/presence", "old-gone")
	cur := dialRaw(t, b.Addr())
	cur.login("dev-a", "dev-a", "pw-dev-a", 30, "kluis/v1/dev/dev-a/presence", "cur-gone")
	assert.True(t, old.closed(), "the old connection is closed")
	cur.send(packet(pktSubscribe<<4|2, []byte{0, 1}, str("kluis/v1/dev/dev-a/cmd"), []byte{1}))
	hdr, body := cur.next()
	assert.Equal(t, byte(pktSuback<<4), hdr)
	assert.Equal(t, []byte{0, 1, 1}, body)
	require.NoError(t, b.Publish("kluis/v1/dev/dev-a/cmd", []byte("c"), false, 1))
	hdr, body = cur.next()
	assert.Equal(t, byte(pktPublish<<4|2), hdr)
	assert.Equal(t, append(str("kluis/v1/dev/dev-a/cmd"), 0, 1, 'c'), body)
	cur.send(packet(pktDisconnect << 4))
	assert.True(t, cur.closed())
	testenv.Eventually(t, "both connections are given back", func() bool { return b.Connections() == 0 })
	select {
	case p := <-presence:
		t.Fatalf("a will was published: %q", p)
	default:
	}
}

// Retained messages (presence) reach later subscribers, in-process and
// over TCP, with the retain flag; an empty retained message clears.
func TestRetained(t *testing.T) {
	b, _ := start(t)
	devA := connect(t, options(b.Addr(), "dev-a", "dev-a", "pw-dev-a"))
	mqtttest.Publish(t, devA, "kluis/v1/dev/dev-a/presence", 1, true, "online")
	require.NoError(t, b.Publish("kluis/v1/dev/dev-b/presence", []byte("offline"), true, 1))
	testenv.Eventually(t, "retained", func() bool { return len(b.srv.retainedFor("kluis/v1/dev/+/presence")) == 2 })

	got := map[string]string{}
	require.NoError(t, b.Subscribe(wire.Subscription(wire.KindPresence), func(topic string, p []byte) { got[topic] = string(p) }))
	assert.Equal(t, map[string]string{"kluis/v1/dev/dev-a/presence": "online", "kluis/v1/dev/dev-b/presence": "offline"}, got)

	rc := dialRaw(t, b.Addr())
	rc.login("backend-1", "backend", "pw-backend", 30, "", "")
	rc.send(packet(pktSubscribe<<4|2, []byte{0, 9}, str("kluis/v1/dev/dev-a/presence"), []byte{1}))
	hdr, _ := rc.next()
	assert.Equal(t, byte(pktSuback<<4), hdr)
	hdr, body := rc.next()
	assert.Equal(t, byte(pktPublish<<4|2|1), hdr, "QoS 1, retained")
	assert.Equal(t, str("kluis/v1/dev/dev-a/presence"), body[:len("kluis/v1/dev/dev-a/presence")+2])
	assert.Equal(t, "online", string(body[len(body)-len("online"):]))

	require.NoError(t, b.Publish("kluis/v1/dev/dev-b/presence", nil, true, 1))
	assert.Len(t, b.srv.retainedFor("kluis/v1/dev/+/presence"), 1, "cleared")
}

// A shared subscription's messages go to one member of the group each.
func TestSharedSubscription(t *testing.T) {
	b, _ := start(t)
	filter := wire.SharedSubscription(wire.BackendShareGroup, wire.KindEvent)
	one, two := newInbox(), newInbox()
	subscribe(t, connect(t, options(b.Addr(), "backend-1", "backend", "pw-backend")), filter, one)
	subscribe(t, connect(t, options(b.Addr(), "backend-2", "backend", "pw-backend")), filter, two)
	devA := connect(t, options(b.Addr(), "dev-a", "dev-a", "pw-dev-a"))
	const n = 20
	for range n {
		publish(t, devA, "kluis/v1/dev/dev-a/event", 1, "e")
	}
	testenv.Eventually(t, "every message delivered", func() bool { return len(one.All())+len(two.All()) >= n })
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, n, len(one.All())+len(two.All()), "each once")
	assert.NotEmpty(t, one.All())
	assert.NotEmpty(t, two.All())
}

func TestMatchTopic(t *testing.T) {
	for _, c := range []struct {
		filter, topic string
		match         bool
	}{
		{"a/b", "a/b", true}, {"a/b", "a/c", false}, {"a/+", "a/b", true}, {"a/+", "a/b/c", false},
		{"a/#", "a", true}, {"a/#", "a/b/c", true}, {"#", "a/b", true}, {"+/+", "a/b", true},
		{"+", "a/b", false}, {"a/+/c", "a/b/c", true}, {"a/+/c", "a/b/d", false}, {"a/b", "a", false},
		{"#", "$SYS/x", false}, {"+/x", "$SYS/x", false}, {"$SYS/#", "$SYS/x", true}, {"a/+", "a/", true},
	} {
		assert.Equal(t, c.match, matchTopic(c.filter, c.topic), "%s %s", c.filter, c.topic)
	}
	assert.True(t, validFilter("a/+/#"))
	assert.False(t, validFilter("a/#/b"))
	assert.False(t, validFilter("a/b+"))
	assert.False(t, validFilter(""))
}

// FuzzDecode: no input makes the decoder panic or read past the limit; a
// PUBLISH that decodes encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(connectPkt("dev-a", "dev-a", "pw", 30, "kluis/v1/dev/dev-a/presence", "gone"))
	f.Add(appendPublish(nil, "kluis/v1/dev/a/event", []byte(`{"v":1}`), 1, false, false, 7))
	f.Add(packet(pktSubscribe<<4|2, []byte{0, 1}, str("a/+"), []byte{1}, str("$share/g/b/#"), []byte{0}))
	f.Add(packet(pktUnsubscribe<<4|2, []byte{0, 1}, str("a/+")))
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0x7f})
	f.Add(appendPublish(nil, "kluis/v1/dev/a/heartbeat", bytes.Repeat([]byte("h"), eagerBody+1), 0, false, false, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 16)
		for {
			hdr, body, err := readPacket(r, 2*eagerBody) // both ways of reading a body
			if err != nil {
				return
			}
			if len(body) > 2*eagerBody {
				t.Fatalf("body of %d bytes over the limit", len(body))
			}
			switch hdr >> 4 {
			case pktConnect:
				_, _ = parseConnect(hdr, body)
			case pktPublish:
				p, err := parsePublish(hdr, body)
				if err == nil && !p.dup {
					again := appendPublish(nil, p.topic, p.payload, p.qos, p.retain, false, p.id)
					if !bytes.Equal(again, packet(hdr, body)) {
						t.Fatalf("PUBLISH does not encode back: % x", again)
					}
				}
			case pktSubscribe:
				if _, fs, err := parseSubscribe(hdr, body); err == nil {
					for _, f := range fs {
						if filter, _, ok := splitShare(f.filter); ok && validFilter(filter) {
							_ = matchTopic(filter, "kluis/v1/dev/a/event")
						}
					}
				}
			case pktUnsubscribe:
				_, _, _ = parseUnsubscribe(hdr, body)
			default:
				_, _ = parseID(body)
			}
		}
	})
}

// A client that does not read what it is sent is disconnected once a
// write to it takes longer than Options.WriteTimeout; the message is
// counted as dropped and the other clients are served on.
func TestSlowClientIsDisconnected(t *testing.T) {
	reg := prometheus.NewRegistry()
	b, err := New(Options{Addr: "127.0.0.1:0", Credentials: testCreds, WriteTimeout: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	slow := dialRaw(t, b.Addr())
	slow.login("dev-a", "dev-a", "pw-dev-a", 30, "", "")
	slow.send(packet(pktSubscribe<<4|2, []byte{0, 1}, str("kluis/v1/dev/dev-a/cmd"), []byte{0}))
	hdr, _ := slow.next()
	require.Equal(t, byte(pktSuback<<4), hdr)
	devB := connect(t, options(b.Addr(), "dev-b", "dev-b", "pw-dev-b"))
	cmds := newInbox()
	subscribe(t, devB, "kluis/v1/dev/dev-b/cmd", cmds)

	big := make([]byte, 256<<10)
	for i := 0; metric(t, reg, "kluis_broker_dropped_total", "", "") == 0; i++ {
		require.Less(t, i, 4096, "the slow client's buffers never filled")
		require.NoError(t, b.Publish("kluis/v1/dev/dev-a/cmd", big, false, 0))
	}
	testenv.Eventually(t, "the slow client's connection is given back", func() bool { return b.Connections() == 1 })
	require.NoError(t, b.Publish("kluis/v1/dev/dev-b/cmd", []byte("still served"), false, 1))
	cmds.WaitFor(t, "kluis/v1/dev/dev-b/cmd still served")
}

// A session is one identity's: device "a" may use the client id
// "kluisd-a", which is also the client id of a device named "kluisd-a".
// Keyed by client id alone, "a" connecting with it closed the other
// device's connection and spared its last will (found reading the ACL
// while attacking it with a device's credentials); now both stay
// connected, and the same device with the same id still takes over.
func TestNoTakeoverAcrossDevices(t *testing.T) {
	creds := func(_ context.Context, user, pass string) (string, Role, bool) {
		if (user == "a" || user == "kluisd-a") && pass == "pw-"+user {
			return user, RoleDevice, true
		}
		return "", "", false
	}
	b, err := New(Options{Addr: "127.0.0.1:0", Credentials: creds, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	victim := dialRaw(t, b.Addr())
	victim.login("kluisd-a", "kluisd-a", "pw-kluisd-a", 30, "kluis/v1/dev/kluisd-a/presence", "offline")
	other := dialRaw(t, b.Addr())
	other.login("kluisd-a", "a", "pw-a", 30, "", "")
	for _, rc := range []*rawClient{victim, other} {
		rc.send(packet(pktPingreq << 4))
		hdr, _ := rc.next()
		assert.Equal(t, byte(pktPingresp<<4), hdr, "still connected")
	}
	again := dialRaw(t, b.Addr())
	again.login("kluisd-a", "a", "pw-a", 30, "", "")
	assert.True(t, other.closed(), "the same device with the same id takes its session over")
}

// Shutdown stops taking connections and closes every client's with its
// last will, handed to the in-process subscribers before it returns: the
// backend's device link records a device offline at a restart, and no
// message from a device comes after Shutdown. Close, by contrast, sends
// no will (TestTakeover's and the old stop's case).
func TestShutdownSendsTheWillsFirst(t *testing.T) {
	b, _ := start(t)
	got := handed(t, b, "kluis/v1/dev/+/presence")
	for _, dev := range []string{"dev-a", "dev-b"} {
		rc := dialRaw(t, b.Addr())
		rc.login(dev, dev, "pw-"+dev, 60, "kluis/v1/dev/"+dev+"/presence", "offline")
		rc.send(packet(pktPublish<<4|0x02, str("kluis/v1/dev/"+dev+"/presence"), []byte{0, 1}, []byte("online")))
		hdr, _ := rc.next()
		require.Equal(t, byte(pktPuback<<4), hdr)
	}
	require.NoError(t, b.Healthy())
	require.NoError(t, b.Shutdown(context.Background()))
	assert.ElementsMatch(t, []string{"kluis/v1/dev/dev-a/presence online", "kluis/v1/dev/dev-b/presence online",
		"kluis/v1/dev/dev-a/presence offline", "kluis/v1/dev/dev-b/presence offline"}, got(), "every will handed over before Shutdown returns")
	assert.Error(t, b.Healthy(), "not ready once it stopped accepting")
	_, err := net.DialTimeout("tcp", b.Addr(), time.Second)
	assert.Error(t, err, "no new connection")
	assert.Zero(t, b.Connections())
}

// handed subscribes in-process to filter and returns what was handed over
// so far ("topic payload").
func handed(t *testing.T, b *Broker, filter string) func() []string {
	var mu sync.Mutex
	var got []string
	require.NoError(t, b.Subscribe(filter, func(topic string, payload []byte) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, topic+" "+string(payload))
	}))
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}
