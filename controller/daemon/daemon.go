// Package daemon wires kluisd together: configuration, driver, journal,
// offline cache, engine, MQTT link, kiosk API, barcode scanner, metrics and
// health, and shuts them down in order. cmd/kluisd is a thin main around
// Run.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"kluis/controller/config"
	"kluis/controller/engine"
	"kluis/controller/idlemem"
	"kluis/controller/journal"
	"kluis/controller/kiosk"
	"kluis/controller/kiosk/screen"
	"kluis/controller/link"
	"kluis/controller/offline"
	"kluis/controller/promtext"
	"kluis/controller/wire"
	"kluis/hardware"
	"kluis/hardware/serialport"
	"kluis/internal/connlimit"
)

// OpenDriverFunc opens the configured hardware driver.
type OpenDriverFunc func(ctx context.Context, cfg *config.Config, log *slog.Logger, reg promtext.Registerer) (hardware.Driver, error)

// Options configure Run.
type Options struct {
	Config *config.Config
	// OpenDriver; default OpenDriver (the production drivers).
	OpenDriver OpenDriverFunc
	Logger     *slog.Logger
	// Software names the version in presence and heartbeats.
	Software string
	// HeartbeatEvery; default 30s.
	HeartbeatEvery time.Duration
	// CompactAbove compacts the journal when it grows beyond this many
	// bytes (and to twice its size after the last compaction); default
	// 256 KiB. Start-up reads and applies every record, and the journal
	// keeps them in memory until the next compaction: at 4 MiB (the
	// default before) that was 17,000 records, 100-200 ms of kluisd's
	// start and 21 MB of its heap (kluis-bench start -journal-kib 4096).
	CompactAbove int64
	// NotifySocket is systemd's $NOTIFY_SOCKET (Type=notify): READY=1,
	// WATCHDOG=1 every Watchdog/2, STOPPING=1. Empty disables.
	NotifySocket string
	// Watchdog is systemd's WatchdogSec ($WATCHDOG_USEC); 0 disables.
	Watchdog time.Duration
	// IdleMemory is how long the kiosk's screen must stay unchanged
	// before the heap's free memory is returned to the OS (idlemem: once
	// after the start, then once per quiet period after activity);
	// default idlemem.DefaultQuiet (30s).
	IdleMemory time.Duration
	// GCPercent, when positive, is set as the collector's percentage
	// (debug.SetGCPercent: process-wide) once the engine is ready: 50
	// makes the heap's goal 1.5 times its live part, at least 2 MB
	// instead of Go's 4 MB, so kluisd's heap grows less between
	// collections while it serves taps (docs/performance.md, "kluisd's
	// start and memory"). The start keeps GOGC's (an earlier collection
	// there costs time and memory at READY=1). 0 leaves GOGC's.
	GCPercent int
	// Registry receives every metric /metrics serves (Go and process
	// collectors, driver, journal, engine, link); default a new one. Tests
	// pass their own to see what kluisd exports.
	Registry *promtext.Registry
}

// What one connection to kluisd's loopback listeners (kiosk, metrics) may
// hold: headers of at most listenerMaxHeader bytes (the screen's and a
// scraper's are a few hundred; Go's default of 1 MB let a local process
// take 622 MB with 300 connections), and an idle connection at most
// listenerIdle (without it, the metrics listener kept every idle
// connection open for good: 3,000 took 56 MB).
const (
	listenerMaxHeader = 16 << 10
	listenerIdle      = 10 * time.Second
)

