package broker

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/broker/mqtttest"
	"kluis/controller/wire"
)

const wait = mqtttest.Wait

func TestAllowed(t *testing.T) {
	top := func(dev string, k wire.Kind) string { s, _ := wire.TopicFor(dev, k); return s }
	for _, k := range wire.DeviceKinds() {
		assert.True(t, Allowed(RoleDevice, "a", top("a", k), true), k)
		assert.False(t, Allowed(RoleDevice, "a", top("a", k), false), k)
		assert.False(t, Allowed(RoleDevice, "a", top("b", k), true), k)
	}
	for _, k := range wire.BackendKinds() {
		assert.True(t, Allowed(RoleDevice, "a", top("a", k), false), k)
		assert.False(t, Allowed(RoleDevice, "a", top("a", k), true), k)
		assert.False(t, Allowed(RoleDevice, "a", top("b", k), false), k)
	}
	for _, f := range []string{"#", "kluis/v1/dev/+/cmd", "kluis/v1/dev/a/#", "kluis/v1/dev/a/+",
		"$share/kluis-backend/kluis/v1/dev/a/event", "$SYS/broker/clients", "other/topic", "kluis/v1/dev/a/verify/+"} {
		assert.False(t, Allowed(RoleDevice, "a", f, false), f)
		assert.False(t, Allowed(RoleDevice, "a", f, true), f)
	}
	assert.True(t, Allowed(RoleBackend, "", "$share/kluis-backend/kluis/v1/dev/+/event", false))
	assert.True(t, Allowed(RoleBackend, "", "kluis/v1/dev/a/cmd", true))
	assert.False(t, Allowed(Role("root"), "a", "kluis/v1/dev/a/event", true))
	assert.True(t, ValidClientID("a", "a"))
	assert.True(t, ValidClientID("a", "a.kluisd"))
	assert.True(t, ValidClientID("a", "kluisd-a"))
	assert.False(t, ValidClientID("a", "kluisd-b"))
	assert.False(t, ValidClientID("a", "a-1"))
	assert.False(t, ValidClientID("a", "b"))
}

// testCreds: devices "dev-a", "dev-b" (password "pw-<id>") and "backend".
func testCreds(_ context.Context, user, pass string) (string, Role, bool) {
	switch {
	case user == "backend" && pass == "pw-backend":
		return "", RoleBackend, true
	case (user == "dev-a" || user == "dev-b") && pass == "pw-"+user:
		return user, RoleDevice, true
	}
	return "", "", false
}

