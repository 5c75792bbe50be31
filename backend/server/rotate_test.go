package server_test

import (
	"errors"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// TestNewMQTTPasswordEndsTheOldOnesConnections: the runbooks say to set a
// new MQTT password when a device's may have leaked. Found black-box: the
// embedded broker checked a password at CONNECT only, so a thief's
// connections made with the old one stayed (keep-alive pings hold them
// for ever), publishing as the device and reading its commands. Now a
// new password (or a disabled credential) closes the device's
// connections on this replica at once; the old password is refused on
// reconnection and the new one works.
func TestNewMQTTPasswordEndsTheOldOnesConnections(t *testing.T) {
	s := startBackend(t, server.Options{})
	s.call("POST", "/api/v1/sites", map[string]any{"id": "kortrijk", "name": "Stadhuis"}, 201)
	s.call("POST", "/api/v1/devices", map[string]any{"id": "k1", "site_id": "kortrijk", "kind": "locker",
		"compartments": []map[string]any{{"board": 0, "channel": 0, "size": "M", "height_cm": 100}}}, 201)
	s.call("POST", "/api/v1/devices", map[string]any{"id": "k2", "site_id": "kortrijk", "kind": "locker",
		"compartments": []map[string]any{{"board": 0, "channel": 0, "size": "M", "height_cm": 100}}}, 201)
	old := s.call("POST", "/api/v1/devices/k1/mqtt-password", nil, 201)["password"].(string)
	other := s.call("POST", "/api/v1/devices/k2/mqtt-password", nil, 201)["password"].(string)
	thief := connectDevice(t, s.Broker, "k1", old)
	neighbour := connectDevice(t, s.Broker, "k2", other)
	require.True(t, thief.c.IsConnectionOpen())

	fresh := s.call("POST", "/api/v1/devices/k1/mqtt-password", nil, 201)["password"].(string)
	testenv.Eventually(t, "the old password's connection closed", func() bool { return !thief.c.IsConnectionOpen() })
	assert.Error(t, connectErr(s.Broker, "k1", old), "the old password is refused")
	connectDevice(t, s.Broker, "k1", fresh)
	// Another device keeps its connection: a QoS 1 publish is acknowledged.
	neighbour.publish(wire.KindPresence, &wire.Presence{State: wire.Online, Software: "kluisd-test"})
	assert.True(t, neighbour.c.IsConnectionOpen())
}

// connectErr is the outcome of a device's CONNECT with password.
func connectErr(brokerAddr, id, password string) error {
	o := paho.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID(id + ".probe").SetUsername(id).SetPassword(password).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(20 * time.Second) {
		return errors.New("connect timeout")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	c.Disconnect(50)
	return nil
}
