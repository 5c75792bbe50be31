package simulator

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"kluis/hardware"
)

// Config is a whole simulated fleet, usually read from YAML (LoadConfig).
type Config struct {
	// Seed is the fleet seed; a device without its own seed gets one
	// derived from this and its id.
	Seed uint64 `yaml:"seed" json:"seed"`
	// HTTP is the loopback address of the control API, "" for none
	// (e.g. 127.0.0.1:7070, or 127.0.0.1:0 for any free port).
	HTTP string `yaml:"http" json:"http"`
	// Broker is the MQTT broker of Tasmota modules; default
	// tcp://127.0.0.1:1883.
	Broker  string         `yaml:"broker" json:"broker"`
	Devices []DeviceConfig `yaml:"devices" json:"devices"`
}

// DeviceConfig is one device of the fleet.
type DeviceConfig struct {
	ID string `yaml:"id" json:"id"`
	// Kind is locker (default) or automaton.
	Kind Kind `yaml:"kind" json:"kind"`
	// Hardware is kluis, kerong-cu16 or tasmota.
	Hardware string `yaml:"hardware" json:"hardware"`
	// Link is the pty symlink of a serial device; default
	// <tmpdir>/kluis-sim-<id>.
	Link string `yaml:"link" json:"link"`
	// Topic is a Tasmota device's topic; default the id. A device with
	// several boards gets one module per board, topics <topic>-<board>.
	Topic    string `yaml:"topic" json:"topic"`
	Boards   int    `yaml:"boards" json:"boards"`
	Channels int    `yaml:"channels" json:"channels"`
	Slots    int    `yaml:"slots" json:"slots"`
	// Seed, when set, replaces the one derived from the fleet seed.
	Seed      *uint64       `yaml:"seed" json:"seed,omitempty"`
	MoveTime  time.Duration `yaml:"move_time" json:"move_time"`
	MechDelay time.Duration `yaml:"mech_delay" json:"mech_delay"`
	Cooldown  time.Duration `yaml:"cooldown" json:"cooldown"`
	AutoClose time.Duration `yaml:"auto_close" json:"auto_close"`
	// MaxEnergised bounds the locks energised at once per board (0: none).
	MaxEnergised int `yaml:"max_energised" json:"max_energised"`
	// NoBootCheck: Kluis boards with firmware from before the boot check
	// of UNLOCK and PRESENT (firmware-protocol.md 4.3.1).
	NoBootCheck bool `yaml:"no_boot_check" json:"no_boot_check,omitempty"`
	// KerongOpenBitClear inverts the Kerong lock-bit polarity.
	KerongOpenBitClear bool `yaml:"kerong_open_bit_clear" json:"kerong_open_bit_clear"`
	// KerongPulse is the Kerong board's unlock time; default 500ms.
	KerongPulse time.Duration `yaml:"kerong_pulse" json:"kerong_pulse"`
	Faults      Faults        `yaml:"faults" json:"faults"`
	// Stuck locks and BrokenSensors door sensors from the start.
	Stuck         []hardware.Address `yaml:"stuck" json:"stuck"`
	BrokenSensors []hardware.Address `yaml:"broken_sensors" json:"broken_sensors"`
	Items         []ItemConfig       `yaml:"items" json:"items"`
}

// ItemConfig is an item in place at start: behind a locker's channel or in
// an automaton's slot.
type ItemConfig struct {
	Board   int    `yaml:"board" json:"board"`
	Channel int    `yaml:"channel" json:"channel"`
	Slot    int    `yaml:"slot" json:"slot"`
	Label   string `yaml:"label" json:"label"`
}

// LoadConfig reads a YAML fleet file; unknown fields are errors.
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("fleet config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("fleet config %s: %w", path, err)
	}
	return c, c.Validate()
}

