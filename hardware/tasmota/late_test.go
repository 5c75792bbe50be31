package tasmota

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/promtext"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
	"kluis/hardware/hardwaretest"
)

// stallProxy forwards TCP connections (loopback) to a broker. Stall stops
// reading what the clients send, in every connection, new ones too, as a
// link that stopped carrying packets would: a client's writes block once
// the socket buffers are full. Resume drops every connection (the link's
// TCP sessions did not survive) and forwards again; carryOn forwards
// again on the same connections.
type stallProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	stalled chan struct{} // closed: forwarding; open: stalled
	conns   []net.Conn
	// upClosed counts the connections the broker closed; sent counts the
	// bytes forwarded to the broker (written to its connection, whether
	// or not the broker still reads it).
	upClosed int
	sent     int
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &stallProxy{ln: ln, target: target, stalled: make(chan struct{})}
	close(p.stalled)
	t.Cleanup(func() {
		_ = ln.Close()
		p.drop()
	})
	go p.accept()
	return p
}

// behindStallProxy is a driver of one two-relay module (no last will) on
// a private broker, reached through a stallProxy, settled and quiet; the
// module talks to the broker directly.
func behindStallProxy(t *testing.T, name string, timeout time.Duration) (*Driver, *stallProxy, *device, string) {
	t.Helper()
	addr := testenv.FreeAddr(t)
	startBroker(t, addr)
	t.Setenv("MQTT_URL", "tcp://"+addr) // for the device
	px := newStallProxy(t, addr)
	topic := uniqueTopic(t, name)
	dev := newDeviceWill(t, topic, 2, false, false)
	d, err := New(Options{Broker: px.url(), Modules: []Module{{Topic: topic, Relays: 2}}, Registry: promtext.NewRegistry(), Timeout: timeout})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	require.NoError(t, d.Ready(testCtx(t)))
	settle(t, d)
	quiet(d)
	return d, px, dev, topic
}

func (p *stallProxy) url() string { return "tcp://" + p.ln.Addr().String() }

func (p *stallProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() {
			_, _ = io.Copy(c, up)
			p.mu.Lock()
			p.upClosed++
			p.mu.Unlock()
		}()
		go p.forward(up, c)
	}
}

// forward copies from the client to the broker, waiting before every read
// while the proxy is stalled.
func (p *stallProxy) forward(dst, src net.Conn) {
	buf := make([]byte, 4096)
	for {
		p.mu.Lock()
		gate := p.stalled
		p.mu.Unlock()
		<-gate
		n, err := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			p.mu.Lock()
			p.sent += w
			p.mu.Unlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			_ = dst.Close()
			return
		}
	}
}

// counts returns how many connections the broker closed and how many
// bytes were forwarded to it.
func (p *stallProxy) counts() (upClosed, sent int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.upClosed, p.sent
}

func (p *stallProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = make(chan struct{})
}

func (p *stallProxy) drop() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (p *stallProxy) resume() {
	p.drop()
	p.carryOn()
}

// carryOn forwards again on the same connections: the link came back
// before TCP gave up, and what the clients' kernels still hold goes on.
func (p *stallProxy) carryOn() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stalled:
	default:
		close(p.stalled)
	}
}

// quiet waits until the answers to the driver's first queries stopped
// arriving: they come at QoS 1, and a paho whose writer is stuck cannot
// acknowledge them, nor deliver anything after the first.
func quiet(d *Driver) {
	for prev := -1.0; ; {
		n := d.m.messages.WithLabelValues("ok").Value()
		if n == prev {
			return
		}
		prev = n
		time.Sleep(300 * time.Millisecond)
	}
}

