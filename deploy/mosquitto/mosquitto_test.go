package mosquitto

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/broker"
	"kluis/backend/broker/mosquittotest"
	"kluis/backend/broker/mqtttest"
	"kluis/controller/wire"
)

func start(t *testing.T) *mosquittotest.Process {
	t.Helper()
	return startWith(t, "acl", map[string]string{"dev-a": "pw-a", "dev-b": "pw-b", "kluis-backend": "pw-backend"})
}

// startWith runs the shipped mosquitto.conf with the ACL file aclFile and
// these users (name: password).
func startWith(t *testing.T, aclFile string, users map[string]string) *mosquittotest.Process {
	t.Helper()
	conf, err := os.ReadFile("mosquitto.conf")
	require.NoError(t, err)
	acl, err := os.ReadFile(aclFile)
	require.NoError(t, err)
	return mosquittotest.Start(t, mosquittotest.Options{Config: string(conf), ACL: string(acl), Users: users})
}

func TestShippedConfig(t *testing.T) {
	conf, err := os.ReadFile("mosquitto.conf")
	require.NoError(t, err)
	for _, line := range []string{"allow_anonymous false", "set_tcp_nodelay true", "persistence true", "use_username_as_clientid true",
		"password_file ", "acl_file ", "listener 1883 127.0.0.1", "#listener 8883", "#use_username_as_clientid true", "#cafile ", "#certfile ", "#keyfile "} {
		assert.Contains(t, string(conf), "\n"+line, line)
	}
}

// The ACL file says the same as broker.Allowed for every kind.
func TestACLMatchesEmbeddedBroker(t *testing.T) {
	acl, err := os.ReadFile("acl")
	require.NoError(t, err)
	for _, k := range wire.Kinds() {
		access := "read"
		topic, _ := wire.TopicFor("x", k)
		if broker.Allowed(broker.RoleDevice, "x", topic, true) {
			access = "write"
		}
		assert.Contains(t, string(acl), "\npattern "+access+" "+wire.Root+"/%u/"+string(k)+"\n", k)
	}
	assert.Equal(t, len(wire.Kinds()), strings.Count(string(acl), "\npattern "))
}

func TestDevicesKeptApart(t *testing.T) {
	p := start(t)
	url := p.URL()
	backend := mqtttest.Connect(t, mqtttest.Options(url, "kluis-backend-1", "kluis-backend", "pw-backend"))
	devA := mqtttest.Connect(t, mqtttest.Options(url, "dev-a", "dev-a", "pw-a"))
	devB := mqtttest.Connect(t, mqtttest.Options(url, "dev-b", "dev-b", "pw-b"))

	events := mqtttest.NewInbox()
	assert.Equal(t, byte(1), mqtttest.Subscribe(t, backend, wire.SharedSubscription(wire.BackendShareGroup, wire.KindEvent), events))
	bCmd := mqtttest.NewInbox()
	assert.Equal(t, byte(1), mqtttest.Subscribe(t, devB, "kluis/v1/dev/dev-b/cmd", bCmd))

	// Mosquitto 2.0 may grant a forbidden subscription in the SUBACK of an
	// MQTT 3.1.1 client, but it checks the read ACL on every delivery:
	// what matters is that nothing of B's arrives at A.
	spy := mqtttest.NewInbox()
	for _, f := range []string{"kluis/v1/dev/dev-b/cmd", "kluis/v1/dev/+/cmd", "kluis/v1/dev/#"} {
		mqtttest.Subscribe(t, devA, f, spy)
	}

	// Mosquitto acknowledges and silently drops unauthorised publishes.
	mqtttest.Publish(t, devA, "kluis/v1/dev/dev-b/cmd", 1, false, "forged-cmd")
	mqtttest.Publish(t, devA, "kluis/v1/dev/dev-b/event", 1, false, "forged-event")
	mqtttest.Publish(t, devA, "kluis/v1/dev/dev-a/event", 1, false, "own-event")
	events.WaitFor(t, "kluis/v1/dev/dev-a/event own-event")
	mqtttest.Publish(t, backend, "kluis/v1/dev/dev-b/cmd", 1, false, "real-cmd")
	bCmd.WaitFor(t, "kluis/v1/dev/dev-b/cmd real-cmd")
	// Positive control on A's side, published after B's command: were B's
	// command delivered to A, it would arrive before this one.
	mqtttest.Publish(t, backend, "kluis/v1/dev/dev-a/cmd", 1, false, "control-a")
	spy.WaitFor(t, "kluis/v1/dev/dev-a/cmd control-a")

	assert.Equal(t, []string{"kluis/v1/dev/dev-b/cmd real-cmd"}, bCmd.All())
	assert.Equal(t, []string{"kluis/v1/dev/dev-a/event own-event"}, events.All())
	for _, m := range spy.All() {
		assert.Equal(t, "kluis/v1/dev/dev-a/cmd control-a", m, "A received something not its own")
	}
	assert.True(t, devA.IsConnectionOpen())
}

