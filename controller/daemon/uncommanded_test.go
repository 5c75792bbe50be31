package daemon

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/broker/mqtttest"
	"kluis/backend/server"
	"kluis/controller/config"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
	"kluis/simulator"
)

// Someone on the relay modules' broker switches a lock on (the newcomer's
// attack: mosquitto_pub -t cmnd/<module>/POWER4 -m ON turned a relay and
// nothing recorded it; the simulated door springs open and reads as a
// forced door, a door without a contact, or one held shut, did not). kluisd
// reads every module's stat/ topics: a relay
// reported ON that it did not switch is now a forced_door alarm on that
// compartment, at the backend, with the relay named; a pulse kluisd made
// raises none (TestPickupAgainstSimulator's tasmota run checks that no
// alarm comes of a pickup). Before, no alarm at all.
func TestUncommandedRelayRaisesForcedDoor(t *testing.T) {
	dev := fmt.Sprintf("rogue-%d", time.Now().UnixNano())
	sim, err := simulator.New(simulator.Options{ID: dev, Kind: simulator.Locker, Boards: 1, Channels: 8})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mod, err := simulator.ServeTasmota(ctx, sim, simulator.TasmotaOptions{Broker: testenv.BrokerURL(), Topic: dev + "-bank", ClearRetainedOnClose: true})
	require.NoError(t, err)
	defer mod.Close()
	be := startRealBackend(t, dev, config.KindLocker, []compartment{{4, wire.Address{Board: 0, Channel: 3}}, {5, wire.Address{Board: 0, Channel: 4}}},
		server.Options{})
	hw := fmt.Sprintf("{driver: tasmota, tasmota: {broker: %s, modules: [{topic: %s-bank, relays: 8, board: 0}]}}", testenv.BrokerURL(), dev)
	_, metrics, stop := startSimKluisd(t, be, dev, config.KindLocker, hw, "{door_open_detect: 5s, verify: 3s, present: 10s}",
		"  - {number: 4, board: 0, channel: 3}\n  - {number: 5, board: 0, channel: 4}\n")
	defer func() { require.NoError(t, stop()) }()
	testenv.Eventually(t, "kiosk ready", func() bool { return health(metrics).Ready })

	rogue := mqtttest.Connect(t, mqtttest.Options(testenv.BrokerURL(), "rogue-"+dev, "", ""))
	defer rogue.Disconnect(0)
	forced := func() string {
		for _, r := range be.audit("device:" + dev) {
			if d := fmt.Sprint(r.Details); r.Action == "device.alarm" && strings.Contains(d, "forced_door") && strings.Contains(d, "POWER4") {
				return d
			}
		}
		return ""
	}
	// The relay's baseline (OFF) must be known before an ON is a switching:
	// send the rogue ON until the alarm comes.
	testenv.EventuallyWithin(t, 60*time.Second, "a forced_door alarm for the relay kluisd did not switch", func() bool {
		if forced() == "" {
			rogue.Publish("cmnd/"+dev+"-bank/POWER4", 0, false, "ON").Wait()
			time.Sleep(300 * time.Millisecond)
			rogue.Publish("cmnd/"+dev+"-bank/POWER4", 0, false, "OFF").Wait()
			time.Sleep(300 * time.Millisecond)
		}
		return forced() != ""
	})
	d := forced()
	require.Contains(t, d, "lock released without a command (POWER4 ON not commanded by kluisd)")
	require.Contains(t, d, "channel:3", "on compartment 4's lock: %s", d)
}
