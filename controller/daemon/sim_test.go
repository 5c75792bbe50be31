package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
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

// kluisd with the production drivers (the Kluis protocol on a real pty, or
// Tasmota relays on the MQTT broker) against the simulator, and the real
// backend in-process: a citizen's QR pickup (the token the backend
// e-mailed) opens exactly the right door once (a locker channel, or an
// automaton's hatch after the carousel brought the slot), the citizen takes
// the document and closes the door, and the backend collects it, with no
// alarm.
func TestPickupAgainstSimulator(t *testing.T) {
	for _, tc := range []struct{ kind, hw string }{
		{config.KindLocker, "kluis"}, {config.KindAutomaton, "kluis"}, {config.KindLocker, "tasmota"},
	} {
		kind := tc.kind
		t.Run(kind+"-"+tc.hw, func(t *testing.T) {
			dev := fmt.Sprintf("sim-%s-%d", kind, time.Now().UnixNano())
			simOpts := simulator.Options{ID: dev, Kind: simulator.Locker, Boards: 1, Channels: 8}
			if kind == config.KindAutomaton {
				simOpts = simulator.Options{ID: dev, Kind: simulator.Automaton, Boards: 1, Slots: 6, MoveTime: 200 * time.Millisecond}
			}
			sim, err := simulator.New(simOpts)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			hw := ""
			if tc.hw == "kluis" {
				line, err := simulator.ServeSerial(ctx, sim, simulator.SerialOptions{Protocol: "kluis"})
				require.NoError(t, err)
				defer line.Close()
				hw = fmt.Sprintf("{driver: kluis, serial: {port: %s, baud: 9600}}", line.Path)
			} else {
				mod, err := simulator.ServeTasmota(ctx, sim, simulator.TasmotaOptions{Broker: testenv.BrokerURL(), Topic: dev + "-bank",
					ClearRetainedOnClose: true})
				require.NoError(t, err)
				defer mod.Close()
				// The relays stay on the shared broker; kluisd's link goes to the backend's.
				hw = fmt.Sprintf("{driver: tasmota, tasmota: {broker: %s, modules: [{topic: %s-bank, relays: 8, board: 0}]}}", testenv.BrokerURL(), dev)
			}

			// The backend's device: compartments 4 and 5 are channels (locker)
			// or slots (automaton) 3 and 4 of board 0.
			be := startRealBackend(t, dev, kind, []compartment{{4, wire.Address{Board: 0, Channel: 3}}, {5, wire.Address{Board: 0, Channel: 4}}},
				server.Options{})
			comps := "  - {number: 4, board: 0, channel: 3}\n  - {number: 5, board: 0, channel: 4}\n"
			if kind == config.KindAutomaton {
				comps = "  - {number: 4, board: 0, slot: 3}\n  - {number: 5, board: 0, slot: 4}\n"
			}
			ids, tokens := be.loadDocuments(1)
			doc := ids[0]
			ch := be.channelOf(doc) // a channel, or an automaton's slot
			require.NoError(t, sim.Load(0, ch, ch, "ID card 591-0000001-01"))

			kiosk, metrics, stop := startSimKluisd(t, be, dev, kind, hw, "{door_open_detect: 5s, verify: 3s, present: 10s}", comps)
			defer func() { require.NoError(t, stop()) }()
			testenv.Eventually(t, "kiosk ready", func() bool { return health(metrics).Ready })
			// The link may still be connecting: retry until the backend answered.
			testenv.Eventually(t, "door opens", func() bool {
				if len(sim.Pulses()) == 0 {
					resp, err := testenv.HTTPClient().Post("http://"+kiosk+"/kiosk/v1/pickup", "application/json", strings.NewReader(`{"qr":"`+tokens[doc]+`"}`))
					if err == nil {
						resp.Body.Close()
					}
					time.Sleep(300 * time.Millisecond)
				}
				_, err := sim.Take(0, hatchOr(kind, ch))
				return err == nil
			})
			require.NoError(t, sim.Close(0, hatchOr(kind, ch)))
			testenv.Eventually(t, "the document collected at the backend", func() bool { return be.state(doc) == "collected" })
			pulses := sim.Pulses()
			require.Len(t, pulses, 1, "exactly one pulse")
			require.Equal(t, hatchOr(kind, ch), pulses[0].Channel)
			if kind == config.KindAutomaton {
				require.Len(t, sim.Presents(), 1)
				require.Equal(t, ch, sim.Presents()[0].Slot)
			}
			testenv.Eventually(t, "the pickup in the device's audit trail", func() bool {
				return be.auditActions("device:" + dev)["device.pickup_completed"] == 1
			})
			for _, r := range be.audit("device:" + dev) {
				if r.Action == "device.alarm" {
					t.Errorf("unexpected alarm %v", r.Details)
				}
			}
		})
	}
}

func hatchOr(kind string, ch int) int {
	if kind == config.KindAutomaton {
		return 0
	}
	return ch
}

// startSimKluisd runs kluisd (Run) as device dev of kind against be, with
// the hardware hw and timeouts (YAML flow mappings) and the compartments
// comps (YAML list lines). It returns the kiosk's and the metrics
// listener's addresses and stop, which stops kluisd and returns Run's
// error.
func startSimKluisd(t *testing.T, be *realBackend, dev, kind, hw, timeouts, comps string) (kiosk, metrics string, stop func() error) {
	t.Helper()
	kiosk, metrics = testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
device_id: %s
site: sim
kind: %s
mqtt: %s
hardware: %s
journal_dir: %s
kiosk: {listen: "%s"}
metrics_listen: "%s"
offline: %s
timeouts: %s
compartments:
%s`, dev, kind, be.mqttConfig(), hw, filepath.Join(t.TempDir(), "journal"), kiosk, metrics, be.offlineConfig(), timeouts, comps)), config.ParseOptions{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Software: "sim-test"})
	}()
	return kiosk, metrics, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("daemon did not stop")
			return nil
		}
	}
}
