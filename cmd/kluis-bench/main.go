// Command kluis-bench measures Kluis against its floors on this machine and
// writes each run to bench/results/ (see docs/performance.md).
//
//	kluis-bench [-results DIR] [-db URL] [-mqtt URL] <subcommand> [flags]
//	kluis-bench all        # every subcommand at its default size (make bench)
//
// Each subcommand lives in a package under bench/ and starts the parts it
// measures itself; add one with a case in run and, when it belongs in
// `make bench`, its name in defaults.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"kluis/bench"
	"kluis/bench/fleet"
	benchjournal "kluis/bench/journal"
	"kluis/bench/tap"
	"kluis/bench/verify"
)

// defaults are the subcommands `kluis-bench all` runs, in order.
func defaults() []string {
	return []string{"verify", "journal", "tap", "start", "fleet"}
}

var errUnknown = errors.New("unknown subcommand")

// run dispatches one subcommand.
func run(ctx context.Context, name string, env bench.Env, args []string) (bench.Report, error) {
	switch name {
	case "verify":
		return verify.Run(ctx, env, args)
	case "fleet":
		return fleet.Run(ctx, env, args)
	case "journal":
		return benchjournal.Run(ctx, env, args)
	case "tap":
		return tap.Run(ctx, env, args)
	case "start":
		return tap.RunStart(ctx, env, args)
	}
	return bench.Report{}, fmt.Errorf("%w %q", errUnknown, name)
}

func main() {
	fs := flag.NewFlagSet("kluis-bench", flag.ExitOnError)
	results := fs.String("results", "bench/results", "directory for the results (one JSON and one Markdown file per run)")
	db := fs.String("db", bench.DefaultAdminURL(), "PostgreSQL server where throw-away databases are created")
	mqtt := fs.String("mqtt", bench.DefaultMQTTURL(), "external MQTT broker (Mosquitto)")
	verbose := fs.Bool("v", false, "debug logs")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (the in-process backend included) to this file")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: kluis-bench [flags] <subcommand> [subcommand flags]\n"+
			"subcommands: all (runs %s), or one of them; <subcommand> -h for its flags\n", strings.Join(defaults(), ", "))
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() == 0 {
		fs.Usage()
		os.Exit(2)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	env := bench.Env{AdminURL: *db, MQTTURL: *mqtt, Out: os.Stderr,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "kluis-bench: cpu profile: %v\n", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	names, args := []string{fs.Arg(0)}, fs.Args()[1:]
	if fs.Arg(0) == "all" {
		names, args = defaults(), nil
	}
	failed := false
	for _, name := range names {
		start := time.Now()
		rep, err := run(ctx, name, env, args)
		if errors.Is(err, errUnknown) {
			fmt.Fprintf(os.Stderr, "kluis-bench: %v\n", err)
			fs.Usage()
			os.Exit(2)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "kluis-bench %s: %v\n", name, err)
			failed = true
			continue
		}
		if rep.Name == "" {
			rep.Name = name
		}
		if rep.Started.IsZero() {
			rep.Started = start
		}
		if rep.Elapsed == 0 {
			rep.Elapsed = time.Since(start)
		}
		if rep.Machine == "" {
			rep.Machine = bench.MachineString()
		}
		fmt.Println(rep.Markdown())
		paths, err := bench.Write(*results, rep)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kluis-bench %s: %v\n", name, err)
			failed = true
			continue
		}
		fmt.Fprintf(os.Stderr, "kluis-bench %s: wrote %s\n", name, strings.Join(paths, ", "))
	}
	if failed {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}