// Validate checks ids and hardware kinds.
func (c Config) Validate() error {
	seen := map[string]bool{}
	links := map[string]bool{}
	for i, d := range c.Devices {
		if d.ID == "" || len(d.ID) > 64 {
			return fmt.Errorf("device %d: id must be 1-64 characters: %w", i, ErrBadInput)
		}
		if seen[d.ID] {
			return fmt.Errorf("device %s twice: %w", d.ID, ErrBadInput)
		}
		seen[d.ID] = true
		switch d.Hardware {
		case ProtoKluis, ProtoKerong, ProtoTasmota:
		default:
			return fmt.Errorf("device %s: hardware %q (want kluis, kerong-cu16 or tasmota): %w", d.ID, d.Hardware, ErrBadInput)
		}
		if d.Link != "" {
			if links[d.Link] {
				return fmt.Errorf("device %s: link %s used twice: %w", d.ID, d.Link, ErrBadInput)
			}
			links[d.Link] = true
		}
		if err := d.Faults.Validate(); err != nil {
			return fmt.Errorf("device %s: %w", d.ID, err)
		}
	}
	return nil
}

// Endpoint says where a device can be reached by its driver.
type Endpoint struct {
	ID       string `json:"id"`
	Kind     Kind   `json:"kind"`
	Hardware string `json:"hardware"`
	// Link and Path of a serial device's pty.
	Link string `json:"link,omitempty"`
	Path string `json:"path,omitempty"`
	// Broker and Topics (one per board) of a Tasmota device.
	Broker string   `json:"broker,omitempty"`
	Topics []string `json:"topics,omitempty"`
}

// FleetOptions are what StartFleet takes besides the config.
type FleetOptions struct {
	// Clock for every device; default RealClock.
	Clock Clock
	// Logger; default discards.
	Logger *slog.Logger
	// ClearRetained: Tasmota modules remove their retained LWT when the
	// fleet closes (tests with throw-away topics).
	ClearRetained bool
}

// Fleet is a running set of simulated devices.
type Fleet struct {
	cfg       Config
	log       *slog.Logger
	order     []string
	devices   map[string]*Device
	endpoints map[string]Endpoint
	lines     []*Line
	lineOf    map[string]*Line // by device id
	modules   []*TasmotaModule
	control   *ControlServer
	closeOnce sync.Once
}

func deriveSeed(fleet uint64, id string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	return fleet ^ h.Sum64()
}

