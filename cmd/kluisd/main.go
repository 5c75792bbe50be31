// Command kluisd is the edge daemon of a Kluis locker or automaton: it
// drives the door locks, verifies pickup codes with the backend over MQTT
// (or offline), serves the local kiosk API and reports every event durably.
//
//	kluisd --config /etc/kluis/kluisd.yaml
//	kluisd --config /etc/kluis/kluisd.yaml --check   # validate and exit
//	kluisd --version                                  # print the version and exit
//
// See docs/kluisd.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"kluis/controller/config"
	"kluis/controller/daemon"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	configPath := flag.String("config", "/etc/kluis/kluisd.yaml", "configuration file")
	check := flag.Bool("check", false, "validate the configuration and exit")
	debug := flag.Bool("debug", false, "log at debug level")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("kluisd " + version)
		return
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("app", "kluisd")
	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kluisd:", err)
		os.Exit(2)
	}
	if *check {
		// The files the configuration names are read as the start reads them.
		if err := cfg.CheckFiles(); err != nil {
			fmt.Fprintf(os.Stderr, "kluisd: %s: %v\n", *configPath, err)
			os.Exit(2)
		}
		fmt.Printf("kluisd: %s is valid (device %s, %d compartments)\n", *configPath, cfg.DeviceID, len(cfg.Compartments))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// systemd Type=notify with WatchdogSec: READY=1 and WATCHDOG=1 pings.
	var watchdog time.Duration
	if us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); err == nil && us > 0 {
		watchdog = time.Duration(us) * time.Microsecond
	}
	// From READY=1 on the heap's goal is 1.5 times its live part (at
	// least 2 MB rather than 4), unless the unit sets GOGC itself.
	gcPercent := 50
	if os.Getenv("GOGC") != "" {
		gcPercent = 0
	}
	if err := daemon.Run(ctx, daemon.Options{Config: cfg, Logger: log, Software: "kluisd " + version,
		NotifySocket: os.Getenv("NOTIFY_SOCKET"), Watchdog: watchdog, GCPercent: gcPercent}); err != nil {
		log.Error("kluisd failed", "err", err)
		os.Exit(1)
	}
}
