package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/config"
	"kluis/controller/wire"
	"kluis/simulator"
)

// kluisd with the production Kluis-protocol driver against the simulator on
// a real pty: a citizen's QR pickup opens exactly the right door once (a
// locker channel, or an automaton's hatch after the carousel brought the
// slot), the citizen takes the document and closes the door, and the
// backend receives pickup_completed.
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
				mod, err := simulator.ServeTasmota(ctx, sim, simulator.TasmotaOptions{Broker: brokerURL(), Topic: dev + "-bank",
					ClearRetainedOnClose: true})
				require.NoError(t, err)
				defer mod.Close()
				hw = fmt.Sprintf("{driver: tasmota, tasmota: {modules: [{topic: %s-bank, relays: 8, board: 0}]}}", dev)
			}

			// The document: compartment 4 is channel 3 (locker) or slot 3.
			comps := "  - {number: 4, board: 0, channel: 3}\n  - {number: 5, board: 0, channel: 4}\n"
			verify := &wire.VerifyResponse{Result: wire.VerifyOK, DocumentID: "doc-4", Addr: &wire.Address{Board: 0, Channel: 3}}
			require.NoError(t, sim.Load(0, 3, 3, "ID card 591-0000004-44"))
			if kind == config.KindAutomaton {
				comps = "  - {number: 4, board: 0, slot: 3}\n  - {number: 5, board: 0, slot: 4}\n"
				slot := 3
				verify = &wire.VerifyResponse{Result: wire.VerifyOK, DocumentID: "doc-4", Addr: &wire.Address{Board: 0, Channel: 0}, Slot: &slot}
			}
			dir := t.TempDir()
			kiosk := freePort(t)
			cfg, err := config.Parse([]byte(fmt.Sprintf(`
device_id: %s
site: sim
kind: %s
mqtt: {url: %s}
hardware: %s
journal_dir: %s
kiosk: {listen: "%s"}
metrics_listen: "off"
timeouts: {door_open_detect: 5s, verify: 3s, present: 10s}
compartments:
%s`, dev, kind, brokerURL(), hw, filepath.Join(dir, "journal"), kiosk, comps)), config.ParseOptions{})
			require.NoError(t, err)

			be := newBackend(t, dev)
			be.mu.Lock()
			be.verifyFn = func(req *wire.VerifyRequest) *wire.VerifyResponse {
				if req.Token != "K1.sim-token" {
					return &wire.VerifyResponse{ID: req.ID, Result: wire.VerifyWrongCode}
				}
				r := *verify
				r.ID = req.ID
				return &r
			}
			be.mu.Unlock()
			done := make(chan error, 1)
			go func() {
				done <- Run(ctx, Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Software: "sim-test"})
			}()
			defer func() {
				cancel()
				select {
				case err := <-done:
					require.NoError(t, err)
				case <-time.After(20 * time.Second):
					t.Fatal("daemon did not stop")
				}
			}()
			waitFor(t, "kiosk ready", func() bool {
				resp, err := http.Get("http://" + kiosk + "/kiosk/v1/diagnostics")
				if err != nil {
					return false
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return strings.Contains(string(b), `"ready":true`)
			})
			// The link may still be connecting: retry until the backend answered.
			waitFor(t, "door opens", func() bool {
				if len(sim.Pulses()) == 0 {
					resp, err := http.Post("http://"+kiosk+"/kiosk/v1/pickup", "application/json", strings.NewReader(`{"qr":"K1.sim-token"}`))
					if err == nil {
						resp.Body.Close()
					}
					time.Sleep(300 * time.Millisecond)
				}
				_, err := sim.Take(0, hatchOr(kind, 3))
				return err == nil
			})
			require.NoError(t, sim.Close(0, hatchOr(kind, 3)))
			waitFor(t, "pickup_completed at the backend", func() bool { return be.isCompleted("doc-4") })
			pulses := sim.Pulses()
			require.Len(t, pulses, 1, "exactly one pulse")
			require.Equal(t, hatchOr(kind, 3), pulses[0].Channel)
			if kind == config.KindAutomaton {
				require.Len(t, sim.Presents(), 1)
				require.Equal(t, 3, sim.Presents()[0].Slot)
			}
			be.mu.Lock()
			defer be.mu.Unlock()
			for _, e := range be.events {
				if e.Kind == wire.EvAlarm {
					t.Errorf("unexpected alarm %s: %s", e.Alarm, e.Detail)
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
