package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"kluis/controller/config"
	"kluis/hardware"
	"kluis/hardware/kerong"
	"kluis/hardware/kluisbus"
)

// OpenDriver opens the production driver the configuration names.
func OpenDriver(ctx context.Context, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (hardware.Driver, error) {
	h := cfg.Hardware
	switch h.Driver {
	case config.DriverKluis:
		return kluisbus.New(kluisbus.Options{Port: h.Serial.Port, Baud: h.Serial.Baud, Boards: h.Boards,
			Logger: log.With("part", "kluisbus"), Registry: reg})
	case config.DriverKerong:
		return kerong.New(kerong.Options{Port: h.Serial.Port, Baud: h.Serial.Baud, Boards: h.Boards,
			Logger: log.With("part", "kerong"), Registry: reg})
	case config.DriverTasmota:
		return nil, fmt.Errorf("daemon: the tasmota driver is not built into this kluisd yet: %w", hardware.ErrUnsupported)
	}
	return nil, fmt.Errorf("daemon: driver %q is not a production driver: %w", h.Driver, hardware.ErrUnsupported)
}
