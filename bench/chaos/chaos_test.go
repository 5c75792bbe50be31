package chaos

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// binDir holds the binaries TestMain built.
var binDir string

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kluis-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The processes run without the race detector even under -race: the
	// short run must stay short on a loaded machine (the packages' own
	// tests run them with it).
	if err := Build(ctx, dir, false); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binDir = dir
	return m.Run()
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envSeed(def uint64) uint64 {
	if v, err := strconv.ParseUint(os.Getenv("CHAOS_SEED"), 10, 64); err == nil && v > 0 {
		return v
	}
	return def
}

// logWriter sends progress lines to t.Log, or to stderr with -v
// CHAOS_VERBOSE=1.
type logWriter struct{ t testing.TB }

func (l logWriter) Write(p []byte) (int, error) {
	if os.Getenv("CHAOS_VERBOSE") != "" {
		os.Stderr.Write(p)
	} else {
		l.t.Log(string(p[:len(p)-1]))
	}
	return len(p), nil
}

func runGauntlet(t *testing.T, cfg Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	if os.Geteuid() != 0 {
		// The full disk needs a small tmpfs of its own per journal (mount).
		var keep []Fault
		for _, f := range cfg.Faults {
			if f.Kind() != "disk_full" {
				keep = append(keep, f)
			}
		}
		t.Logf("not root: no journal tmpfs, the disk_full fault is left out")
		cfg.Faults = keep
	}
	cfg.World.BinDir = binDir
	cfg.Log = logWriter{t}
	rep, err := Run(ctx, t, cfg)
	if rep != nil {
		t.Logf("\n%s", rep)
		if os.Getenv("CHAOS_REPORT") != "" {
			_ = os.WriteFile(os.Getenv("CHAOS_REPORT"), []byte(rep.String()), 0o644)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Violations) > 0 {
		t.Fatalf("%d violations; replay with CHAOS_SEED=%d", len(rep.Violations), rep.Seed)
	}
	perNight := cfg.FaultsPerNight
	if perNight == 0 {
		perNight = (len(cfg.Faults) + cfg.Nights - 1) / cfg.Nights
	}
	if cfg.Nights*perNight < len(cfg.Faults) {
		return // too few nights for every kind
	}
	for _, f := range cfg.Faults {
		if rep.Stats.Faults[f.Kind()] == 0 {
			t.Errorf("fault %s never struck", f.Kind())
		}
	}
}

// TestGauntletShort is the short seeded run inside `make test`: a few
// compressed nights on one device of each driver, every fault kind at
// least once.
func TestGauntletShort(t *testing.T) {
	if testing.Short() {
		t.Skip("gauntlet: starts the backend, Mosquitto, the simulator and four kluisd")
	}
	if os.Getenv("CHAOS_NIGHTS") != "" {
		t.Skip("CHAOS_NIGHTS set: TestGauntlet runs")
	}
	nights := 2
	runGauntlet(t, Config{Seed: envSeed(20261206), Nights: nights, Faults: AllFaults(), DocsPerDevice: 1,
		World: Options{Devices: DefaultFleet(1)}})
}

// TestGauntlet is `make chaos`: CHAOS_NIGHTS nights (100 there) on two
// devices of each driver, seed CHAOS_SEED (default: the time).
func TestGauntlet(t *testing.T) {
	nights := envInt("CHAOS_NIGHTS", 0)
	if nights == 0 {
		t.Skip("set CHAOS_NIGHTS (make chaos)")
	}
	seed := envSeed(uint64(time.Now().UnixNano()))
	runGauntlet(t, Config{Seed: seed, Nights: nights, Faults: AllFaults(), FaultsPerNight: 3,
		World: Options{Devices: DefaultFleet(envInt("CHAOS_PER_DRIVER", 2)), Backends: envInt("CHAOS_BACKENDS", 2)}})
}
