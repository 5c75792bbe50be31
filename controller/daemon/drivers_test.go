package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/config"
	"kluis/controller/promtext"
	"kluis/hardware"
	"kluis/hardware/hardwaretest"
	"kluis/simulator"
)

// hardware.serial.timeout and .retries reach the Kluis driver: against a
// simulated board whose line goes dead (every byte lost), the driver
// reports it offline after retries+1 unanswered attempts of timeout each,
// not sooner, with the production default as with a wider setting (the
// system tests' room for a loaded machine), and online again when the
// line comes back. hardware/kluisbus's TestResponseTimeoutAgainstALateBoard
// shows what the wider setting buys: a board answering late is not offline.
func TestSerialTimingFromTheConfiguration(t *testing.T) {
	for _, tc := range []struct {
		name     string
		serial   string
		attempts int
		timeout  time.Duration
	}{
		{"default", "", 3, 200 * time.Millisecond},
		{"wider", ", timeout: 1s, retries: 1", 2, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, err := simulator.New(simulator.Options{ID: "timing-" + tc.name, Kind: simulator.Locker, Boards: 1, Channels: 4})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			line, err := simulator.ServeSerial(ctx, sim, simulator.SerialOptions{Protocol: simulator.ProtoKluis})
			require.NoError(t, err)
			defer line.Close()
			cfg, err := config.Parse(fmt.Appendf(nil, `
device_id: timing
site: sim
kind: locker
mqtt: {url: "tcp://127.0.0.1:1", username: timing, password: x}
hardware: {driver: kluis, serial: {port: %s, baud: 115200%s}}
journal_dir: %s
compartments:
  - {number: 1, board: 0, channel: 0}
`, line.Path, tc.serial, t.TempDir()), config.ParseOptions{})
			require.NoError(t, err)
			require.Equal(t, tc.timeout, cfg.Hardware.Serial.Timeout)
			drv, err := OpenDriver(ctx, cfg, slog.New(slog.DiscardHandler), promtext.NewRegistry())
			require.NoError(t, err)
			defer drv.Close()
			w := hardwaretest.StartWatch(t, drv)
			_, err = drv.States(ctx)
			require.NoError(t, err, "the board answers")

			require.NoError(t, sim.SetFaults(simulator.Faults{Line: simulator.LineFaults{Drop: 1}}))
			gone := time.Now()
			off := w.WaitFor(t, time.Duration(tc.attempts)*tc.timeout+10*time.Second, func(ev hardware.Event) bool {
				return ev.Kind == hardware.BoardOffline
			})[0]
			took := time.Since(gone)
			require.Equal(t, fmt.Sprintf("no answer after %d tries", tc.attempts), off.Detail)
			// The exchange under way when the line died may have started
			// up to one timeout earlier.
			require.GreaterOrEqual(t, took, time.Duration(tc.attempts-1)*tc.timeout, "offline sooner than the configured attempts allow")

			require.NoError(t, sim.SetFaults(simulator.Faults{}))
			w.WaitFor(t, 20*time.Second, func(ev hardware.Event) bool { return ev.Kind == hardware.BoardOnline })
		})
	}
}
