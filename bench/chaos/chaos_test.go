package chaos

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"kluis/backend/pgtest/pgpair"
	"kluis/deploy/dev/procrun"
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
	if err := procrun.Build(ctx, dir, false); err != nil {
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

// faultsHere is every fault kind this machine can strike: the full disk
// needs a small tmpfs of its own per journal (mount, as root).
func faultsHere() []Fault {
	var out []Fault
	for _, f := range AllFaults() {
		if f.Kind() != "disk_full" || os.Geteuid() == 0 {
			out = append(out, f)
		}
	}
	return out
}

// withFailover adds db_failover to faults when the world can run on a
// PostgreSQL pair (the server binaries are there); it reports whether it
// did.
func withFailover(t *testing.T, faults []Fault) ([]Fault, bool) {
	if err := pgpair.Available(); err != nil {
		t.Logf("%v: the db_failover fault is left out", err)
		return faults, false
	}
	return append(append([]Fault(nil), faults...), DBFailover{}), true
}

// envBroker is CHAOS_BROKER, default the production shape (Mosquitto
// with TLS).
func envBroker(t *testing.T) string {
	b := os.Getenv("CHAOS_BROKER")
	if b == "" {
		return BrokerMosquittoTLS
	}
	for _, m := range BrokerModes() {
		if b == m {
			return b
		}
	}
	t.Fatalf("CHAOS_BROKER=%q: want one of %v", b, BrokerModes())
	return ""
}

func runGauntlet(t *testing.T, cfg Config) *Report {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	if os.Geteuid() != 0 {
		t.Logf("not root: no journal tmpfs, the disk_full fault is left out")
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
		failover := 0
		if cfg.World.Failover {
			failover = 1
		}
		t.Fatalf("%d violations; replay with CHAOS_SEED=%d CHAOS_BROKER=%s CHAOS_FAILOVER=%d", len(rep.Violations), rep.Seed, rep.Broker, failover)
	}
	// Every kind the run planned struck.
	for _, night := range FaultPlan(cfg) {
		for _, k := range night {
			if rep.Stats.Faults[k] == 0 {
				t.Errorf("fault %s never struck", k)
			}
		}
	}
	return rep
}

// shortRun is TestGauntletShort's configuration: seed 20261206 (or
// CHAOS_SEED), two nights on one device of each driver, every fault kind
// at least once, on Mosquitto with the shipped configuration, ACL and TLS.
func shortRun() Config {
	return Config{Seed: envSeed(20261206), Nights: 2, Faults: faultsHere(), DocsPerDevice: 1,
		World: Options{Devices: DefaultFleet(1), Broker: BrokerMosquittoTLS}}
}

// TestGauntletShort is the short seeded run inside `make test`: a few
// compressed nights on one device of each driver, every fault kind at
// least once, on the production shape of the broker (Mosquitto, TLS).
//
// It, TestGauntletEmbedded and TestGauntletFailover run in parallel: each
// has a world of its own (database, broker, ports, processes, journals),
// and a night is mostly waits for doors, timers and restarts.
func TestGauntletShort(t *testing.T) {
	if testing.Short() {
		t.Skip("gauntlet: starts the backend, Mosquitto, the simulator and four kluisd")
	}
	if os.Getenv("CHAOS_NIGHTS") != "" {
		t.Skip("CHAOS_NIGHTS set: TestGauntlet runs")
	}
	t.Parallel()
	runGauntlet(t, shortRun())
}

// TestGauntletEmbedded plays the same night on the embedded broker: the
// first night of TestGauntletShort (same seed, fleet, documents, people
// and faults, broker_kill and net_cut among them), on one kluis-backend
// whose own broker speaks TLS, the devices provisioned through the admin
// API. broker_kill kills that backend, broker and all.
func TestGauntletEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("gauntlet: starts the backend, the simulator and four kluisd")
	}
	if os.Getenv("CHAOS_NIGHTS") != "" {
		t.Skip("CHAOS_NIGHTS set: TestGauntlet runs")
	}
	t.Parallel()
	short := shortRun()
	cfg := short
	cfg.Nights = 1
	cfg.FaultsPerNight = len(FaultPlan(short)[0])
	cfg.World.Broker = BrokerEmbedded
	want, got := FaultPlan(short)[0], FaultPlan(cfg)[0]
	if !slices.Equal(got, want) {
		t.Fatalf("night 1 on the embedded broker plans faults %v, the short run %v", got, want)
	}
	for _, k := range []string{"broker_kill", "net_cut", "backend_kill"} {
		if !slices.Contains(got, k) {
			t.Fatalf("seed %d: night 1 has no %s (faults %v): pick a seed whose first night has", cfg.Seed, k, got)
		}
	}
	runGauntlet(t, cfg)
}

// TestGauntletFailover is the short seeded run of db_failover: one night
// on one device of each driver and two backend replicas, on a private
// PostgreSQL primary and synchronous standby; the primary's machine is
// lost twice during pickups (the second time after a new standby was made
// from the promoted one). TestGauntletShort keeps its own seeded plan of
// the other kinds.
func TestGauntletFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("gauntlet: starts two PostgreSQL clusters, two backends, Mosquitto, the simulator and four kluisd")
	}
	if os.Getenv("CHAOS_NIGHTS") != "" {
		t.Skip("CHAOS_NIGHTS set: TestGauntlet runs")
	}
	faults, ok := withFailover(t, nil)
	if !ok {
		t.Skip("no PostgreSQL server binaries for a standby")
	}
	t.Parallel()
	runGauntlet(t, Config{Seed: envSeed(20261208), Nights: 1, Faults: faults, FaultsPerNight: 2, DocsPerDevice: 1,
		World: Options{Devices: DefaultFleet(1), Broker: BrokerMosquittoTLS, Backends: 2, Failover: true}})
}

// TestGauntlet is `make chaos`: CHAOS_NIGHTS nights (100 there) on two
// devices of each driver, seed CHAOS_SEED (default: the time), broker
// CHAOS_BROKER (default mosquitto-tls; embedded runs one backend); with
// CHAOS_FAILOVER=1 (make chaos's default) the database is a primary and
// a standby and db_failover is one of the faults.
func TestGauntlet(t *testing.T) {
	nights := envInt("CHAOS_NIGHTS", 0)
	if nights == 0 {
		t.Skip("set CHAOS_NIGHTS (make chaos)")
	}
	seed := envSeed(uint64(time.Now().UnixNano()))
	broker := envBroker(t)
	backends := envInt("CHAOS_BACKENDS", 2)
	if broker == BrokerEmbedded {
		backends = envInt("CHAOS_BACKENDS", 1)
	}
	faults, failover := faultsHere(), false
	if os.Getenv("CHAOS_FAILOVER") == "1" {
		faults, failover = withFailover(t, faults)
	}
	runGauntlet(t, Config{Seed: seed, Nights: nights, Faults: faults, FaultsPerNight: 3,
		World: Options{Devices: DefaultFleet(envInt("CHAOS_PER_DRIVER", 2)), Backends: backends, Broker: broker, Failover: failover}})
}
