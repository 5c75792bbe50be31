package tap

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"kluis/bench"
	"kluis/controller/daemon/daemonclient"
	"kluis/controller/engine"
	"kluis/controller/journal"
	"kluis/controller/kiosk/kioskclient"
	"kluis/controller/offline"
	"kluis/controller/pickupcode"
	"kluis/deploy/dev/procrun"
	"kluis/deploy/dev/testenv"
)

// startOptions are the flags of "kluis-bench start".
type startOptions struct {
	runs int
	taps int
	baud int
	dir  string
	bins []string
	env  []string
	keep bool
	// settle is how long after the last tap the settled memory is read
	// (0: not read).
	settle time.Duration
	// settleRuns is how many of the starts (the first ones) read the
	// settled memory: each waits settle.
	settleRuns int
	// journalKiB pre-fills kluisd's journal with acknowledged events up to
	// this size before each start.
	journalKiB int
}

func parseStart(args []string) (startOptions, string, error) {
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	runs := fs.Int("runs", 20, "kluisd starts (each binary starts this many times, the binaries taking turns)")
	taps := fs.Int("taps", 48, "offline QR taps through the kiosk API after each start, before the second RSS reading (0: none)")
	baud := fs.Int("baud", 9600, "the lock board's baud rate (kluisd's hardware.serial.baud)")
	dir := fs.String("dir", os.TempDir(), "directory under which kluisd's journal is made")
	bins := fs.String("bin", "", "comma-separated kluisd binaries to compare, started in turn (paired runs); default: ./cmd/kluisd built as `make dist` does (CGO_ENABLED=0, -trimpath)")
	env := fs.String("env", "", "comma-separated NAME=value pairs added to kluisd's environment (e.g. GOGC=50 or GODEBUG=inittrace=1)")
	journalKiB := fs.Int("journal-kib", 0, "before each start, fill kluisd's journal with acknowledged events up to this many KiB (a device's journal between compactions; 0: a fresh journal)")
	settle := fs.Duration("settle", 35*time.Second, "after the taps, wait this long with nothing happening and read the resident memory again (kluisd returns free heap memory after 30 s with no screen change: controller/idlemem); 0: not read")
	settleRuns := fs.Int("settle-runs", 3, "how many starts (the first of each binary) wait -settle and read the settled memory")
	keep := fs.Bool("keep", false, "keep the run directories (kluisd's logs and journals, and its smaps and /metrics at each memory reading) under -dir and print where")
	if err := fs.Parse(args); err != nil {
		return startOptions{}, "", err
	}
	o := startOptions{runs: *runs, taps: *taps, baud: *baud, dir: *dir, keep: *keep, journalKiB: *journalKiB, settle: *settle, settleRuns: *settleRuns}
	if *bins != "" {
		o.bins = strings.Split(*bins, ",")
	}
	if *env != "" {
		o.env = strings.Split(*env, ",")
	}
	if o.runs < 1 || o.taps < 0 || o.baud < 1200 || o.journalKiB < 0 || o.settle < 0 || o.settleRuns < 0 {
		return startOptions{}, "", errors.New("start: want -runs >= 1, -taps >= 0, -baud >= 1200, -journal-kib >= 0, -settle >= 0, -settle-runs >= 0")
	}
	if o.settleRuns == 0 {
		o.settle = 0
	}
	cmd := fmt.Sprintf("go run ./cmd/kluis-bench start -runs %d -taps %d -baud %d -settle %s -settle-runs %d", o.runs, o.taps, o.baud, o.settle, o.settleRuns)
	if o.journalKiB > 0 {
		cmd += fmt.Sprintf(" -journal-kib %d", o.journalKiB)
	}
	if *bins != "" {
		cmd += " -bin " + *bins
	}
	if *env != "" {
		cmd += " -env " + *env
	}
	return o, cmd, nil
}

// startSample is one start of kluisd.
type startSample struct {
	notified time.Duration // exec to READY=1 (sd_notify)
	healthy  time.Duration // exec to the first /healthz that says ready
	readyRSS float64       // resident memory when READY=1 arrived
	anon     float64       // of which anonymous (heap, stacks, runtime), the rest file-backed (the binary's pages)
	tapRSS   float64       // resident memory right after the taps
	tapAnon  float64       // of which anonymous
	// settled: resident memory -settle after the last tap (0: not read)
	settledRSS, settledAnon float64
	// minflt, majflt: kluisd's page faults when READY=1 arrived
	minflt, majflt int64
	// The floor, measured right before this start: an empty Go
	// program's start, the same binary's --version, and what a page
	// fault costs.
	empty, version execSample
	cost           faultCost
}

