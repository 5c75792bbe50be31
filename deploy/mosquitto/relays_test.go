package mosquitto

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"kluis/backend/broker/mqtttest"
)

// TestRelayModulesOnlyTakeKluisdsCommands: the relay modules' broker with
// the shipped mosquitto.conf and relays.acl. Found black-box on the demo's
// relay bus, which takes anyone: `mosquitto_pub -t
// cmnd/kortrijk-automaton/POWER3 -m ON` turned the automaton's carousel,
// and neither kluisd nor the backend recorded anything. With the ACL, only
// kluisd's user commands a module; a module's credential (or no
// credential) neither commands another module nor forges its results.
func TestRelayModulesOnlyTakeKluisdsCommands(t *testing.T) {
	p := startWith(t, "relays.acl", map[string]string{"kluisd-relays": "pw-kluisd", "bank-a": "pw-a", "bank-b": "pw-b"})
	url := p.URL()
	assert.Error(t, mqtttest.ConnectErr(mqtttest.Options(url, "anon", "", "")), "no anonymous client")

	kluisd := mqtttest.Connect(t, mqtttest.Options(url, "kluisd-relays", "kluisd-relays", "pw-kluisd"))
	bankA := mqtttest.Connect(t, mqtttest.Options(url, "bank-a", "bank-a", "pw-a"))
	bankB := mqtttest.Connect(t, mqtttest.Options(url, "bank-b", "bank-b", "pw-b"))
	toA := mqtttest.NewInbox()
	mqtttest.Subscribe(t, bankA, "cmnd/bank-a/#", toA)
	results := mqtttest.NewInbox()
	mqtttest.Subscribe(t, kluisd, "stat/+/+", results)
	mqtttest.Subscribe(t, kluisd, "tele/+/LWT", results)
	spyB := mqtttest.NewInbox()
	mqtttest.Subscribe(t, bankB, "cmnd/#", spyB)

	// Another module's credential: commands to bank-a and results in its
	// name are dropped (Mosquitto acknowledges and drops them).
	mqtttest.Publish(t, bankB, "cmnd/bank-a/POWER1", 1, false, "ON")
	mqtttest.Publish(t, bankB, "stat/bank-a/POWER1", 1, false, "OFF")
	// kluisd's command and bank-a's own answer go through, after them.
	mqtttest.Publish(t, kluisd, "cmnd/bank-a/POWER2", 1, false, "ON")
	toA.WaitFor(t, "cmnd/bank-a/POWER2 ON")
	mqtttest.Publish(t, bankA, "stat/bank-a/POWER2", 1, false, "ON")
	results.WaitFor(t, "stat/bank-a/POWER2 ON")
	mqtttest.Publish(t, bankB, "tele/bank-b/LWT", 1, false, "Online")
	results.WaitFor(t, "tele/bank-b/LWT Online")

	assert.Equal(t, []string{"cmnd/bank-a/POWER2 ON"}, toA.All(), "only kluisd commands bank-a")
	assert.Equal(t, []string{"stat/bank-a/POWER2 ON", "tele/bank-b/LWT Online"}, results.All(), "no forged result")
	assert.Empty(t, spyB.All(), "bank-b reads no other module's commands")
}
