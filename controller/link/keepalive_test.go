package link

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/broker"
	"kluis/controller/journal"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// connectKeepAlive starts a link with keepAlive (0: the default) against a
// listener that reads its CONNECT, and returns the keep-alive it asked for.
func connectKeepAlive(t *testing.T, keepAlive time.Duration) uint16 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	defer runLink(t, Options{URL: "tcp://" + ln.Addr().String(), DeviceID: fmt.Sprintf("ka-%d", time.Now().UnixNano()),
		KeepAlive: keepAlive})()
	c, err := ln.Accept()
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	typ, body, _, err := readPacket(bufio.NewReader(c))
	require.NoError(t, err)
	require.Equal(t, byte(1), typ, "CONNECT")
	// Protocol name (length-prefixed), level, flags, then the keep-alive.
	n := int(body[0])<<8 | int(body[1])
	require.Greater(t, len(body), 2+n+3)
	return uint16(body[2+n+2])<<8 | uint16(body[2+n+3])
}

// runLink runs a link with o, a fresh journal and no log until the
// returned stop; into, when given, gets the link.
func runLink(t *testing.T, o Options, into ...**Link) (stop func()) {
	j, _, _, err := journal.Open(journal.Options{Dir: t.TempDir(), DeviceID: o.DeviceID})
	require.NoError(t, err)
	o.Journal, o.Logger = j, slog.New(slog.DiscardHandler)
	l, err := New(o)
	require.NoError(t, err)
	for _, p := range into {
		*p = l
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	return func() { cancel(); <-done; j.Close() }
}

// kluisd asks for a 30 s keep-alive, its heartbeat's interval (15 s
// before: every idle device pinged twice a heartbeat), or the one
// configured.
func TestKeepAliveAsked(t *testing.T) {
	assert.Equal(t, uint16(30), connectKeepAlive(t, 0), "the default")
	assert.Equal(t, uint16(45), connectKeepAlive(t, 45*time.Second))
	_, err := New(Options{URL: "tcp://127.0.0.1:1", DeviceID: "ka", Journal: &journal.Journal{}, KeepAlive: 1500 * time.Millisecond})
	assert.Error(t, err, "not whole seconds")
}

// readPacket reads one MQTT packet: its type, its body and the whole
// packet as read.
func readPacket(r *bufio.Reader) (typ byte, body, raw []byte, err error) {
	hdr, err := r.ReadByte()
	if err != nil {
		return 0, nil, nil, err
	}
	raw = []byte{hdr}
	n, mult := 0, 1
	for {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, nil, err
		}
		raw = append(raw, b)
		n += int(b&0x7f) * mult
		if b&0x80 == 0 {
			break
		}
		mult *= 128
	}
	body = make([]byte, n)
	if _, err = io.ReadFull(r, body); err != nil {
		return 0, nil, nil, err
	}
	return hdr >> 4, body, append(raw, body...), nil
}

// silencer relays one connection to target, counting the packets each
// way by type (fromClient[12]: the client's PINGREQs), until silenced:
// then it drops everything either way and keeps both sockets open, as a
// network that stopped carrying packets (no FIN, no RST). cutOpen does
// that to the connections open now only.
type silencer struct {
	ln     net.Listener
	target string
	silent atomic.Bool
	// fromClient and fromBroker count the packets relayed, by type.
	fromClient, fromBroker [16]atomic.Int64
	wg                     sync.WaitGroup
	mu                     sync.Mutex
	conns                  []net.Conn
	cuts                   []*atomic.Bool
}

// cutOpen silences the connections open now; later ones are relayed.
func (s *silencer) cutOpen() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.cuts {
		c.Store(true)
	}
}

func newSilencer(t *testing.T, target string) *silencer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &silencer{ln: ln, target: target}
	go s.serve()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *silencer) serve() {
	for {
		in, err := s.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", s.target)
		if err != nil {
			in.Close()
			continue
		}
		cut := new(atomic.Bool)
		s.mu.Lock()
		s.conns = append(s.conns, in, out)
		s.cuts = append(s.cuts, cut)
		s.mu.Unlock()
		s.wg.Add(2)
		go s.pipe(out, in, cut, true)
		go s.pipe(in, out, cut, false)
	}
}

// pipe copies from's packets to to (nothing once silent or cut),
// counting them in fromClient or fromBroker.
func (s *silencer) pipe(to, from net.Conn, cut *atomic.Bool, fromClient bool) {
	defer s.wg.Done()
	r := bufio.NewReader(from)
	for {
		typ, _, raw, err := readPacket(r)
		if err != nil {
			return
		}
		if s.silent.Load() || cut.Load() {
			continue
		}
		if fromClient {
			s.fromClient[typ].Add(1)
		} else {
			s.fromBroker[typ].Add(1)
		}
		if _, err := to.Write(raw); err != nil {
			return
		}
	}
}

// startEmbedded starts an embedded broker on a free port, where dev is
// the one device (password "pw-"+dev), closed at the test's end.
func startEmbedded(t *testing.T, dev string) *broker.Broker {
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		Credentials: func(_ context.Context, user, pass string) (string, broker.Role, bool) {
			return user, broker.RoleDevice, user == dev && pass == "pw-"+dev
		}})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// silentBroker is where TestSilentConnectionGivenUp runs: the broker's