// StartFleet builds every device of cfg, serves it on its hardware (pty or
// broker) and, when cfg.HTTP is set, the control API. On error everything
// started is stopped again.
func StartFleet(ctx context.Context, cfg Config, o FleetOptions) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = RealClock{}
	}
	if cfg.Broker == "" {
		cfg.Broker = "tcp://127.0.0.1:1883"
	}
	f := &Fleet{cfg: cfg, log: o.Logger.With("part", "simulator-fleet"), devices: map[string]*Device{}, endpoints: map[string]Endpoint{},
		lineOf: map[string]*Line{}}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	for _, dc := range cfg.Devices {
		seed := deriveSeed(cfg.Seed, dc.ID)
		if dc.Seed != nil {
			seed = *dc.Seed
		}
		dev, err := New(Options{ID: dc.ID, Kind: dc.Kind, Boards: dc.Boards, Channels: dc.Channels, Slots: dc.Slots,
			MoveTime: dc.MoveTime, MechDelay: dc.MechDelay, Cooldown: dc.Cooldown, AutoClose: dc.AutoClose, MaxEnergised: dc.MaxEnergised, NoBootCheck: dc.NoBootCheck,
			Seed: seed, Clock: o.Clock, Logger: o.Logger})
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", dc.ID, err)
		}
		if err := dev.SetFaults(dc.Faults); err != nil {
			return nil, fmt.Errorf("device %s: %w", dc.ID, err)
		}
		for _, a := range dc.Stuck {
			if err := dev.SetStuck(a.Board, a.Channel, true); err != nil {
				return nil, fmt.Errorf("device %s stuck: %w", dc.ID, err)
			}
		}
		for _, a := range dc.BrokenSensors {
			if err := dev.SetSensorBroken(a.Board, a.Channel, true); err != nil {
				return nil, fmt.Errorf("device %s broken sensor: %w", dc.ID, err)
			}
		}
		for _, it := range dc.Items {
			if err := dev.Load(it.Board, it.Channel, it.Slot, it.Label); err != nil {
				return nil, fmt.Errorf("device %s item %q: %w", dc.ID, it.Label, err)
			}
		}
		ep := Endpoint{ID: dc.ID, Kind: dev.Kind(), Hardware: dc.Hardware}
		switch dc.Hardware {
		case ProtoKluis, ProtoKerong:
			link := dc.Link
			if link == "" {
				link = os.TempDir() + "/kluis-sim-" + dc.ID
			}
			l, err := ServeSerial(ctx, dev, SerialOptions{Protocol: dc.Hardware, Link: link, Logger: o.Logger,
				Kerong: KerongOptions{OpenBitClear: dc.KerongOpenBitClear, PulseTime: dc.KerongPulse}})
			if err != nil {
				return nil, fmt.Errorf("device %s: %w", dc.ID, err)
			}
			f.lines = append(f.lines, l)
			f.lineOf[dc.ID] = l
			ep.Link, ep.Path = l.Link, l.Path
		case ProtoTasmota:
			topic := dc.Topic
			if topic == "" {
				topic = dc.ID
			}
			ep.Broker = cfg.Broker
			for b := 0; b < dev.NumBoards(); b++ {
				t := topic
				if dev.NumBoards() > 1 {
					t = topic + "-" + strconv.Itoa(b)
				}
				m, err := ServeTasmota(ctx, dev, TasmotaOptions{Broker: cfg.Broker, Topic: t, Board: b, Logger: o.Logger, ClearRetainedOnClose: o.ClearRetained})
				if err != nil {
					return nil, fmt.Errorf("device %s: %w", dc.ID, err)
				}
				f.modules = append(f.modules, m)
				ep.Topics = append(ep.Topics, t)
			}
		}
		f.order = append(f.order, dc.ID)
		f.devices[dc.ID] = dev
		f.endpoints[dc.ID] = ep
	}
	if cfg.HTTP != "" {
		cs, err := ServeControl(ctx, f, cfg.HTTP, o.Logger)
		if err != nil {
			return nil, err
		}
		f.control = cs
	}
	ok = true
	return f, nil
}

// Line returns the serial line of device id, or nil (a Tasmota device, an
// unknown id).
func (f *Fleet) Line(id string) *Line { return f.lineOf[id] }

// Device returns the device with id, or nil.
func (f *Fleet) Device(id string) *Device { return f.devices[id] }

// IDs returns the device ids in config order.
func (f *Fleet) IDs() []string { return append([]string(nil), f.order...) }

// Endpoint returns where device id is reached.
func (f *Fleet) Endpoint(id string) (Endpoint, bool) {
	e, ok := f.endpoints[id]
	return e, ok
}

// Endpoints returns every device's endpoint, in config order.
func (f *Fleet) Endpoints() []Endpoint {
	out := make([]Endpoint, 0, len(f.order))
	for _, id := range f.order {
		out = append(out, f.endpoints[id])
	}
	return out
}

// ControlAddr returns the control API's address ("" when not serving).
func (f *Fleet) ControlAddr() string {
	if f.control == nil {
		return ""
	}
	return f.control.Addr()
}

// Close stops every line, module and the control API.
func (f *Fleet) Close() error {
	var errs []error
	f.closeOnce.Do(func() {
		if f.control != nil {
			errs = append(errs, f.control.Close())
		}
		for _, l := range f.lines {
			errs = append(errs, l.Close())
		}
		for _, m := range f.modules {
			errs = append(errs, m.Close())
		}
	})
	return errors.Join(errs...)
}
