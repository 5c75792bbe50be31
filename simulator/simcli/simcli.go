// Package simcli is kluis-sim's command line: the subcommands serial,
// tasmota, fleet and ctl, their flags and environment, the ready line a
// started simulator prints, and `ctl`, a command-line client of the control
// API (through simulator/simclient). cmd/kluis-sim only calls Main.
package simcli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"kluis/simulator"
	"kluis/simulator/simclient"
)

// Usage is the command's usage.
const Usage = `usage:
  kluis-sim serial  --protocol kluis|kerong-cu16 --link PATH [--boards N] [--channels N] [flags]
  kluis-sim tasmota --broker URL --topic T [--relays N] [flags]
  kluis-sim fleet   --config fleet.yaml
  kluis-sim ctl     [--addr HOST:PORT] devices|state|pulses|presents|queue|line|faults|set-faults|channel|board ...
Run a subcommand with -h for its flags.`

// CtlUsage is the usage of the ctl subcommand.
const CtlUsage = `kluis-sim ctl [--addr HOST:PORT] COMMAND
  devices                         list devices and where they are reached
  state ID                        the true physical state
  pulses ID | presents ID         every pulse / carousel command received
  queue ID BOARD                  a board's event queue
  line ID                         what the boards heard on the serial line (frames, bad input)
  faults ID                       the fault settings
  set-faults ID JSON              replace them, e.g. '{"line":{"corrupt":0.01}}'
  channel ID N ACTION [board=B] [label=L] [ms=M] [on=true] [broken=true]
                                  take|put|close|force|leave-open|pulse|stuck|sensor
  board ID B ACTION [slot=S] [on=true]
                                  present|reboot|jam|fault`

// Env is what the command reads and writes besides its arguments.
type Env struct {
	Stdout, Stderr io.Writer
	// Getenv reads the environment (MQTT_URL, KLUIS_SIM_ADDR); nil: empty.
	Getenv func(string) string
}

func (e Env) getenv(k, def string) string {
	if e.Getenv != nil {
		if v := e.Getenv(k); v != "" {
			return v
		}
	}
	return def
}

// Main runs kluis-sim with args (without the program's name) until ctx
// ends, and returns the exit code: 0 when done (a simulator stopped by ctx
// included), 2 without a subcommand, 1 on any other error, printed to
// env.Stderr.
func Main(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 {
		fmt.Fprintln(env.Stderr, Usage)
		return 2
	}
	err := Run(ctx, args, env)
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(env.Stderr, "kluis-sim:", err)
		return 1
	}
	return 0
}

// Run runs one subcommand: args[0] is its name.
func Run(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		return errors.New(Usage)
	}
	switch args[0] {
	case "serial":
		return runSerial(ctx, args[1:], env)
	case "tasmota":
		return runTasmota(ctx, args[1:], env)
	case "fleet":
		return runFleet(ctx, args[1:], env)
	case "ctl":
		return Ctl(ctx, args[1:], env)
	case "-h", "--help", "help":
		fmt.Fprintln(env.Stdout, Usage)
		return nil
	}
	return fmt.Errorf("unknown subcommand %q\n%s", args[0], Usage)
}