// Run runs kluisd until ctx ends (SIGTERM), then shuts down: servers stop,
// every lock is halted, presence goes "offline", the journal is closed.
func Run(ctx context.Context, o Options) error {
	cfg := o.Config
	if cfg == nil {
		return errors.New("daemon: no configuration")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.OpenDriver == nil {
		o.OpenDriver = OpenDriver
	}
	if o.CompactAbove == 0 {
		o.CompactAbove = 256 << 10
	}
	log := o.Logger.With("device", cfg.DeviceID)
	reg := o.Registry
	if reg == nil {
		reg = promtext.NewRegistry()
	}
	reg.MustRegister(promtext.NewGoCollector(), promtext.NewProcessCollector())
	// The kiosk screen's templates, catalogue and drawings need only the
	// configuration: they are prepared while the driver halts and the
	// journal opens (both wait on the line or the disk) instead of after
	// them, on the way to READY=1 (docs/performance.md, "The start's
	// floor").
	type prepared struct {
		a   *screen.Assets
		err error
	}
	screenAssets := make(chan prepared, 1)
	go func() {
		a, err := screen.Prepare(cfg, nil)
		screenAssets <- prepared{a, err}
	}()

	// Every lock inert: a fresh driver is halted (de-energising anything a
	// crashed predecessor left energised) and closed, then opened for use.
	first, err := o.OpenDriver(ctx, cfg, log, promtext.NewRegistry())
	if err != nil {
		return fmt.Errorf("daemon: open driver: %w", err)
	}
	var haltedAt time.Time
	if err := first.Halt(); err != nil {
		log.Warn("start-up halt failed", "err", err)
	} else {
		haltedAt = time.Now()
	}
	_ = first.Close()
	drv, err := o.OpenDriver(ctx, cfg, log, reg)
	if err != nil {
		return fmt.Errorf("daemon: open driver: %w", err)
	}
	defer drv.Close()

	var eng *engine.Engine
	j, recs, rec, err := journal.Open(journal.Options{Dir: cfg.JournalDir, DeviceID: cfg.DeviceID, Logger: log,
		Keep: func(r journal.Record) bool { return eng != nil && eng.Keep(r) }, Urgent: link.Urgent})
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	defer j.Close()
	damaged := promtext.NewGauge(promtext.GaugeOpts{Namespace: "kluisd", Name: "journal_damaged",
		Help: "1 when start-up found a damaged journal record before the end (moved aside for forensics)."})
	reg.MustRegister(damaged)
	// Damage found now, or found at an earlier start whose response (the
	// engine withdrawing the offline codes) was cut short: the engine
	// responds and settles it.
	damagedDetail := rec.Damage()
	if rec.Unsettled {
		damaged.Set(1)
		log.Error("journal damaged: records after the damage were moved aside", "file", rec.BadFile, "found_now", rec.Corrupt)
	}
	if rec.TornBytes > 0 {
		log.Warn("torn last journal record dropped (power cut)", "bytes", rec.TornBytes)
	}

	pub, err := cfg.OfflinePublicKey()
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	cache, err := offline.Open(cfg.JournalDir, cfg.DeviceID, pub)
	var cacheDetail, cacheUntrusted string
	switch {
	case errors.Is(err, offline.ErrUntrusted):
		// Not the backend's signed code syncs (tampered, or the
		// unsigned file of kluisd before 2026-12-07): moved aside,
		// every code refused until the next full sync, which clears
		// the alarm offline_cache_untrusted.
		log.Error("offline cache not authenticated: every offline code refused until the backend's next full sync", "err", err)
		cacheUntrusted = "offline cache not authenticated, refused until the backend's next full sync: " + err.Error()
	case err != nil:
		// Damaged (moved aside, starting empty) or unreadable (no
		// offline verification): the device's state directory is in
		// trouble, reported as the journal's damage is (without the
		// journal's withdrawal of every code).
		log.Error("offline cache damaged or unreadable", "err", err)
		cacheDetail = "offline cache damaged or unreadable: " + err.Error()
	}
	password, err := cfg.MQTTPassword()
	if err != nil {
		return err
	}
	mqttTLS, err := cfg.MQTTTLS()
	if err != nil {
		return err
	}
	// Commands journaled without a result (kluisd stopped while carrying
	// one out): their uncertain results are held for the link to send.
	if ids, err := engine.HoldInterrupted(j, recs, time.Now()); err != nil {
		log.Error("reporting interrupted commands failed", "err", err)
	} else if len(ids) > 0 {
		log.Warn("commands interrupted by the last stop reported uncertain", "commands", ids)
	}
	var lk *link.Link
	lk, err = link.New(link.Options{URL: cfg.MQTT.URL, ClientID: cfg.MQTT.ClientID, Username: cfg.MQTT.Username,
		Password: password, TLS: mqttTLS, DeviceID: cfg.DeviceID, Software: o.Software, Journal: j, Logger: log, Registry: reg,
		HeartbeatEvery: cmp.Or(o.HeartbeatEvery, cfg.MQTT.HeartbeatEvery), ResendAfter: cfg.MQTT.ResendAfter,
		KeepAlive: cfg.MQTT.KeepAlive, EventPace: link.Pace(cfg.MQTT.Pace), AlarmPace: link.Pace(cfg.MQTT.AlarmPace),
		Command:  func(ctx context.Context, c wire.Command) wire.CommandResult { return eng.HandleCommand(ctx, c) },
		Reported: func(id string) { eng.CommandReported(id) },
		// Only answers the backend signed for this device and request are
		// acted on; without the key none is (every pickup is then checked
		// offline, staff cannot log in).
		ResponseKey: pub,
		Refused:     func(k wire.Kind, id, why string) { eng.RefuseResponse(k, id, why) },
		Heartbeat: func(ctx context.Context) wire.Heartbeat {
			d := eng.Diagnostics(ctx)
			return wire.Heartbeat{Boards: d.Boards, Doors: d.Doors, OfflineCache: d.OfflineCache, CacheVersion: d.CacheVersion}
		}})
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	eng, err = engine.New(engine.Options{Config: cfg, Driver: drv, Journal: j, Replay: recs, Backend: lk, Cache: cache,
		CommandKey: pub, StartupHalt: haltedAt, JournalDamaged: damagedDetail, CacheDamaged: cacheDetail,
		CacheUntrusted: cacheUntrusted, OutOfBand: lk.PublishNow, Logger: log, Registry: reg})
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	run := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	// The engine runs in its own context so that it stops (and halts the
	// locks) before the link says goodbye. It starts first: its start-up
	// (describing the boards over the serial line, reconciling the
	// journal) mostly waits for the line, while the kiosk's screen is
	// built meanwhile (templates, catalogue, drawings). Nothing is served
	// and READY=1 is not sent before both are done.
	engCtx, engCancel := context.WithCancel(ctx)
	engDone := make(chan struct{})
	run("engine", func() error {
		defer close(engDone)
		err := eng.Run(engCtx)
		if err != nil {
			cancel()
		}
		return err
	})
	// abort stops the engine (it halts the locks) after a start-up error.
	abort := func(err error) error {
		engCancel()
		<-engDone
		cancel()
		wg.Wait()
		return err
	}

	sa := <-screenAssets
	if sa.err != nil {
		return abort(fmt.Errorf("daemon: kiosk: %w", sa.err))
	}
	ks, err := kiosk.New(kiosk.Options{Engine: eng, Config: cfg, ScreenAssets: sa.a, Logger: log})
	if err != nil {
		return abort(fmt.Errorf("daemon: %w", err))
	}
	connsOpen := promtext.NewGaugeVec(promtext.GaugeOpts{Namespace: "kluisd", Name: "http_connections_open",
		Help: "Connections a loopback listener (kiosk, metrics) holds open."}, []string{"listener"})
	connsRefused := promtext.NewCounterVec(promtext.CounterOpts{Namespace: "kluisd", Name: "http_connections_refused_total",
		Help: "Connections a loopback listener refused (503) because it held its maximum (kiosk.max_connections, metrics_max_connections)."}, []string{"listener"})
	reg.MustRegister(connsOpen, connsRefused)
	capped := func(ln net.Listener, name string, max int) net.Listener {
		open, refused := connsOpen.WithLabelValues(name), connsRefused.WithLabelValues(name)
		return connlimit.New(ln, connlimit.Options{Max: max, Name: name, Logger: log, OnRefuse: refused.Inc,
			OnOpen: func(n int64) { open.Set(float64(n)) }})
	}
	kioskTCP, err := net.Listen("tcp", cfg.Kiosk.Listen)
	if err != nil {
		return abort(fmt.Errorf("daemon: kiosk.listen: %w", err))
	}
	kioskLn := capped(kioskTCP, "kiosk", cfg.Kiosk.MaxConnections)
	var metricsLn net.Listener
	if cfg.MetricsListen != "off" {
		metricsTCP, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			kioskLn.Close()
			return abort(fmt.Errorf("daemon: metrics_listen: %w", err))
		}
		metricsLn = capped(metricsTCP, "metrics", cfg.MetricsMaxConnections)
	}

	linkCtx, linkCancel := context.WithCancel(context.Background())
	run("link", func() error { return lk.Run(linkCtx) })

	// The screen's event streams extend their own write deadlines and end
	// when the server shuts down (the browser reconnects to the next one).
	kioskSrv := &http.Server{Handler: ks.Handler(), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: listenerIdle, MaxHeaderBytes: listenerMaxHeader}
	kioskSrv.RegisterOnShutdown(ks.CloseStreams)
	run("kiosk", func() error { return kioskSrv.Serve(kioskLn) })
	run("kiosk-idle", func() error { return ks.Run(ctx) })
	var metricsSrv *http.Server
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", reg)
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			status := http.StatusOK
			if !eng.Ready() {
				status = http.StatusServiceUnavailable
			}
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"ready":%t,"mqtt_connected":%t,"backlog":%d,"operations":%d}`+"\n", eng.Ready(), lk.Connected(), j.OutboxLen(), eng.Operations())
		})
		metricsSrv = &http.Server{Handler: nosniff(kiosk.LoopbackHostOnly(mux)), ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
			IdleTimeout: listenerIdle, MaxHeaderBytes: listenerMaxHeader}
		run("metrics", func() error { return metricsSrv.Serve(metricsLn) })
	}
	if cfg.Kiosk.Scanner.Port != "" {
		run("scanner", func() error { return scanLoop(ctx, cfg.Kiosk.Scanner, eng, log) })
	}
	run("compactor", func() error { compactLoop(ctx, j, o.CompactAbove, eng.ReadyC(), log); return nil })
	run("memory", func() error {
		select {
		case <-ctx.Done():
			return nil
		case <-eng.ReadyC():
		}
		if o.GCPercent > 0 {
			debug.SetGCPercent(o.GCPercent)
		}
		idlemem.Run(ctx, idlemem.Options{Changed: eng.Changed, Quiet: o.IdleMemory, Logger: log})
		return nil
	})
	sd := notifier{socket: o.NotifySocket}
	run("sd_notify", func() error {
		// Healthy: the engine's and the journal's locks can be taken (a
		// deadlock stops the pings and systemd restarts kluisd).
		sd.watchdog(ctx, o.Watchdog, eng.ReadyC(), func() bool { _ = j.OutboxLen(); return eng.Ready() })
		return nil
	})
	log.Info("kluisd started", "kiosk", kioskLn.Addr().String(), "kind", cfg.Kind, "compartments", len(cfg.Compartments))

	var firstErr error
	select {
	case <-ctx.Done():
	case firstErr = <-errs:
		log.Error("kluisd stopping after an error", "err", firstErr)
	}
	// Orderly shutdown: no new kiosk requests, engine stops and halts,
	// then the link publishes "offline" and disconnects.
	_ = sd.send("STOPPING=1")
	shutCtx, shutCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer shutCancel()
	_ = kioskSrv.Shutdown(shutCtx)
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(shutCtx)
	}
	engCancel()
	<-engDone
	linkCancel()
	cancel()
	wg.Wait()
	log.Info("kluisd stopped")
	return firstErr
}

// nosniff tells a browser, in every answer of h (refusals included), to
// take it for what its Content-Type says: a page on the kiosk's machine
// must not load /metrics or /healthz as a script or a style sheet.
func nosniff(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// scanLoop reads the serial barcode scanner, reopening it after errors.
func scanLoop(ctx context.Context, s config.Serial, eng *engine.Engine, log *slog.Logger) error {
	for ctx.Err() == nil {
		port, err := serialport.Open(s.Port, s.Baud, serialport.Options{Logger: log})
		if err == nil {
			err = kiosk.ReadScanner(ctx, port, eng.Pickup, log)
			port.Close()
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("barcode scanner unavailable, retrying", "port", s.Port, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	return nil
}

// compactLoop compacts the journal when it has grown (shouldCompact), or
// at all while its disk is full: once the engine is ready (a journal left
// large by a previous version is compacted at once, not a minute later),
// then every minute.
func compactLoop(ctx context.Context, j *journal.Journal, above int64, ready <-chan struct{}, log *slog.Logger) {
	select {
	case <-ctx.Done():
		return
	case <-ready:
	}
	var last int64
	check := func() {
		// On a full disk (the journal's reserve given up) whatever the
		// journal holds beyond its live records is room to win back.
		st, _ := j.Space()
		if !shouldCompact(j.Size(), above, last) && !(st.Low && j.Size() > last) {
			return
		}
		if err := j.Compact(); err != nil {
			log.Error("journal compaction failed", "err", err)
			return
		}
		last = j.Size()
	}
	check()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}

// shouldCompact reports whether a journal of size bytes, last bytes right
// after its last compaction, is compacted: above the threshold and twice
// last, so that a journal whose live records alone exceed the threshold
// (a long backend outage) is not rewritten every minute.
func shouldCompact(size, above, last int64) bool {
	return size > above && size > 2*last
}