// RunStart is kluis-bench's "start" subcommand: kluisd's start and memory,
// repeated so that the figure is not one sample on a busy machine.
//
// Each run starts kluisd (the production build) with a fresh journal
// directory, the simulator's lock board on a fresh pseudo-terminal at the
// configured baud rate, an offline cache of 16 codes and a broker address
// that refuses connections (kluisd's readiness does not wait for the
// broker: docs/kluisd.md, "Start-up"). It measures exec to READY=1
// (sd_notify, what systemd's Type=notify waits for), exec to the first
// /healthz that says ready (polled every 2 ms), the resident memory when
// READY=1 arrived, right after -taps offline QR taps through the kiosk
// API (each opens a door; the simulated citizen closes it) and, settled,
// -settle after the last tap with nothing happening meanwhile (kluisd
// returns its free heap memory after 30 s without a screen change:
// controller/idlemem). With several
// -bin the binaries take turns, so a comparison is paired: both see the
// same machine load.
func RunStart(ctx context.Context, env bench.Env, args []string) (bench.Report, error) {
	o, cmdline, err := parseStart(args)
	if err != nil {
		return bench.Report{}, err
	}
	if env.Out == nil {
		env.Out = io.Discard
	}
	dir, err := os.MkdirTemp(o.dir, "kluis-bench-start-")
	if err != nil {
		return bench.Report{}, fmt.Errorf("start: %w", err)
	}
	if o.keep {
		fmt.Fprintf(env.Out, "start: keeping %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bins := o.bins
	if len(bins) == 0 {
		bin := filepath.Join(dir, "kluisd")
		if err := buildShipped(ctx, bin); err != nil {
			return bench.Report{}, err
		}
		bins = []string{bin}
	}
	empty := filepath.Join(dir, "empty-go")
	if err := buildEmpty(ctx, empty); err != nil {
		return bench.Report{}, err
	}
	load0 := bench.LoadAvg()
	samples := make([][]startSample, len(bins))
	for run := 0; run < o.runs; run++ {
		for i, bin := range bins {
			oo := o
			if run >= o.settleRuns {
				oo.settle = 0
			}
			var fl startSample
			if fl.empty, err = execOnce(ctx, empty); err != nil {
				return bench.Report{}, err
			}
			if fl.version, err = execOnce(ctx, bin, "--version"); err != nil {
				return bench.Report{}, err
			}
			if fl.cost, err = measureFaultCost(bin, faultPages); err != nil {
				return bench.Report{}, err
			}
			s, err := startOnce(ctx, oo, filepath.Join(dir, fmt.Sprintf("run-%d-%d", run, i)), bin)
			if err != nil {
				return bench.Report{}, fmt.Errorf("start: %s, run %d: %w", bin, run+1, err)
			}
			s.empty, s.version, s.cost = fl.empty, fl.version, fl.cost
			samples[i] = append(samples[i], s)
			settled := ""
			if oo.settle > 0 {
				settled = fmt.Sprintf(", %.1f MB %s later (%.1f MB anonymous)", s.settledRSS/1e6, o.settle, s.settledAnon/1e6)
			}
			fmt.Fprintf(env.Out, "start: %s run %d: READY=1 %s after %d minor faults (floor: empty Go %s, %d faults; --version %s, %d faults; a fault %s anonymous, %s file-backed (the binary)), /healthz %s, RSS %.1f MB at READY=1 (%.1f MB anonymous), %.1f MB right after %d taps (%.1f MB anonymous)%s\n",
				filepath.Base(bin), run+1, ms(s.notified), s.minflt, ms(s.empty.wall), s.empty.minflt, ms(s.version.wall), s.version.minflt,
				us(s.cost.anon), us(s.cost.file), ms(s.healthy), s.readyRSS/1e6, s.anon/1e6, s.tapRSS/1e6, o.taps, s.tapAnon/1e6, settled)
		}
	}
	load1 := bench.LoadAvg()
	rep := bench.Report{Name: "start", Command: cmdline,
		Params: map[string]any{"runs": o.runs, "taps": o.taps, "journal_kib": o.journalKiB, "baud": o.baud, "binaries": strings.Join(bins, ","), "env": strings.Join(o.env, ",")}}
	for i, bin := range bins {
		var notified, healthy []time.Duration
		var ready, anon, tapped, tappedAnon, settled, settledAnon []float64
		for _, s := range samples[i] {
			notified, healthy = append(notified, s.notified), append(healthy, s.healthy)
			ready, anon, tapped = append(ready, s.readyRSS/1e6), append(anon, s.anon/1e6), append(tapped, s.tapRSS/1e6)
			tappedAnon = append(tappedAnon, s.tapAnon/1e6)
			if s.settledRSS > 0 {
				settled, settledAnon = append(settled, s.settledRSS/1e6), append(settledAnon, s.settledAnon/1e6)
			}
		}
		name := ""
		if len(bins) > 1 {
			name = fmt.Sprintf(" [%s]", bin)
		}
		rep.Figures = append(rep.Figures,
			bench.Figure{Name: "kluisd start, exec to READY=1, median" + name, Unit: "ms", LowerIsBetter: true, Goal: 1,
				Value: msf(bench.Percentile(notified, 50)), Floor: 10,
				Notes: fmt.Sprintf("p90 %s, min %s, max %s over %d starts; /healthz ready: median %s, p90 %s; floor: issue 14's figure",
					ms(bench.Percentile(notified, 90)), ms(bench.Percentile(notified, 0)), ms(bench.Percentile(notified, 100)), len(notified),
					ms(bench.Percentile(healthy, 50)), ms(bench.Percentile(healthy, 90)))},
			bench.Figure{Name: "kluisd resident memory at READY=1, median" + name, Unit: "MB", LowerIsBetter: true, Goal: 1,
				Value: bench.Median(ready), Floor: 14,
				Notes: fmt.Sprintf("%s; anonymous (heap, stacks, runtime) median %.1f MB, the rest the binary's file-backed pages", minMax(ready), bench.Median(anon))},
			bench.Figure{Name: fmt.Sprintf("kluisd resident memory right after %d offline QR taps, median%s", o.taps, name), Unit: "MB", LowerIsBetter: true, Goal: 1,
				Value: bench.Median(tapped), Floor: 14, Notes: fmt.Sprintf("%s; anonymous median %.1f MB", minMax(tapped), bench.Median(tappedAnon))})
		rep.Figures = append(rep.Figures, floorFigures(name, samples[i])...)
		if len(settled) > 0 {
			rep.Figures = append(rep.Figures,
				bench.Figure{Name: fmt.Sprintf("kluisd resident memory %s after the last of %d taps (quiet: settled), median%s", o.settle, o.taps, name), Unit: "MB", LowerIsBetter: true, Goal: 1,
					Value: bench.Median(settled), Floor: 14, Notes: fmt.Sprintf("%s (the first starts); anonymous median %.1f MB; nothing happens meanwhile (kluisd returns its free heap memory after 30 s without a screen change)", minMax(settled), bench.Median(settledAnon))})
		}
	}
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("load average (1, 5, 15 min) before: %s; after: %s", load0, load1),
		"the floor, measured before each start (interleaved): an empty Go program built by the bench (CGO_ENABLED=0, -trimpath) and `kluisd --version`, each exec to exit with its minor faults (rusage); a page fault's cost from writing 1024 fresh anonymous pages and reading the binary's pages (mapped privately), each divided by the thread's faults; kluisd's faults from /proc/<pid>/stat at READY=1",
		"each start: a fresh journal directory (filled with -journal-kib of acknowledged events) with an offline cache of 16 codes, the simulator's Kluis lock board on a fresh pty, MQTT at a port that refuses (readiness does not wait for the broker); READY=1 read from a NOTIFY_SOCKET, /healthz polled every 2 ms, RSS from /proc/<pid>/status at READY=1, right after the last tap (its door closed) and -settle after it")
	return rep, nil
}

// minMax notes the spread of xs (MB) for a memory figure.
func minMax(xs []float64) string {
	lo, hi := xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return fmt.Sprintf("min %.1f, max %.1f MB over %d starts; floor: issue 14's figure", lo, hi, len(xs))
}

// fillJournal appends acknowledged events (a pickup's, as the backend
// acknowledges them when online) to the journal in dir until it holds size
// bytes.
func fillJournal(dir string, size int64) error {
	if size <= 0 {
		return nil
	}
	j, _, _, err := journal.Open(journal.Options{Dir: dir, DeviceID: device, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	payload := []byte(`{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","kind":"pickup_completed","at":"2026-12-06T03:24:38Z","document_id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c","addr":{"board":0,"channel":7},"method":"qr","offline":true}`)
	for j.Size() < size {
		e, err := j.AppendEvent(journal.Event{Kind: "pickup_completed", Payload: payload})
		if err == nil {
			_, err = j.Ack(e.ID)
		}
		if err != nil {
			j.Close()
			return err
		}
	}
	return j.Close()
}

// buildShipped builds ./cmd/kluisd to out the way `make dist` builds what
// is shipped: CGO_ENABLED=0 (a static binary: no libc, no dynamic loader)
// and -trimpath. The default build links libc dynamically (net and os/user
// use cgo), which adds about 1.7 MB of resident memory and the loader's
// work to every start.
func buildShipped(ctx context.Context, out string) error {
	root, err := procrun.ModuleRoot()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./cmd/kluisd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("start: go build: %w\n%s", err, b)
	}
	return nil
}

// startOnce starts bin in dir once, measures, taps and stops it.
func startOnce(ctx context.Context, o startOptions, dir, bin string) (s startSample, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return s, err
	}
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b, err := openBoard(bctx, device)
	if err != nil {
		return s, err
	}
	defer b.close()
	if err := b.load(docLabels()); err != nil {
		return s, err
	}
	// The offline cache kluisd finds in its journal directory, and the key
	// its QR codes are signed with.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return s, err
	}
	keyFile := filepath.Join(dir, "offline.pub")
	if err := os.WriteFile(keyFile, []byte(pickupcode.FormatPublicKey(pub)+"\n"), 0o600); err != nil {
		return s, err
	}
	journalDir := filepath.Join(dir, "journal")
	if err := os.MkdirAll(journalDir, 0o700); err != nil {
		return s, err
	}
	if err := fillJournal(journalDir, int64(o.journalKiB)<<10); err != nil {
		return s, err
	}
	cache, err := offline.Open(journalDir, device, pub)
	if err != nil {
		return s, err
	}
	r := &rig{}
	sync, err := r.makeCodes(priv)
	if err != nil {
		return s, err
	}
	if err := cache.Apply(sync); err != nil {
		return s, err
	}
	var addrs [2]string
	for i := range addrs {
		if addrs[i], err = testenv.PickAddr(); err != nil {
			return s, err
		}
	}
	y := b.yaml(device, "{url: tcp://127.0.0.1:1}", o.baud, journalDir,
		fmt.Sprintf("kiosk: {listen: %q}\nmetrics_listen: %q\noffline: {public_key_file: %s}\n", addrs[0], addrs[1], keyFile))
	conf := filepath.Join(dir, "kluisd.yaml")
	if err := os.WriteFile(conf, []byte(y), 0o600); err != nil {
		return s, err
	}
	sock := filepath.Join(dir, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return s, fmt.Errorf("notify socket: %w", err)
	}
	defer notify.Close()
	logPath := filepath.Join(dir, "kluisd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return s, err
	}
	defer logf.Close()
	logTail := func() string {
		b, _ := os.ReadFile(logPath)
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		return string(b)
	}
	cmd := exec.Command(bin, "-config", conf)
	cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET="+sock), o.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return s, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			if err == nil {
				err = errors.New("kluisd did not stop within 15 s of SIGINT")
			}
		}
	}()
	type note struct {
		at             time.Duration
		rss, anon      float64
		minflt, majflt int64
	}
	notified := make(chan note, 1)
	go func() {
		_ = notify.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 256)
		for {
			n, err := notify.Read(buf)
			if err != nil {
				notified <- note{}
				return
			}
			if strings.Contains(string(buf[:n]), "READY=1") {
				at := time.Since(t0)
				minflt, majflt, _ := procFaults(cmd.Process.Pid)
				notified <- note{at, bench.ProcRSS(cmd.Process.Pid), procStatus(cmd.Process.Pid, "RssAnon:"), minflt, majflt}
				return
			}
		}
	}()
	health := daemonclient.New(addrs[1], daemonclient.Options{HTTP: &http.Client{Timeout: 2 * time.Second}})
	for {
		if h, err := health.Health(ctx); err == nil && h.Ready {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			return s, fmt.Errorf("kluisd exited before it was ready: %v\n%s", err, logTail())
		default:
		}
		if time.Since(t0) > 30*time.Second {
			return s, fmt.Errorf("kluisd not ready within 30 s\n%s", logTail())
		}
		time.Sleep(2 * time.Millisecond)
	}
	s.healthy = time.Since(t0)
	n := <-notified
	if n.at == 0 {
		return s, fmt.Errorf("kluisd sent no READY=1 within 30 s\n%s", logTail())
	}
	s.notified, s.readyRSS, s.anon, s.minflt, s.majflt = n.at, n.rss, n.anon, n.minflt, n.majflt
	if o.keep {
		keepMemory(ctx, dir, "ready", cmd.Process.Pid, addrs[1])
	}
	kc := kioskclient.New("http://" + addrs[0])
	for i := 0; i < o.taps; i++ {
		c := r.codes[i%len(r.codes)]
		if _, err := b.tap(ctx, c.comp,
			func(ctx context.Context) (engine.Screen, error) {
				return kc.Post(ctx, "/kiosk/v1/pickup", map[string]string{"qr": c.token})
			},
			func() bool {
				h, err := health.Health(ctx)
				if err != nil || h.Operations > 0 {
					time.Sleep(5 * time.Millisecond)
					return false
				}
				return true
			}); err != nil {
			return s, fmt.Errorf("tap %d: %w\n%s", i+1, err, logTail())
		}
	}
	s.tapRSS, s.tapAnon = bench.ProcRSS(cmd.Process.Pid), procStatus(cmd.Process.Pid, "RssAnon:")
	if o.keep {
		keepMemory(ctx, dir, "taps", cmd.Process.Pid, addrs[1])
	}
	if o.settle > 0 {
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case err := <-exited:
			exited <- err
			return s, fmt.Errorf("kluisd exited while settling: %v\n%s", err, logTail())
		case <-time.After(o.settle):
		}
		s.settledRSS, s.settledAnon = bench.ProcRSS(cmd.Process.Pid), procStatus(cmd.Process.Pid, "RssAnon:")
		if o.keep {
			keepMemory(ctx, dir, "settled", cmd.Process.Pid, addrs[1])
		}
	}
	return s, nil
}