func logger(w io.Writer, verbose bool) *slog.Logger {
	lvl := slog.LevelInfo
	if verbose {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

func flagSet(name string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	return fs
}

// devFlags are the flags of the single-device subcommands.
type devFlags struct {
	id, kind, http             string
	boards, channels, slots    int
	seed                       uint64
	moveTime, cooldown, auto   time.Duration
	drop, corrupt, delay, busy float64
	reboot                     float64
	verbose                    bool
}

func (d *devFlags) register(fs *flag.FlagSet, channelsName string) {
	fs.StringVar(&d.id, "id", "sim", "device id (in the control API)")
	fs.StringVar(&d.kind, "kind", "locker", "locker or automaton")
	fs.StringVar(&d.http, "http", "", "control API loopback address, e.g. 127.0.0.1:7070 (empty: none)")
	fs.IntVar(&d.boards, "boards", 1, "boards")
	fs.IntVar(&d.channels, channelsName, 16, "channels per board")
	fs.IntVar(&d.slots, "slots", 20, "carousel slots per automaton board")
	fs.Uint64Var(&d.seed, "seed", 1, "seed of every random fault")
	fs.DurationVar(&d.moveTime, "move-time", 3*time.Second, "carousel move time")
	fs.DurationVar(&d.cooldown, "cooldown", 0, "duty-cycle rest of a lock after a pulse")
	fs.DurationVar(&d.auto, "auto-close", 0, "a person closes an opened door after this (0: never)")
	fs.Float64Var(&d.drop, "drop", 0, "probability a serial byte is dropped")
	fs.Float64Var(&d.corrupt, "corrupt", 0, "probability a serial byte is corrupted")
	fs.Float64Var(&d.delay, "delay", 0, "probability a serial byte is delayed")
	fs.Float64Var(&d.busy, "busy", 0, "probability a pulse is refused as busy")
	fs.Float64Var(&d.reboot, "reboot", 0, "probability a board reboots on a frame")
	fs.BoolVar(&d.verbose, "v", false, "debug logging")
}

func (d *devFlags) device(hw string) simulator.DeviceConfig {
	seed := d.seed
	return simulator.DeviceConfig{ID: d.id, Kind: simulator.Kind(d.kind), Hardware: hw, Boards: d.boards,
		Channels: d.channels, Slots: d.slots, Seed: &seed, MoveTime: d.moveTime, Cooldown: d.cooldown, AutoClose: d.auto,
		Faults: simulator.Faults{Line: simulator.LineFaults{Drop: d.drop, Corrupt: d.corrupt, Delay: d.delay}, BusyProb: d.busy, RebootProb: d.reboot}}
}

func runSerial(ctx context.Context, args []string, env Env) error {
	fs := flagSet("serial", env)
	var d devFlags
	d.register(fs, "channels")
	protocol := fs.String("protocol", "kluis", "kluis or kerong-cu16")
	link := fs.String("link", "/tmp/kluis-tty", "symlink to the pty slave")
	openBit := fs.Int("kerong-open-bit", 1, "Kerong lock-bit value that means door open (1 or 0)")
	pulse := fs.Duration("kerong-pulse", 500*time.Millisecond, "Kerong board unlock time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *openBit != 0 && *openBit != 1 {
		return fmt.Errorf("--kerong-open-bit %d: want 1 or 0", *openBit)
	}
	dc := d.device(*protocol)
	dc.Link = *link
	dc.KerongOpenBitClear = *openBit == 0
	dc.KerongPulse = *pulse
	return Serve(ctx, simulator.Config{HTTP: d.http, Devices: []simulator.DeviceConfig{dc}}, env, d.verbose)
}

func runTasmota(ctx context.Context, args []string, env Env) error {
	fs := flagSet("tasmota", env)
	var d devFlags
	d.register(fs, "relays")
	broker := fs.String("broker", env.getenv("MQTT_URL", "tcp://127.0.0.1:1883"), "MQTT broker URL")
	topic := fs.String("topic", "locker", "module topic")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dc := d.device(simulator.ProtoTasmota)
	dc.Topic = *topic
	return Serve(ctx, simulator.Config{HTTP: d.http, Broker: *broker, Devices: []simulator.DeviceConfig{dc}}, env, d.verbose)
}

func runFleet(ctx context.Context, args []string, env Env) error {
	fs := flagSet("fleet", env)
	path := fs.String("config", "fleet.yaml", "fleet YAML file")
	httpAddr := fs.String("http", "", "override the control API address")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := simulator.LoadConfig(*path)
	if err != nil {
		return err
	}
	if *httpAddr != "" {
		cfg.HTTP = *httpAddr
	}
	return Serve(ctx, cfg, env, *verbose)
}

// Ready is the line a started simulator prints on stdout, as JSON: where
// its control API and its devices are reached.
type Ready struct {
	Control string               `json:"control,omitempty"`
	Devices []simulator.Endpoint `json:"devices"`
}

// Serve starts the fleet cfg, prints its Ready line on env.Stdout and runs
// until ctx ends (then it returns nil).
func Serve(ctx context.Context, cfg simulator.Config, env Env, verbose bool) error {
	f, err := simulator.StartFleet(ctx, cfg, simulator.FleetOptions{Logger: logger(env.Stderr, verbose)})
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := json.Marshal(Ready{Control: f.ControlAddr(), Devices: f.Endpoints()})
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(env.Stdout, string(b)); err != nil {
		return fmt.Errorf("ready line: %w", err)
	}
	<-ctx.Done()
	return nil
}

// CtlTimeout bounds one ctl call.
const CtlTimeout = 10 * time.Second

// Ctl runs `kluis-sim ctl` with args: one call of the control API at
// --addr (default $KLUIS_SIM_ADDR, else 127.0.0.1:7070), its answer
// written to env.Stdout as it came (also when it is an error).
func Ctl(ctx context.Context, args []string, env Env) error {
	fs := flagSet("ctl", env)
	addr := fs.String("addr", env.getenv("KLUIS_SIM_ADDR", "127.0.0.1:7070"), "control API address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	method, path, body, err := ctlRequest(fs.Args())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, CtlTimeout)
	defer cancel()
	c := simclient.New(*addr, simclient.Options{})
	out, err := c.Raw(ctx, method, path, body)
	_, _ = env.Stdout.Write(out)
	return err
}

// ctlRequest turns a ctl command into a control API request.
func ctlRequest(a []string) (method, path string, body []byte, err error) {
	if len(a) == 0 {
		return "", "", nil, errors.New(CtlUsage)
	}
	need := func(n int) error {
		if len(a) < n {
			return fmt.Errorf("%s needs %d arguments\n%s", a[0], n-1, CtlUsage)
		}
		return nil
	}
	dp := simclient.DevicePath
	switch a[0] {
	case "devices":
		return http.MethodGet, "/v1/devices", nil, nil
	case "state", "pulses", "presents", "faults", "line":
		if err := need(2); err != nil {
			return "", "", nil, err
		}
		return http.MethodGet, dp(a[1], a[0]), nil, nil
	case "queue":
		if err := need(3); err != nil {
			return "", "", nil, err
		}
		return http.MethodGet, dp(a[1], "boards", a[2], "queue"), nil, nil
	case "set-faults":
		if err := need(3); err != nil {
			return "", "", nil, err
		}
		return http.MethodPost, dp(a[1], "faults"), []byte(a[2]), nil
	case "channel", "board":
		if err := need(4); err != nil {
			return "", "", nil, err
		}
		q, err := query(a[4:])
		if err != nil {
			return "", "", nil, err
		}
		kind := "channels"
		if a[0] == "board" {
			kind = "boards"
		}
		return http.MethodPost, dp(a[1], kind, a[2], a[3]) + q, nil, nil
	}
	return "", "", nil, fmt.Errorf("unknown ctl command %q\n%s", a[0], CtlUsage)
}

// query turns key=value arguments into a query string ("" when none).
func query(kv []string) (string, error) {
	v := url.Values{}
	for _, s := range kv {
		k, val, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return "", fmt.Errorf("argument %q: want key=value", s)
		}
		v.Set(k, val)
	}
	if len(v) == 0 {
		return "", nil
	}
	return "?" + v.Encode(), nil
}
