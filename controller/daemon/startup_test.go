package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/config"
	"kluis/controller/promtext"
	"kluis/hardware"
	"kluis/simulator"
)

// The engine starts before the kiosk's screen is built and its port
// opened; a start-up error after it (the kiosk's address taken) stops the
// engine and closes the driver before Run returns the error: the
// production Kluis driver on a real pty is halted and closed then (a pulse
// is refused with hardware.ErrHalted).
func TestStartupErrorStopsTheEngine(t *testing.T) {
	sim, err := simulator.New(simulator.Options{ID: "startup-err", Boards: 1, Channels: 8})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	line, err := simulator.ServeSerial(ctx, sim, simulator.SerialOptions{Protocol: simulator.ProtoKluis})
	require.NoError(t, err)
	defer line.Close()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
device_id: startup-err
site: test
kind: locker
mqtt: {url: tcp://127.0.0.1:1}
hardware: {driver: kluis, serial: {port: %s, baud: 9600}}
journal_dir: %s
kiosk: {listen: "%s"}
metrics_listen: "off"
compartments:
  - {number: 1, board: 0, channel: 0}
`, line.Path, filepath.Join(t.TempDir(), "journal"), taken.Addr())), config.ParseOptions{})
	require.NoError(t, err)
	var drv hardware.Driver
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			OpenDriver: func(ctx context.Context, cfg *config.Config, log *slog.Logger, reg promtext.Registerer) (hardware.Driver, error) {
				d, err := OpenDriver(ctx, cfg, log, reg)
				drv = d // the second one is the engine's
				return d, err
			}})
	}()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after the kiosk's listen failed")
	}
	require.ErrorContains(t, err, "kiosk.listen")
	require.NotNil(t, drv)
	err = drv.Pulse(context.Background(), hardware.Address{Board: 0, Channel: 0}, time.Second, 1)
	require.True(t, errors.Is(err, hardware.ErrHalted), "pulse after Run returned: %v", err)
}