// A stolen device credential used with another device's client id must not
// kick that device off the broker: Mosquitto takes the user name as client
// id (use_username_as_clientid), so the intruder gets its own session.
func TestClientIDCannotBeTakenOver(t *testing.T) {
	p := start(t)
	url := p.URL()
	backend := mqtttest.Connect(t, mqtttest.Options(url, "kluis-backend-1", "kluis-backend", "pw-backend"))
	lost := make(chan error, 10)
	ob := mqtttest.Options(url, "dev-b", "dev-b", "pw-b").SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	devB := mqtttest.Connect(t, ob)
	bCmd := mqtttest.NewInbox()
	mqtttest.Subscribe(t, devB, "kluis/v1/dev/dev-b/cmd", bCmd)

	// dev-a's credential, dev-b's client id, several times over.
	for i := 0; i < 3; i++ {
		intruder := mqtttest.Connect(t, mqtttest.Options(url, "dev-b", "dev-a", "pw-a"))
		// Whatever it sent, the intruder is dev-a: it reaches dev-a's
		// topics only.
		mqtttest.Publish(t, intruder, "kluis/v1/dev/dev-b/event", 1, false, "forged")
		intruder.Disconnect(50)
	}
	mqtttest.Publish(t, backend, "kluis/v1/dev/dev-b/cmd", 1, false, "after-intruders")
	bCmd.WaitFor(t, "kluis/v1/dev/dev-b/cmd after-intruders")
	select {
	case err := <-lost:
		t.Fatalf("dev-b was kicked off the broker: %v", err)
	default:
	}
	assert.True(t, devB.IsConnectionOpen(), "dev-b keeps its session")
}

func TestOwnTopicsWork(t *testing.T) {
	p := start(t)
	url := p.URL()
	backend := mqtttest.Connect(t, mqtttest.Options(url, "kluis-backend-1", "kluis-backend", "pw-backend"))
	devA := mqtttest.Connect(t, mqtttest.Options(url, "dev-a", "dev-a", "pw-a"))
	fromDevice := mqtttest.NewInbox()
	for _, k := range wire.DeviceKinds() {
		assert.Equal(t, byte(1), mqtttest.Subscribe(t, backend, wire.SharedSubscription(wire.BackendShareGroup, k), fromDevice), k)
	}
	toDevice := mqtttest.NewInbox()
	for _, k := range wire.BackendKinds() {
		topic, _ := wire.TopicFor("dev-a", k)
		assert.Equal(t, byte(1), mqtttest.Subscribe(t, devA, topic, toDevice), k)
	}
	for _, k := range wire.DeviceKinds() {
		topic, _ := wire.TopicFor("dev-a", k)
		mqtttest.Publish(t, devA, topic, 1, false, "x")
		fromDevice.WaitFor(t, topic+" x")
	}
	for _, k := range wire.BackendKinds() {
		topic, _ := wire.TopicFor("dev-a", k)
		mqtttest.Publish(t, backend, topic, 1, false, "y")
		toDevice.WaitFor(t, topic+" y")
	}
}

