package broker

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
)

const wait = 10 * time.Second

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
	return paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(clientID).
		SetUsername(user).SetPassword(pass).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(wait).SetProtocolVersion(4)
}

func connect(t *testing.T, o *paho.ClientOptions) paho.Client {
	t.Helper()
	c := paho.NewClient(o)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(wait), "connect timed out")
	require.NoError(t, tok.Error())
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func connectErr(o *paho.ClientOptions) error {
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(wait) {
		return context.DeadlineExceeded
	}
	if tok.Error() == nil {
		c.Disconnect(100)
	}
	return tok.Error()
}

// inbox collects messages of one subscription.
type inbox struct {
	mu   sync.Mutex
	msgs []string // topic + " " + payload
	ch   chan struct{}
}

func newInbox() *inbox { return &inbox{ch: make(chan struct{}, 1000)} }

func (in *inbox) handler(_ paho.Client, m paho.Message) {
	in.mu.Lock()
	in.msgs = append(in.msgs, m.Topic()+" "+string(m.Payload()))
	in.mu.Unlock()
	in.ch <- struct{}{}
}

func (in *inbox) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(wait)
	for {
		if in.has(want) {
			return
		}
		select {
		case <-in.ch:
		case <-deadline:
			t.Fatalf("never received %q; got %v", want, in.all())
		}
	}
}

func (in *inbox) has(want string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, m := range in.msgs {
		if m == want {
			return true
		}
	}
	return false
}

func (in *inbox) all() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.msgs...)
}

func subscribe(t *testing.T, c paho.Client, filter string, in *inbox) byte {
	t.Helper()
	tok := c.Subscribe(filter, 1, in.handler)
	require.True(t, tok.WaitTimeout(wait))
	require.NoError(t, tok.Error())
	res := tok.(*paho.SubscribeToken).Result() // keyed without any $share/group/ prefix
	require.Len(t, res, 1)
	for _, code := range res {
		return code
	}
	return 0
}

func publish(t *testing.T, c paho.Client, topic string, qos byte, payload string) {
	t.Helper()
	tok := c.Publish(topic, qos, false, payload)
	require.True(t, tok.WaitTimeout(wait))
	require.NoError(t, tok.Error())
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
	events.waitFor(t, "kluis/v1/dev/dev-a/event own-event")
	// Positive control on B's side: the backend's command arrives, after
	// any forgery that had been routed.
	publish(t, backend, "kluis/v1/dev/dev-b/cmd", 1, "real-cmd")
	bCmd.waitFor(t, "kluis/v1/dev/dev-b/cmd real-cmd")

	assert.Equal(t, []string{"kluis/v1/dev/dev-b/cmd real-cmd"}, bCmd.all())
	assert.Equal(t, []string{"kluis/v1/dev/dev-a/event own-event"}, events.all())
	assert.Empty(t, spy.all())
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
	bCmd.waitFor(t, "kluis/v1/dev/dev-b/cmd real-cmd-2")
	assert.NotContains(t, bCmd.all(), "kluis/v1/dev/dev-b/cmd forged-qos1")
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
		fromDevice.waitFor(t, topic+" x")
	}
	for _, k := range wire.BackendKinds() {
		topic, _ := wire.TopicFor("dev-a", k)
		publish(t, backend, topic, 1, "y")
		toDevice.waitFor(t, topic+" y")
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
	o := options(addr, "dev-a", "dev-a", "pw-dev-a").SetWill("kluis/v1/dev/dev-a/presence", "gone", 1, true)
	c := paho.NewClient(o)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(wait))
	require.NoError(t, tok.Error())
	// Closing the broker side of the connection uncleanly sends the will.
	cl, ok := b.srv.Clients.Get("dev-a")
	require.True(t, ok)
	cl.Stop(io.ErrUnexpectedEOF)
	presence.waitFor(t, "kluis/v1/dev/dev-a/presence gone")
	c.Disconnect(100)
}
