package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// run is the demo: set-up, the scripted night, the summary, then (unless
// DEMO_ONCE=1) the running system until ctx ends. It returns the exit
// status: 0 only when every step went as expected.
func run(ctx context.Context, stdout, stderr io.Writer, getenv func(string) string) int {
	level := slog.LevelWarn
	if getenv("DEMO_VERBOSE") == "1" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("app", "kluis-demo")
	once := getenv("DEMO_ONCE") == "1"
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(stderr, "kluis-demo:", err)
		return 1
	}
	if _, err := os.Stat(filepath.Join(wd, "go.mod")); err != nil {
		fmt.Fprintln(stderr, "kluis-demo: run me from the repository root (make demo)")
		return 1
	}
	root := filepath.Join(wd, "var", "demo")
	d := &demo{log: log, getenv: getenv, root: root, run: filepath.Join(root, "run"), bin: filepath.Join(root, "bin"),
		nodes: map[string]*node{}, tl: newTimeline(stdout)}
	d.mailDir = filepath.Join(d.run, "mail")
	d.keyDir = filepath.Join(d.run, "keys")
	if err := os.RemoveAll(d.run); err != nil {
		fmt.Fprintln(stderr, "kluis-demo: clean var/demo/run:", err)
		return 1
	}
	for _, dir := range []string{d.run, d.bin, d.mailDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintln(stderr, "kluis-demo:", err)
			return 1
		}
	}
	d.p, err = newProcs(filepath.Join(d.run, "logs"), log)
	if err != nil {
		fmt.Fprintln(stderr, "kluis-demo:", err)
		return 1
	}
	defer d.shutdown(stdout)

	fmt.Fprintln(stdout, "Kluis demo: one night at Stadhuis Kortrijk (logs in var/demo/run/logs)")
	fmt.Fprintln(stdout)
	sctx, cancel, ok := d.setup(ctx, scriptedBound)
	defer cancel()
	if !ok {
		d.tl.summary()
		fmt.Fprintln(stdout, "\nset-up failed: see the FAIL lines above and the logs in var/demo/run/logs")
		return 1
	}
	d.printConsole(stdout, "\nWatch the night in a browser while it runs")
	runID := time.Now().UTC().Format("150405")
	d.night(sctx, runID)
	var hand *citizen
	if sctx.Err() == nil {
		hand = d.leaveForYou(sctx, runID)
	}
	if ctx.Err() != nil {
		d.tl.summary()
		fmt.Fprintln(stdout, "\ninterrupted: the night was cut short")
		return 1
	}
	d.tl.summary()
	fails := d.tl.failures()
	if fails > 0 {
		d.printProblems(stdout)
	}
	d.printServices(stdout)
	if hand != nil {
		d.printByHand(stdout, hand)
	}
	if once {
		if fails > 0 {
			fmt.Fprintf(stdout, "\n%d step(s) failed\n", fails)
			return 1
		}
		return 0
	}
	fmt.Fprintln(stdout, "\nEverything keeps running; press Ctrl-C to stop.")
	<-ctx.Done()
	if fails > 0 {
		return 1
	}
	return 0
}

// scriptedBound bounds the scripted part, the start of every part and the
// night, well under CI's five minutes. The build before it is not bounded:
// a fresh clone's first build on a busy machine takes minutes.
const scriptedBound = 4 * time.Minute

// setup builds the binaries, then starts everything within bound. It
// returns the context of the scripted part (bounded; call cancel) and
// false when the night cannot run.
func (d *demo) setup(ctx context.Context, bound time.Duration) (context.Context, context.CancelFunc, bool) {
	err := d.build(ctx)
	sctx, cancel := context.WithTimeout(ctx, bound)
	ok := d.tl.check("demo", "build kluis-backend, kluis-sim, kluisd", "binaries in var/demo/bin", "built into "+d.bin, err) && d.start(sctx)
	return sctx, cancel, ok
}

