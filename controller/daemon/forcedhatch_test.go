package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/controller/config"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
	"kluis/simulator"
)

// A forced automaton hatch with the real parts: kluis-sim's automaton on a
// pty (the Kluis protocol), kluisd, the real backend. A document's codes
// reach kluisd's offline cache; the hatch is forced open (no pulse) and
// closed; the backend goes away. The document's QR at the kiosk, offline,
// must keep the carousel still and the hatch shut (out_of_order): any slot
// may have been reached through the forced hatch. Before, the forced hatch
// withdrew no code and the carousel presented the slot and opened.
func TestForcedHatchWithdrawsOfflineCodes(t *testing.T) {
	dev := fmt.Sprintf("forced-%d", time.Now().UnixNano())
	sim, err := simulator.New(simulator.Options{ID: dev, Kind: simulator.Automaton, Boards: 1, Slots: 6, MoveTime: 200 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	line, err := simulator.ServeSerial(ctx, sim, simulator.SerialOptions{Protocol: "kluis"})
	require.NoError(t, err)
	defer line.Close()
	be := startRealBackend(t, dev, config.KindAutomaton, []compartment{{4, wire.Address{Board: 0, Channel: 3}}, {5, wire.Address{Board: 0, Channel: 4}}},
		server.Options{})
	ids, tokens := be.loadDocuments(1)
	doc := ids[0]
	slot := be.channelOf(doc)
	require.NoError(t, sim.Load(0, slot, slot, "ID card 591-0000001-01"))

	kiosk, metrics, stop := startSimKluisd(t, be, dev, config.KindAutomaton, fmt.Sprintf("{driver: kluis, serial: {port: %s, baud: 9600}}", line.Path),
		"{door_open_detect: 5s, verify: 2s, present: 10s}", "  - {number: 4, board: 0, slot: 3}\n  - {number: 5, board: 0, slot: 4}\n")
	defer func() { _ = stop() }()
	testenv.EventuallyWithin(t, 60*time.Second, "the document's code in the offline cache", func() bool {
		return health(metrics).Ready && metricValue(metrics, "kluisd_offline_cache_entries") >= 1
	})

	// The hatch forced open and shut again, no pulse.
	require.NoError(t, sim.Force(0, 0))
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, sim.Close(0, 0))
	testenv.EventuallyWithin(t, 30*time.Second, "the forced door audited", func() bool {
		for _, r := range be.audit("device:" + dev) {
			if r.Action == "device.alarm" && strings.Contains(fmt.Sprint(r.Details), "forced_door") {
				return true
			}
		}
		return false
	})
	be.Stop()
	testenv.EventuallyWithin(t, 30*time.Second, "kluisd sees the backend gone", func() bool {
		resp, err := testenv.HTTPClient().Post("http://"+kiosk+"/kiosk/v1/pickup", "application/json", strings.NewReader(`{"qr":"`+tokens[doc]+`"}`))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var s struct{ State string }
		_ = json.NewDecoder(resp.Body).Decode(&s)
		require.NotEqual(t, "open", s.State, "the QR opened the hatch offline after a forced hatch")
		require.NotEqual(t, "presenting", s.State, "the QR moved the carousel offline after a forced hatch")
		return s.State == "out_of_order"
	})
	time.Sleep(time.Second)
	require.Empty(t, sim.Presents(), "the carousel did not move")
	require.Empty(t, sim.Pulses(), "the hatch stayed shut")
}