// The link to the broker stalls just after the module confirmed the
// PulseTime, with paho's writer stuck (the socket buffers full), when the
// driver hands the ON to paho; the link comes back as a new connection
// after the pulse's deadline. No ON may reach the module after the pulse
// failed without an ON being possibly sent (the caller has given up and
// told the citizen the door did not open), and after a failed pulse whose
// ON may have left the driver switches the relay off at the next
// connection. Before the first fix paho's Publish waited up to 30 s (its
// default write timeout) and handed the ON to the new connection: the
// module switched on about 3 s after a 1 s pulse deadline. The test asserts
// no timing but that bound: under a load of 45 to 64 on two cores this
// process stood still for up to 3.8 s at a time (a 5 ms ticker beside the
// pulse), more than the 1 s by which Pulse had to return after its
// deadline, and a module handler's timestamp, taken in this process, can
// fall after the deadline for an ON written before it. That an ON is
// written before its deadline or never is the ON gate's
// (TestAnOnNoPulseWaitsForIsNotWritten).
func TestNoRelayOnAfterThePulseDeadline(t *testing.T) {
	const timeout = 2 * time.Second
	d, px, dev, topic := behindStallProxy(t, "lateon", timeout)

	var mu sync.Mutex
	var onAt []time.Time
	stalledAt := make(chan time.Time, 1)
	dev.mu.Lock()
	dev.onCommand = func(cmd, payload string) {
		switch {
		case strings.HasPrefix(cmd, "PulseTime"):
			// Stall the link, and fill it: paho's writer blocks in the
			// first write and its hand-over goroutine holds the second,
			// so the next Publish waits for a reader.
			px.stall()
			junk := make([]byte, 32<<20)
			go d.client.Publish("kluistest/junk/"+topic, 0, false, junk)
			time.Sleep(200 * time.Millisecond)
			go d.client.Publish("kluistest/junk/"+topic, 0, false, "x")
			time.Sleep(200 * time.Millisecond)
			// Confirmed at QoS 0 as well: paho, its writer stuck, cannot
			// acknowledge a QoS 1 message, and may not deliver it.
			dev.client.Publish("stat/"+topic+"/RESULT", 0, false, `{"PulseTime1":{"Set":`+payload+`,"Remaining":`+payload+`}}`)
			stalledAt <- time.Now()
		case cmd == "POWER1" && payload == "ON":
			mu.Lock()
			onAt = append(onAt, time.Now())
			mu.Unlock()
		}
	}
	dev.mu.Unlock()

	ctx, cancel := context.WithTimeout(testCtx(t), 3*timeout/2)
	defer cancel()
	deadline, _ := ctx.Deadline()
	go func() {
		// The link comes back after the caller's deadline.
		<-stalledAt
		time.Sleep(2 * timeout)
		px.resume()
	}()
	perr := d.Pulse(ctx, hardware.Address{Channel: 0}, time.Second, 1)
	returned := time.Now()
	mu.Lock()
	t.Logf("pulse: %v, returned %v after the deadline, ON at %v after the deadline (n=%d)", perr, returned.Sub(deadline), func() []time.Duration {
		var ds []time.Duration
		for _, a := range onAt {
			ds = append(ds, a.Sub(deadline))
		}
		return ds
	}(), len(onAt))
	mu.Unlock()
	// Bounded by the deadline, not by paho's 30 s (the process may stand
	// still for seconds under load).
	require.False(t, returned.After(deadline.Add(5*timeout)), "Pulse returned %v after its deadline", returned.Sub(deadline))
	// An ON handed to paho and not confirmed may still be delivered: the
	// relay is switched off once the link is back. (Under a heavy load
	// the PulseTime's confirmation may come too late, or the connection
	// be lost before the ON: then no ON was sent and no OFF is needed.)
	if perr != nil {
		require.ErrorIs(t, perr, hardware.ErrTimeout)
	}
	if perr != nil && strings.Contains(perr.Error(), "POWER1 ON") && strings.Contains(perr.Error(), "not confirmed") {
		testenv.EventuallyWithin(t, 30*time.Second, "relay 1 switched off after the failed pulse", func() bool {
			return dev.offCount(1) >= 1
		})
	}
	time.Sleep(2 * timeout) // anything still on its way, the link back
	mu.Lock()
	defer mu.Unlock()
	mayHaveLeft := perr == nil || errors.Is(perr, errOnUnconfirmed)
	require.False(t, !mayHaveLeft && len(onAt) > 0, "POWER1 ON reached the module %d times after Pulse failed saying none left: %v", len(onAt), perr)
	require.LessOrEqual(t, len(onAt), 1, "POWER1 ON commands the module received")
}

// The module's LWT Online makes the driver ask it for its switches and
// relays. With the link to the broker stalled that query waits in paho's
// Publish; it must not hold the message loop meanwhile: a door opening
// (the broker still delivers to the driver) is reported while the link is
// stalled. Before, the query was published under the driver's lock on the
// loop, and the door's event waited for the link (up to paho's write
// timeout, 30 s by default).
func TestStalledQueryDoesNotHoldTheMessageLoop(t *testing.T) {
	addr := testenv.FreeAddr(t)
	startBroker(t, addr)
	t.Setenv("MQTT_URL", "tcp://"+addr)
	px := newStallProxy(t, addr)
	topic := uniqueTopic(t, "stallq")
	// The module answers the driver's first queries (settle).
	_ = newDeviceWill(t, topic, 2, false, false)
	// A long Timeout: paho's write of the stuck command is not given up
	// (and the connection dropped) before the door opens.
	d, err := New(Options{Broker: px.url(), Modules: []Module{{Topic: topic, Relays: 2}}, Registry: promtext.NewRegistry(), Timeout: 20 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	require.NoError(t, d.Ready(testCtx(t)))
	settle(t, d)
	w := hardwaretest.StartWatch(t, d)
	quiet(d)

	px.stall()
	defer px.resume()
	go d.client.Publish("kluistest/junk/"+topic, 0, false, make([]byte, 32<<20))
	time.Sleep(200 * time.Millisecond)
	go d.client.Publish("kluistest/junk/"+topic, 0, false, "x")
	time.Sleep(200 * time.Millisecond)
	// Straight into the driver's queue, as paho's handler puts them: paho,
	// its writer stuck, cannot acknowledge a QoS 1 message and stops
	// delivering.
	d.in <- inMsg{topic: "tele/" + topic + "/LWT", payload: []byte("Online")} // the driver queries: Status 10 waits in paho
	d.in <- inMsg{topic: "stat/" + topic + "/RESULT", payload: []byte(`{"Switch1":{"Action":"ON"}}`)}
	stalled := time.Now()
	ok := false
	for time.Since(stalled) < 5*time.Second && !ok {
		ok = w.Count(hardware.DoorOpened, hardware.Address{Channel: 0}) == 1
		time.Sleep(10 * time.Millisecond)
	}
	if !ok {
		t.Fatalf("door 1 not reported while the link is stalled: ok messages %v, events %v", d.m.messages.WithLabelValues("ok").Value(), w.Events())
	}
	t.Logf("door reported %v after it opened", time.Since(stalled))
}