func start(t *testing.T) (*Broker, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	b, err := New(Options{Addr: "127.0.0.1:0", Credentials: testCreds,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	return b, reg
}

func options(addr, clientID, user, pass string) *paho.ClientOptions {
	return mqtttest.Options("tcp://"+addr, clientID, user, pass)
}

var (
	connect    = mqtttest.Connect
	connectErr = mqtttest.ConnectErr
	newInbox   = mqtttest.NewInbox
)

func subscribe(t *testing.T, c paho.Client, filter string, in *mqtttest.Inbox) byte {
	return mqtttest.Subscribe(t, c, filter, in)
}

func publish(t *testing.T, c paho.Client, topic string, qos byte, payload string) {
	mqtttest.Publish(t, c, topic, qos, false, payload)
}

func TestDeviceCannotReachAnotherDevice(t *testing.T) {
	b, reg := start(t)
	addr := b.Addr()
	backend := connect(t, options(addr, "backend-1", "backend", "pw-backend"))
	devA := connect(t, options(addr, "dev-a", "dev-a", "pw-dev-a"))
	devB := connect(t, options(addr, "dev-b.kluisd", "dev-b", "pw-dev-b"))

	events := newInbox()
	assert.Equal(t, byte(1), subscribe(t, backend, "$share/kluis-backend/"+wire.Subscription(wire.KindEvent), events))
	bCmd := newInbox()
	assert.Equal(t, byte(1), subscribe(t, devB, "kluis/v1/dev/dev-b/cmd", bCmd))

	// A may not subscribe to B's topics, wildcards or shared subscriptions.
	spy := newInbox()
	for _, f := range []string{"kluis/v1/dev/dev-b/cmd", "kluis/v1/dev/+/cmd", "kluis/v1/dev/#",
		"$share/kluis-backend/kluis/v1/dev/+/event", "kluis/v1/dev/dev-a/event"} {
		assert.Equal(t, byte(0x80), subscribe(t, devA, f, spy), f)
	}

	// A forges B's command and B's event (QoS 0: dropped silently), then
	// publishes its own event, which the broker handles after the forgeries.
	publish(t, devA, "kluis/v1/dev/dev-b/cmd", 0, "forged-cmd")
	publish(t, devA, "kluis/v1/dev/dev-b/event", 0, "forged-event")
	publish(t, devA, "kluis/v1/dev/dev-a/event", 1, "own-event")
	events.WaitFor(t, "kluis/v1/dev/dev-a/event own-event")
	// Positive control on B's side: the backend's command arrives, after
	// any forgery that had been routed.
	publish(t, backend, "kluis/v1/dev/dev-b/cmd", 1, "real-cmd")
	bCmd.WaitFor(t, "kluis/v1/dev/dev-b/cmd real-cmd")

	assert.Equal(t, []string{"kluis/v1/dev/dev-b/cmd real-cmd"}, bCmd.All())
	assert.Equal(t, []string{"kluis/v1/dev/dev-a/event own-event"}, events.All())
	assert.Empty(t, spy.All())
	assert.GreaterOrEqual(t, metric(t, reg, "kluis_broker_acl_denied_total", "access", "write"), 2.0)

	// A QoS 1 forgery from an MQTT 3.1.1 client costs the connection.
	tok := devA.Publish("kluis/v1/dev/dev-b/cmd", 1, false, "forged-qos1")
	tok.WaitTimeout(wait)
	deadline := time.Now().Add(wait)
	for devA.IsConnectionOpen() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	assert.False(t, devA.IsConnectionOpen())
	publish(t, backend, "kluis/v1/dev/dev-b/cmd", 1, "real-cmd-2")
	bCmd.WaitFor(t, "kluis/v1/dev/dev-b/cmd real-cmd-2")
	assert.NotContains(t, bCmd.All(), "kluis/v1/dev/dev-b/cmd forged-qos1")
}

// metric returns the value of a counter from reg, matching label name=value
// when name is set.
func metric(t *testing.T, reg *prometheus.Registry, family, name, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			if name == "" {
				return m.GetCounter().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == name && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestOwnTopicsWork(t *testing.T) {
	b, _ := start(t)
	addr := b.Addr()
	backend := connect(t, options(addr, "backend-1", "backend", "pw-backend"))
	devA := connect(t, options(addr, "dev-a", "dev-a", "pw-dev-a"))
	fromDevice := newInbox()
	for _, k := range wire.DeviceKinds() {
		assert.Equal(t, byte(1), subscribe(t, backend, wire.SharedSubscription(wire.BackendShareGroup, k), fromDevice))
	}
	toDevice := newInbox()
	for _, k := range wire.BackendKinds() {
		topic, _ := wire.TopicFor("dev-a", k)
		assert.Equal(t, byte(1), subscribe(t, devA, topic, toDevice), k)
	}
	for _, k := range wire.DeviceKinds() {
		topic, _ := wire.TopicFor("dev-a", k)
		publish(t, devA, topic, 1, "x")
		fromDevice.WaitFor(t, topic+" x")
	}
	for _, k := range wire.BackendKinds() {
		topic, _ := wire.TopicFor("dev-a", k)
		publish(t, backend, topic, 1, "y")
		toDevice.WaitFor(t, topic+" y")
	}
	assert.True(t, devA.IsConnectionOpen())
}

func TestAuthentication(t *testing.T) {
	b, reg := start(t)
	addr := b.Addr()
	assert.Error(t, connectErr(options(addr, "dev-a", "dev-a", "wrong")))
	assert.Error(t, connectErr(options(addr, "dev-a", "nobody", "pw-nobody")))
	assert.Error(t, connectErr(options(addr, "dev-b", "dev-a", "pw-dev-a")), "client id of another device")
	foreignWill := options(addr, "dev-a", "dev-a", "pw-dev-a").SetWill("kluis/v1/dev/dev-b/presence", `{"v":1,"state":"offline"}`, 1, true)
	assert.Error(t, connectErr(foreignWill))
	ownWill := options(addr, "dev-a", "dev-a", "pw-dev-a").SetWill("kluis/v1/dev/dev-a/presence", `{"v":1,"state":"offline"}`, 1, true)
	assert.NoError(t, connectErr(ownWill))
	assert.GreaterOrEqual(t, metric(t, reg, "kluis_broker_auth_failures_total", "", ""), 4.0)
}

func TestLastWillReachesBackend(t *testing.T) {
	b, _ := start(t)
	addr := b.Addr()
	backend := connect(t, options(addr, "backend-1", "backend", "pw-backend"))
	presence := newInbox()
	subscribe(t, backend, wire.Subscription(wire.KindPresence), presence)
	// Keep the device's TCP connection to cut it like a power failure.
	conns := make(chan net.Conn, 1)
	o := options(addr, "dev-a", "dev-a", "pw-dev-a").SetWill("kluis/v1/dev/dev-a/presence", "gone", 1, true).
		SetCustomOpenConnectionFn(func(uri *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			c, err := net.Dial("tcp", uri.Host)
			if err == nil {
				conns <- c
			}
			return c, err
		})
	c := connect(t, o)
	publish(t, c, "kluis/v1/dev/dev-a/presence", 1, "here")
	presence.WaitFor(t, "kluis/v1/dev/dev-a/presence here")
	(<-conns).Close()
	presence.WaitFor(t, "kluis/v1/dev/dev-a/presence gone")
}

func TestWithInternalBackend(t *testing.T) {
	ctx := context.Background()
	f := WithInternalBackend("kluis-backend", "generated-secret", testCreds)
	_, role, ok := f(ctx, "kluis-backend", "generated-secret")
	assert.True(t, ok)
	assert.Equal(t, RoleBackend, role)
	_, _, ok = f(ctx, "kluis-backend", "guess")
	assert.False(t, ok)
	dev, role, ok := f(ctx, "dev-a", "pw-dev-a")
	assert.True(t, ok, "others still go to the next function")
	assert.Equal(t, "dev-a", dev)
	assert.Equal(t, RoleDevice, role)
	_, _, ok = WithInternalBackend("kluis-backend", "", nil)(ctx, "kluis-backend", "")
	assert.False(t, ok, "an empty internal password opens nothing")
}

// The backend's device link uses the embedded broker in-process: Subscribe
// hands it what devices publish, Publish reaches a device (no ACL applies
// to the broker's own client).
func TestInlineSubscribeAndPublish(t *testing.T) {
	b, _ := start(t)
	var mu sync.Mutex
	var got []string
	require.NoError(t, b.Subscribe("kluis/v1/dev/+/event", func(topic string, payload []byte) {
		mu.Lock()
		got = append(got, topic+" "+string(payload))
		mu.Unlock()
	}))
	devA := connect(t, options(b.Addr(), "dev-a", "dev-a", "pw-dev-a"))
	cmds := newInbox()
	subscribe(t, devA, "kluis/v1/dev/dev-a/cmd", cmds)
	publish(t, devA, "kluis/v1/dev/dev-a/event", 1, "e1")
	publish(t, devA, "kluis/v1/dev/dev-a/heartbeat", 1, "not subscribed")
	publish(t, devA, "kluis/v1/dev/dev-a/event", 1, "e2")
	deadline := time.Now().Add(wait)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	assert.Equal(t, []string{"kluis/v1/dev/dev-a/event e1", "kluis/v1/dev/dev-a/event e2"}, got)
	mu.Unlock()
	require.NoError(t, b.Publish("kluis/v1/dev/dev-a/cmd", []byte("c1"), false, 1))
	cmds.WaitFor(t, "kluis/v1/dev/dev-a/cmd c1")
}

// A device that reconnects with the same client id keeps its identity
// when its old connection goes: the new connection's subscriptions are
// granted.
func TestReconnectKeepsIdentity(t *testing.T) {
	b, _ := start(t)
	for i := range 5 {
		old, err := net.Dial("tcp", b.Addr())
		require.NoError(t, err)
		require.Equal(t, byte(0), rawConnect(t, old, "dev-a", "dev-a", "pw-dev-a"))
		c := connect(t, options(b.Addr(), "dev-a", "dev-a", "pw-dev-a"))
		_ = old.Close() // the old connection ends after the new one logged in
		time.Sleep(20 * time.Millisecond)
		in := newInbox()
		assert.Equal(t, byte(1), subscribe(t, c, "kluis/v1/dev/dev-a/cmd", in), "round %d", i)
		c.Disconnect(50)
	}
}

// An in-process subscriber's payload is its own: one that changes it
// changes neither another subscriber's copy nor what a client receives,
// whether the message came from a client (whose packet's body the only
// in-process subscriber may get without a copy) or from Publish.
func TestInProcessPayloadsAreTheirs(t *testing.T) {
	b, _ := start(t)
	const topic = "kluis/v1/dev/dev-a/event"
	var mu sync.Mutex
	var seen []string
	require.NoError(t, b.Subscribe("kluis/v1/dev/+/event", func(_ string, p []byte) {
		mu.Lock()
		seen = append(seen, string(p))
		mu.Unlock()
		for i := range p {
			p[i] = 'X' // the first subscriber spoils its copy at once
		}
	}))
	require.NoError(t, b.Subscribe("kluis/v1/dev/dev-a/+", func(_ string, p []byte) {
		mu.Lock()
		seen = append(seen, "second "+string(p))
		mu.Unlock()
	}))
	backend := connect(t, options(b.Addr(), "backend-1", "backend", "pw-backend"))
	in := newInbox()
	subscribe(t, backend, topic, in)
	dev := connect(t, options(b.Addr(), "dev-a", "dev-a", "pw-dev-a"))
	publish(t, dev, topic, 1, "from the device")
	require.NoError(t, b.Publish(topic, []byte("from the backend"), false, 1))
	in.WaitFor(t, topic+" from the device")
	in.WaitFor(t, topic+" from the backend")
	mu.Lock()
	defer mu.Unlock()
	assert.ElementsMatch(t, []string{"from the device", "second from the device", "from the backend", "second from the backend"}, seen)
}