func TestAuthenticationRequired(t *testing.T) {
	p := start(t)
	url := p.URL()
	assert.Error(t, mqtttest.ConnectErr(mqtttest.Options(url, "anon", "", "")))
	assert.Error(t, mqtttest.ConnectErr(mqtttest.Options(url, "dev-a", "dev-a", "wrong")))
	assert.NoError(t, mqtttest.ConnectErr(mqtttest.Options(url, "dev-a", "dev-a", "pw-a")))
}

// TLSConfig is the shipped configuration with its TLS listener block
// uncommented, as README.md tells an operator to do.
func TLSConfig(t testing.TB) string {
	t.Helper()
	conf, err := os.ReadFile("mosquitto.conf")
	require.NoError(t, err)
	return mosquittotest.EnableTLS(string(conf))
}

// The TLS listener of the shipped configuration: a client that trusts the
// city's CA connects over TLS and talks to its own topics; a client that
// trusts only the system's CAs, or another CA, or speaks plain MQTT to the
// TLS port is refused before it can log in.
func TestTLSListener(t *testing.T) {
	certs := mosquittotest.NewCerts(t)
	acl, err := os.ReadFile("acl")
	require.NoError(t, err)
	p := mosquittotest.Start(t, mosquittotest.Options{Config: TLSConfig(t), ACL: string(acl), TLS: certs,
		Users: map[string]string{"dev-a": "pw-a", "kluis-backend": "pw-backend"}})
	url := p.TLSURL()

	backend := mqtttest.Connect(t, mqtttest.Options(url, "kluis-backend", "kluis-backend", "pw-backend").SetTLSConfig(certs.ClientTLS()))
	events := mqtttest.NewInbox()
	assert.Equal(t, byte(1), mqtttest.Subscribe(t, backend, wire.SharedSubscription(wire.BackendShareGroup, wire.KindEvent), events))
	devA := mqtttest.Connect(t, mqtttest.Options(url, "dev-a", "dev-a", "pw-a").SetTLSConfig(certs.ClientTLS()))
	mqtttest.Publish(t, devA, "kluis/v1/dev/dev-a/event", 1, false, "over-tls")
	events.WaitFor(t, "kluis/v1/dev/dev-a/event over-tls")

	// The right password is not enough without the right CA.
	err = mqtttest.ConnectErr(mqtttest.Options(url, "dev-a", "dev-a", "pw-a").SetTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	require.Error(t, err, "a client trusting the system CAs only must not connect")
	assert.ErrorAs(t, err, new(x509.UnknownAuthorityError))
	other := mosquittotest.NewCerts(t)
	err = mqtttest.ConnectErr(mqtttest.Options(url, "dev-a", "dev-a", "pw-a").SetTLSConfig(other.ClientTLS()))
	require.Error(t, err, "a client trusting another CA must not connect")
	assert.ErrorAs(t, err, new(x509.UnknownAuthorityError))
	// Plain MQTT on the TLS port gets no CONNACK.
	err = mqtttest.ConnectErr(mqtttest.Options("tcp://"+p.TLSAddr(), "dev-a", "dev-a", "pw-a").SetConnectTimeout(3 * time.Second))
	require.Error(t, err, "plain MQTT on the TLS listener")
	// A wrong password over TLS is still refused by the password file.
	err = mqtttest.ConnectErr(mqtttest.Options(url, "dev-a", "dev-a", "wrong").SetTLSConfig(certs.ClientTLS()))
	require.Error(t, err)
	assert.True(t, devA.IsConnectionOpen() && backend.IsConnectionOpen())
}
