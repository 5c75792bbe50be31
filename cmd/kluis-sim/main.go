// Command kluis-sim stands in for the physical world: simulated lock boards
// on pseudo-terminals (Kluis protocol, Kerong CU16), Tasmota relay modules on
// an MQTT broker, whole fleets from a YAML file, and a control API to script
// people and faults. See simulator/README.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"kluis/simulator"
)

const usage = `usage:
  kluis-sim serial  --protocol kluis|kerong-cu16 --link PATH [--boards N] [--channels N] [flags]
  kluis-sim tasmota --broker URL --topic T [--relays N] [flags]
  kluis-sim fleet   --config fleet.yaml
  kluis-sim ctl     [--addr HOST:PORT] devices|state|pulses|presents|queue|line|faults|set-faults|channel|board ...
Run a subcommand with -h for its flags.`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "serial":
		err = runSerial(ctx, os.Args[2:])
	case "tasmota":
		err = runTasmota(ctx, os.Args[2:])
	case "fleet":
		err = runFleet(ctx, os.Args[2:])
	case "ctl":
		err = runCtl(ctx, os.Args[2:], os.Stdout)
	case "-h", "--help", "help":
		fmt.Println(usage)
		return
	default:
		err = fmt.Errorf("unknown subcommand %q\n%s", os.Args[1], usage)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "kluis-sim:", err)
		os.Exit(1)
	}
}

func logger(verbose bool) *slog.Logger {
	lvl := slog.LevelInfo
	if verbose {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// common flags of the single-device subcommands.
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

func runSerial(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serial", flag.ContinueOnError)
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
	return serve(ctx, simulator.Config{HTTP: d.http, Devices: []simulator.DeviceConfig{dc}}, d.verbose)
}

func runTasmota(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("tasmota", flag.ContinueOnError)
	var d devFlags
	d.register(fs, "relays")
	broker := fs.String("broker", envOr("MQTT_URL", "tcp://127.0.0.1:1883"), "MQTT broker URL")
	topic := fs.String("topic", "locker", "module topic")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dc := d.device(simulator.ProtoTasmota)
	dc.Topic = *topic
	return serve(ctx, simulator.Config{HTTP: d.http, Broker: *broker, Devices: []simulator.DeviceConfig{dc}}, d.verbose)
}

func runFleet(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
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
	return serve(ctx, cfg, *verbose)
}

// serve starts the fleet, prints one JSON line {"control":..., "devices":[...]}
// on stdout when ready, and runs until ctx ends.
func serve(ctx context.Context, cfg simulator.Config, verbose bool) error {
	f, err := simulator.StartFleet(ctx, cfg, simulator.FleetOptions{Logger: logger(verbose)})
	if err != nil {
		return err
	}
	defer f.Close()
	ready := struct {
		Control string               `json:"control,omitempty"`
		Devices []simulator.Endpoint `json:"devices"`
	}{f.ControlAddr(), f.Endpoints()}
	b, _ := json.Marshal(ready)
	fmt.Println(string(b))
	<-ctx.Done()
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

const ctlUsage = `kluis-sim ctl [--addr HOST:PORT] COMMAND
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

func runCtl(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	addr := fs.String("addr", envOr("KLUIS_SIM_ADDR", "127.0.0.1:7070"), "control API address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	a := fs.Args()
	if len(a) == 0 {
		return errors.New(ctlUsage)
	}
	base := "http://" + *addr + "/v1/devices"
	esc := url.PathEscape
	method, path, body := http.MethodGet, "", ""
	need := func(n int) error {
		if len(a) < n {
			return fmt.Errorf("%s needs %d arguments\n%s", a[0], n-1, ctlUsage)
		}
		return nil
	}
	query := func(kv []string) (string, error) {
		v := url.Values{}
		for _, s := range kv {
			k, val, ok := strings.Cut(s, "=")
			if !ok {
				return "", fmt.Errorf("argument %q: want key=value", s)
			}
			v.Set(k, val)
		}
		if len(v) == 0 {
			return "", nil
		}
		return "?" + v.Encode(), nil
	}
	var err error
	switch a[0] {
	case "devices":
	case "state", "pulses", "presents", "faults", "line":
		if err = need(2); err == nil {
			path = "/" + esc(a[1]) + "/" + a[0]
		}
	case "queue":
		if err = need(3); err == nil {
			path = "/" + esc(a[1]) + "/boards/" + esc(a[2]) + "/queue"
		}
	case "set-faults":
		if err = need(3); err == nil {
			method, path, body = http.MethodPost, "/"+esc(a[1])+"/faults", a[2]
		}
	case "channel":
		if err = need(4); err == nil {
			var q string
			if q, err = query(a[4:]); err == nil {
				method, path = http.MethodPost, "/"+esc(a[1])+"/channels/"+esc(a[2])+"/"+esc(a[3])+q
			}
		}
	case "board":
		if err = need(4); err == nil {
			var q string
			if q, err = query(a[4:]); err == nil {
				method, path = http.MethodPost, "/"+esc(a[1])+"/boards/"+esc(a[2])+"/"+esc(a[3])+q
			}
		}
	default:
		err = fmt.Errorf("unknown ctl command %q\n%s", a[0], ctlUsage)
	}
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, base+path, bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	_, _ = out.Write(b)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return nil
}