// start starts everything once built; false when the night cannot run.
func (d *demo) start(ctx context.Context) bool {
	var how string
	var err error
	d.dbURL, how, err = d.database(ctx)
	if !d.tl.check("demo", "database", "empty database", how, err) {
		return false
	}
	adminPass := "Admin-" + randomHex(10)
	err = d.startBackend(ctx, adminPass)
	broker := "embedded broker on " + d.brokerAddr
	if d.getenv("MQTT_URL") != "" {
		broker = "MQTT_URL " + d.getenv("MQTT_URL")
	}
	if !d.tl.check("demo", "start kluis-backend", "ready", "API "+d.apiBase+", "+broker, err) {
		return false
	}
	err = d.setupBackendData(ctx, adminPass)
	if !d.tl.check("admin", "create site, 3 devices, staff and technician users (REST API)", "created", fmt.Sprintf("site %s, devices %d, kiosk staff PIN set=%t", siteID, len(fleet), d.staffPIN != ""), err) {
		return false
	}
	err = d.startFieldbus()
	if !d.tl.check("demo", "relay-module MQTT bus for the Tasmota automaton", "listening", d.fieldbus, err) {
		return false
	}
	err = d.startSim(ctx)
	if !d.tl.check("demo", "start kluis-sim fleet (Kluis pty, Kerong pty, Tasmota MQTT)", "ready", "control API "+d.simBase(), err) {
		return false
	}
	d.startNodes(ctx)
	anyReady := false
	for _, id := range d.order {
		n := d.nodes[id]
		obs, err := d.waitNode(ctx, n)
		if d.tl.check(id, "start kluisd ("+n.spec.Hardware+")", "ready, connected to the broker", "kiosk "+n.kioskAddr+", "+obs, err) {
			anyReady = true
		}
	}
	if anyReady {
		var online []string
		var err error
		for _, id := range d.order {
			if !d.nodes[id].ready {
				continue
			}
			if err = d.waitPresence(ctx, id, true); err != nil {
				break
			}
			online = append(online, id)
		}
		d.tl.check("backend", "device presence over MQTT", "every running kluisd online", strings.Join(online, ", ")+" online", err)
		d.kioskScreens(ctx)
	}
	return anyReady
}

// printProblems shows the last warnings and errors of every process, to
// explain the failed steps.
func (d *demo) printProblems(w io.Writer) {
	fmt.Fprintln(w, "\nLast warnings and errors of each process (full logs in var/demo/run/logs)")
	for _, name := range d.p.list() {
		lines := d.p.problems(name, 6)
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(w, "--- %s\n", name)
		for _, l := range lines {
			fmt.Fprintln(w, "  "+clip(l, 400))
		}
	}
}

// printConsole says where the staff console and the technician dashboard
// are and who can sign in.
func (d *demo) printConsole(w io.Writer, title string) {
	fmt.Fprintln(w, title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "staff console\t%s/staff/\n", d.apiBase)
	fmt.Fprintf(tw, "technician dashboard\t%s/staff/devices\n", d.apiBase)
	for _, p := range d.people {
		fmt.Fprintf(tw, "  %s\tuser %s  password %s\n", p.role, p.name, p.password)
	}
	tw.Flush()
}

// printServices lists every address the demo started.
func (d *demo) printServices(w io.Writer) {
	d.printConsole(w, "\nStaff console and technician dashboard (sign in with these demo users)")
	fmt.Fprintln(w, "\nServices")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "kluis-backend API\t%s/api/v1 (OpenAPI %s/api/v1/openapi.yaml)\n", d.apiBase, d.apiBase)
	fmt.Fprintf(tw, "kluis-backend metrics\t%s/metrics\n", d.apiBase)
	if d.getenv("MQTT_URL") == "" {
		fmt.Fprintf(tw, "embedded MQTT broker\ttcp://%s\n", d.brokerAddr)
	} else {
		fmt.Fprintf(tw, "MQTT broker\t%s\n", d.getenv("MQTT_URL"))
	}
	fmt.Fprintf(tw, "relay-module MQTT bus\t%s\n", d.fieldbus)
	fmt.Fprintf(tw, "simulator control API\t%s/v1/devices\n", d.simBase())
	for _, id := range d.order {
		n := d.nodes[id]
		state := "running"
		if !n.ready {
			state = "NOT READY"
		}
		fmt.Fprintf(tw, "kluisd %s (%s)\tkiosk screen %s, API %s/kiosk/v1/session, metrics http://%s/metrics, MQTT via cut proxy %s\n", id, state,
			kioskURL(n), n.kiosk.Base, n.metrics, proxyAddr(n))
	}
	fmt.Fprintf(tw, "e-mail drop (.eml)\t%s\n", d.mailDir)
	fmt.Fprintf(tw, "configs and logs\t%s\n", d.run)
	fmt.Fprintf(tw, "database\t%s\n", redactURL(d.dbURL))
	tw.Flush()
}

func proxyAddr(n *node) string {
	if n.proxy == nil {
		return "-"
	}
	return n.proxy.Addr()
}

// redactURL hides a password in a database URL.
func redactURL(u string) string {
	at := strings.LastIndex(u, "@")
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 {
		return u
	}
	cred := u[scheme+3 : at]
	if user, _, ok := strings.Cut(cred, ":"); ok {
		return u[:scheme+3] + user + ":***" + u[at:]
	}
	return u
}

// shutdown stops every process, the proxies and the relay bus.
func (d *demo) shutdown(w io.Writer) {
	fmt.Fprintln(w, "\nstopping…")
	d.p.stopAll(15 * time.Second)
	for _, n := range d.nodes {
		if n.proxy != nil {
			_ = n.proxy.Close()
		}
	}
	if d.fieldSrv != nil {
		_ = d.fieldSrv.Close()
	}
	fmt.Fprintln(w, "stopped")
}