// procStatus is a memory field of /proc/<pid>/status (kB) in bytes; 0 when
// unknown.
func procStatus(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	return 0
}

// residentBinaryPages lists the virtual addresses (hex, one a line) of
// the pages of kluisd's own binary mapped in its address space and
// present, from /proc/<pid>/maps and /proc/<pid>/pagemap (bit 63:
// present): which of the binary's pages count in its RSS, to be matched
// against its sections and symbols (readelf -S, go tool nm -size).
func residentBinaryPages(pid int) ([]byte, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, err
	}
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	pm, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return nil, err
	}
	defer pm.Close()
	const page = 4096
	var out strings.Builder
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[5] != exe {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		buf := make([]byte, (end-start)/page*8)
		if _, err := pm.ReadAt(buf, int64(start/page*8)); err != nil {
			return nil, err
		}
		for i := 0; i < len(buf); i += 8 {
			if buf[i+7]&0x80 != 0 {
				fmt.Fprintf(&out, "%x\n", start+uint64(i/8)*page)
			}
		}
	}
	return []byte(out.String()), nil
}

// keepMemory copies kluisd's /proc/<pid>/smaps and /metrics (the Go
// runtime's memory classes) into dir as <label>.smaps and
// <label>.metrics, and the resident pages of its binary as <label>.pages
// (residentBinaryPages), for -keep: where the resident memory is at each
// reading. It is read after the RSS figure, so it does not change it.
func keepMemory(ctx context.Context, dir, label string, pid int, metricsAddr string) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid)); err == nil {
		_ = os.WriteFile(filepath.Join(dir, label+".smaps"), b, 0o600)
	}
	if b, err := residentBinaryPages(pid); err == nil {
		_ = os.WriteFile(filepath.Join(dir, label+".pages"), b, 0o600)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr+"/metrics", nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if b, err := io.ReadAll(resp.Body); err == nil {
		_ = os.WriteFile(filepath.Join(dir, label+".metrics"), b, 0o600)
	}
}