// host:port, the link's user and password there, and a subscription to a
// topic's messages.
type silentBroker struct {
	name, addr, user, pass string
	subscribe              func(t *testing.T, topic string, got func(payload string))
}

// A connection that stops carrying packets (no FIN: a cut uplink, a
// frozen router) is given up on both sides within the bounds
// docs/kluisd.md gives, "Keep-alive and dead connections": the broker
// publishes the device's last will within 1.5 keep-alives of its last
// packet, and kluisd notices within KeepAlive + PingTimeout + two of
// paho's checks. Before the silence, a device that publishes a heartbeat
// every second with a 2 s keep-alive still pings: it receives nothing, and
// paho pings when it has received nothing for a keep-alive. On Mosquitto
// and on the embedded broker.
func TestSilentConnectionGivenUp(t *testing.T) {
	embedded := func(t *testing.T, dev string) silentBroker {
		b := startEmbedded(t, dev)
		return silentBroker{name: "embedded", addr: b.Addr(), user: dev, pass: "pw-" + dev,
			subscribe: func(t *testing.T, topic string, got func(string)) {
				require.NoError(t, b.Subscribe(topic, func(_ string, p []byte) { got(string(p)) }))
			}}
	}
	mosquitto := func(t *testing.T, dev string) silentBroker {
		return silentBroker{name: "mosquitto", addr: testenv.BrokerURL()[len("tcp://"):],
			subscribe: func(t *testing.T, topic string, got func(string)) {
				c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(testenv.BrokerURL()).SetClientID("ka-watch-" + dev))
				tok := c.Connect()
				require.True(t, tok.WaitTimeout(10*time.Second))
				require.NoError(t, tok.Error())
				t.Cleanup(func() {
					c.Publish(topic, 1, true, []byte{}).WaitTimeout(2 * time.Second) // the retained presence
					c.Disconnect(100)
				})
				sub := c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) { got(string(m.Payload())) })
				require.True(t, sub.WaitTimeout(10*time.Second))
				require.NoError(t, sub.Error())
			}}
	}
	for _, start := range []func(*testing.T, string) silentBroker{embedded, mosquitto} {
		dev := fmt.Sprintf("ka-%d", time.Now().UnixNano())
		b := start(t, dev)
		t.Run(b.name, func(t *testing.T) {
			const keepAlive, pingTimeout = 2 * time.Second, 2 * time.Second
			var mu sync.Mutex
			var presence []string
			var offlineAt time.Time
			b.subscribe(t, wire.Root+"/"+dev+"/presence", func(p string) {
				mu.Lock()
				defer mu.Unlock()
				if p == "" {
					return
				}
				m, err := wire.DecodeKind(wire.KindPresence, []byte(p))
				if err == nil {
					presence = append(presence, string(m.(*wire.Presence).State))
					if m.(*wire.Presence).State == wire.Offline && offlineAt.IsZero() {
						offlineAt = time.Now()
					}
				}
			})
			lastPresence := func() string {
				mu.Lock()
				defer mu.Unlock()
				if len(presence) == 0 {
					return ""
				}
				return presence[len(presence)-1]
			}
			relay := newSilencer(t, b.addr)
			var beats atomic.Int64
			var l *Link
			defer runLink(t, Options{URL: "tcp://" + relay.ln.Addr().String(), DeviceID: dev, Username: b.user, Password: b.pass,
				KeepAlive: keepAlive, PingTimeout: pingTimeout, HeartbeatEvery: time.Second,
				Heartbeat: func(context.Context) wire.Heartbeat { beats.Add(1); return wire.Heartbeat{} }}, &l)()
			testenv.Eventually(t, "connected and online", func() bool { return l.Connected() && lastPresence() == string(wire.Online) })

			from := beats.Load()
			testenv.Eventually(t, "two pings while heartbeats go out", func() bool { return relay.fromClient[12].Load() >= 2 })
			assert.GreaterOrEqual(t, beats.Load()-from, int64(2), "heartbeats went out meanwhile")

			relay.silent.Store(true)
			silenced := time.Now()
			testenv.Eventually(t, "kluisd gives the silent broker up", func() bool { return !l.Connected() })
			noticed := time.Since(silenced)
			testenv.Eventually(t, "the broker publishes the last will", func() bool { return lastPresence() == string(wire.Offline) })
			mu.Lock()
			willAfter := offlineAt.Sub(silenced)
			mu.Unlock()
			t.Logf("%s: kluisd noticed after %v (bound %v), the will after %v (bound %v), %d pings before",
				b.name, noticed.Round(time.Millisecond), keepAlive+pingTimeout+keepAlive/2,
				willAfter.Round(time.Millisecond), keepAlive*3/2, relay.fromClient[12].Load())
			// Generous margins for a loaded machine: the bounds are
			// about protocol rules, not speed.
			// (Mosquitto's will came 8.2 s after at load 26 with a 3 s
			// bound: its keep-alive check runs in its main loop.)
			assert.Less(t, noticed, keepAlive+pingTimeout+keepAlive/2+15*time.Second, "kluisd's bound")
			assert.Less(t, willAfter, keepAlive*3/2+15*time.Second, "the broker's bound")
		})
	}
}
