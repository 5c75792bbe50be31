package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"kluis/controller/config"
	"kluis/controller/promtext"
	"kluis/hardware"
	"kluis/hardware/kerong"
	"kluis/hardware/kluisbus"
	"kluis/hardware/tasmota"
)

// OpenDriver opens the production driver the configuration names.
func OpenDriver(ctx context.Context, cfg *config.Config, log *slog.Logger, reg promtext.Registerer) (hardware.Driver, error) {
	h := cfg.Hardware
	// The drivers read Retries 0 as their default and a negative number as
	// none; the configuration's 0 means none.
	retries := -1
	if h.Serial.Retries != nil && *h.Serial.Retries > 0 {
		retries = *h.Serial.Retries
	}
	switch h.Driver {
	case config.DriverKluis:
		return kluisbus.New(kluisbus.Options{Port: h.Serial.Port, Baud: h.Serial.Baud, Boards: h.Boards,
			Timeout: h.Serial.Timeout, Retries: retries, Logger: log, Registry: reg})
	case config.DriverKerong:
		return kerong.New(kerong.Options{Port: h.Serial.Port, Baud: h.Serial.Baud, Boards: h.Boards,
			Timeout: h.Serial.Timeout, Retries: retries, Logger: log, Registry: reg})
	case config.DriverTasmota:
		pw, err := cfg.TasmotaPassword()
		if err != nil {
			return nil, err
		}
		var mods []tasmota.Module
		for _, m := range h.Tasmota.Modules {
			mods = append(mods, tasmota.Module{Topic: m.Topic, Relays: m.Relays, Board: m.Board})
		}
		return tasmota.New(tasmota.Options{Broker: h.Tasmota.Broker, ClientID: h.Tasmota.ClientID,
			Username: h.Tasmota.Username, Password: pw, Modules: mods, Automaton: cfg.Kind == config.KindAutomaton,
			Logger: log, Registry: reg})
	}
	return nil, fmt.Errorf("daemon: driver %q is not a production driver: %w", h.Driver, hardware.ErrUnsupported)
}
