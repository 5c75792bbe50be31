// Package tap is kluis-bench's "tap" subcommand: offline tap-to-pulse, the
// time from a citizen's QR code or PIN reaching kluisd to the lock board
// receiving the pulse, while the backend is out of reach, against its floor.
//
// The parts are real: kluisd's engine with its journal (fsynced to disk in
// -dir) and offline cache, the production Kluis lock-board driver on a
// pseudo-terminal, and the simulator's boards answering on the other side
// (they record the moment each pulse frame arrives). The cache holds 16
// codes (QR hashes and argon2id PIN verifiers at the production costs,
// pickupcode.OfflineArgonParams, identity documents and driving licences
// mixed); kluisd has no backend (the link answers at once when it is down,
// so the engine goes straight to the cache). Every tap opens a door; the
// simulated citizen leaves the document and the door closes again, so the
// code stays valid and can be tapped again (16 compartments in turn).
//
// The floor of one tap is what the pulse cannot do without: one fsync of
// the pulse intent (a raw write + fdatasync of a record of the same size in
// the same directory, sampled right after the tap) plus the time the
// UNLOCK frame takes on the wire at the configured baud rate; for a PIN
// also the offline PIN check (the argon2id hashes, the cache's VerifyPIN
// timed right after the tap). A pseudo-terminal carries bytes without
// baud timing, so the frame time is added to the measured tap as well:
// both figures are what a real RS485 line would give. The goal (issue 14)
// is a QR p99 at most twice its floor.
//
// Online (-online, the default; online.go): kluisd itself (./cmd/kluisd,
// built by the bench) with the simulator's board on a pty, kluis-backend
// in-process on a throw-away database, and a private Mosquitto with
// deploy/mosquitto's configuration between them. A tap is a POST
// /kiosk/v1/pickup with a fresh code (issued by the backend's
// codes.Service before the tap, untimed; kluisd gets no offline codes, so
// it must verify online) up to the board receiving the pulse. Its floor:
// one MQTT round trip on the same broker (QoS 1 there and back between
// two clients), the claim transaction on the same database (a fresh code
// marked used and an audit record of the verification's shape, in one
// transaction) and the frame time. Each round taps offline QR, offline
// PIN, online QR, online PIN, every tap followed by its floor samples.
// kluisd's start (exec to a ready /healthz, and to READY=1) and its
// resident memory are measured on the way.
//
// The "start" subcommand (RunStart, start.go) measures kluisd's start and
// memory on their own, over repeated starts of the shipped build.
package tap

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"kluis/bench"
	"kluis/controller/config"
	"kluis/controller/daemon"
	"kluis/controller/engine"
	"kluis/controller/journal"
	"kluis/controller/offline"
	"kluis/controller/pickupcode"
	"kluis/controller/promtext"
	"kluis/controller/wire"
	"kluis/hardware/kluisproto"
	"kluis/simulator"
)

// Goal is the QR ratio aimed for: p99 at most twice the floor.
const Goal = 0.5

const (
	device = "bench-tap"
	comps  = 16
)

type options struct {
	taps   int
	rounds int
	baud   int
	dir    string
	online bool
}

func parse(args []string) (options, string, error) {
	fs := flag.NewFlagSet("tap", flag.ContinueOnError)
	taps := fs.Int("taps", 40, "taps per method and round")
	rounds := fs.Int("rounds", 3, "rounds (each taps QR codes, then PINs, each tap followed by its floor samples)")
	baud := fs.Int("baud", 9600, "the lock boards' baud rate (kluisd's hardware.serial.baud; frame time)")
	dir := fs.String("dir", os.TempDir(), "directory under which kluisd's journal and the floor's file are made")
	onl := fs.Bool("online", true, "also tap online: kluisd (built from ./cmd/kluisd) verifying with the backend over Mosquitto")
	if err := fs.Parse(args); err != nil {
		return options{}, "", err
	}
	o := options{taps: *taps, rounds: *rounds, baud: *baud, dir: *dir, online: *onl}
	if o.taps < 1 || o.rounds < 1 || o.baud < 1200 {
		return options{}, "", errors.New("tap: want -taps >= 1, -rounds >= 1, -baud >= 1200")
	}
	cmd := fmt.Sprintf("go run ./cmd/kluis-bench tap -taps %d -rounds %d -baud %d", o.taps, o.rounds, o.baud)
	if *dir != os.TempDir() {
		cmd += " -dir " + *dir
	}
	if !o.online {
		cmd += " -online=false"
	}
	return o, cmd, nil
}

// code is one document in the offline cache and how to tap it.
type code struct {
	comp      int
	token     string
	pin, dob  string
	secondFac bool
}

// board is the simulator's lock board (16 channels) on a pseudo-terminal:
// kluisd's driver opens its Path, the simulated board records when each
// UNLOCK frame arrives; a door closes again by itself 40 ms after it
// opened (the simulated citizen leaves the document).
type board struct {
	dev  *simulator.Device
	line *simulator.Line
}

func openBoard(ctx context.Context, id string) (*board, error) {
	dev, err := simulator.New(simulator.Options{ID: id, Boards: 1, Channels: comps, AutoClose: 40 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	line, err := simulator.ServeSerial(ctx, dev, simulator.SerialOptions{Protocol: simulator.ProtoKluis})
	if err != nil {
		return nil, err
	}
	return &board{dev: dev, line: line}, nil
}

// load puts label[c] into channel c for every c in labels, as staff did
// while an earlier kluisd ran: that kluisd took the board's item events
// and acknowledged them, so the kluisd started now finds the documents in
// place and no event about them. Loaded behind a kluisd's back instead,
// the events would reach it as items placed with no operation, and it
// would withdraw their compartments' offline codes (an offline code never
// opens a compartment whose contents changed at the device: every offline
// tap would be refused).
func (b *board) load(labels map[int]string) error {
	for c, label := range labels {
		if err := b.dev.Load(0, c, 0, label); err != nil {
			return err
		}
	}
	q, err := b.dev.Queue(0)
	if err != nil || len(q.Events) == 0 {
		return err
	}
	return b.dev.Ack(0, q.Events[len(q.Events)-1].Seq)
}

func (b *board) close() {
	if b != nil && b.line != nil {
		b.line.Close()
	}
}

// yaml is kluisd's configuration for this board: one compartment per
// channel, mqtt and extra (more top-level YAML lines) as given.
func (b *board) yaml(device, mqtt string, baud int, journalDir, extra string) string {
	var y strings.Builder
	fmt.Fprintf(&y, "device_id: %s\nsite: bench\nkind: locker\nmqtt: %s\n%s", device, mqtt, extra)
	fmt.Fprintf(&y, "hardware: {driver: kluis, boards: [0], serial: {port: %s, baud: %d}}\njournal_dir: %s\ncompartments:\n", b.line.Path, baud, journalDir)
	for c := 0; c < comps; c++ {
		fmt.Fprintf(&y, "  - {number: %d, board: 0, channel: %d}\n", c+1, c)
	}
	return y.String()
}

// tap runs pickup (a citizen's tap for compartment comp) and returns the
// time until the board received the pulse, after the operation it started
// has ended (ended reports it: door closed again, kluisd idle).
func (b *board) tap(ctx context.Context, comp int, pickup func(context.Context) (engine.Screen, error), ended func() bool) (time.Duration, error) {
	before := len(b.dev.Pulses())
	t0 := time.Now()
	s, err := pickup(ctx)
	if err != nil {
		return 0, fmt.Errorf("tap: pickup: %w", err)
	}
	if s.State != engine.StateOpen {
		return 0, fmt.Errorf("tap: compartment %d: screen %q (%s), want %q", comp, s.State, s.Message, engine.StateOpen)
	}
	deadline := time.Now().Add(10 * time.Second)
	var at time.Time
	for {
		if ps := b.dev.Pulses(); len(ps) > before {
			at = ps[len(ps)-1].At
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("tap: compartment %d: no pulse within 10s", comp)
		}
		time.Sleep(200 * time.Microsecond)
	}
	// The simulated citizen leaves the document; the door closes by
	// itself (AutoClose) and the operation ends.
	for !ended() {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("tap: compartment %d: operation did not end within 10s", comp)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return at.Sub(t0), nil
}

// unlockFrame is the UNLOCK frame the driver sends for a pulse and its
// time on the wire at baud (10 bits a byte).
func unlockFrame(baud int) (int, time.Duration, error) {
	frame, err := kluisproto.EncodeMessage(0, &kluisproto.UnlockRequest{Channel: 1, DurationMS: 500, ID: 12345})
	if err != nil {
		return 0, 0, err
	}
	return len(frame), time.Duration(len(frame)) * 10 * time.Second / time.Duration(baud), nil
}

// rig is the running kluisd engine and simulated boards.
type rig struct {
	*board
	drv    interface{ Close() error }
	e      *engine.Engine
	j      *journal.Journal
	cache  *offline.Cache
	codes  []code
	dir    string
	cancel context.CancelFunc
	done   chan error
}

// Run measures; see the package doc.
func Run(ctx context.Context, env bench.Env, args []string) (bench.Report, error) {
	o, cmd, err := parse(args)
	if err != nil {
		return bench.Report{}, err
	}
	if env.Out == nil {
		env.Out = io.Discard
	}
	r, err := start(ctx, o)
	if err != nil {
		return bench.Report{}, err
	}
	defer r.stop()
	var on *online
	if o.online {
		fmt.Fprintf(env.Out, "tap: starting kluisd, kluis-backend and Mosquitto for the online taps\n")
		if on, err = startOnline(ctx, env, o); err != nil {
			return bench.Report{}, err
		}
		defer on.stop()
	}

	frameLen, frameTime, err := unlockFrame(o.baud)
	if err != nil {
		return bench.Report{}, err
	}
	intent, err := intentLine(o.dir)
	if err != nil {
		return bench.Report{}, err
	}
	raw, err := os.OpenFile(filepath.Join(r.dir, "floor.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return bench.Report{}, fmt.Errorf("tap: %w", err)
	}
	defer raw.Close()
	fsync := func() (time.Duration, error) {
		t0 := time.Now()
		if _, err := unix.Write(int(raw.Fd()), intent); err != nil {
			return 0, err
		}
		err := unix.Fdatasync(int(raw.Fd()))
		return time.Since(t0), err
	}

	var qr, qrFloor, pin, pinFloor, hashes, syncs []time.Duration
	// The same without the frame time: what the pty shows of kluisd's
	// own part against the fsync (and hash) alone.
	var qrSoft, qrSoftFloor, pinSoft, pinSoftFloor []time.Duration
	// Online: per method the taps and their floors, with and without the
	// frame time; the floor's parts.
	type series struct{ taps, floor, soft, softFloor []time.Duration }
	var onQR, onPIN series
	var rtts, claims, onSyncs []time.Duration
	next := 0
	for round := 0; round < o.rounds; round++ {
		for _, method := range []wire.Method{wire.MethodQR, wire.MethodPIN} {
			for i := 0; i < o.taps; i++ {
				if err := ctx.Err(); err != nil {
					return bench.Report{}, err
				}
				c := r.codes[next%len(r.codes)]
				next++
				req := engine.PickupRequest{QR: c.token}
				if method == wire.MethodPIN {
					req = engine.PickupRequest{PIN: c.pin, BirthDate: c.dob}
				}
				d, err := r.tap(ctx, c, req)
				if err != nil {
					return bench.Report{}, err
				}
				s, err := fsync()
				if err != nil {
					return bench.Report{}, fmt.Errorf("tap: floor write+fdatasync: %w", err)
				}
				syncs = append(syncs, s)
				if method == wire.MethodQR {
					qr, qrFloor = append(qr, d+frameTime), append(qrFloor, s+frameTime)
					qrSoft, qrSoftFloor = append(qrSoft, d), append(qrSoftFloor, s)
					continue
				}
				t0 := time.Now()
				if _, err := r.cache.VerifyPIN(c.pin, c.dob, time.Now()); err != nil {
					return bench.Report{}, fmt.Errorf("tap: offline PIN check: %w", err)
				}
				h := time.Since(t0)
				hashes = append(hashes, h)
				pin, pinFloor = append(pin, d+frameTime), append(pinFloor, s+frameTime+h)
				pinSoft, pinSoftFloor = append(pinSoft, d), append(pinSoftFloor, s+h)
			}
			fmt.Fprintf(env.Out, "tap: round %d, %s: %d taps\n", round+1, method, o.taps)
		}
		if on == nil {
			continue
		}
		for _, method := range []wire.Method{wire.MethodQR, wire.MethodPIN} {
			for i := 0; i < o.taps; i++ {
				if err := ctx.Err(); err != nil {
					return bench.Report{}, err
				}
				d := on.docs[next%len(on.docs)]
				next++
				t, err := on.tap(ctx, d, method)
				if err != nil {
					return bench.Report{}, fmt.Errorf("%w\n%s", err, on.kluisdLog())
				}
				rtt, err := on.rtt(ctx)
				if err != nil {
					return bench.Report{}, err
				}
				claim, err := on.claim(ctx, d)
				if err != nil {
					return bench.Report{}, err
				}
				s, err := fsync()
				if err != nil {
					return bench.Report{}, fmt.Errorf("tap: floor write+fdatasync: %w", err)
				}
				onl := &onQR
				if method == wire.MethodPIN {
					onl = &onPIN
				}
				onl.taps, onl.floor = append(onl.taps, t+frameTime), append(onl.floor, rtt+claim+frameTime)
				onl.soft, onl.softFloor = append(onl.soft, t), append(onl.softFloor, rtt+claim)
				rtts, claims, onSyncs = append(rtts, rtt), append(claims, claim), append(onSyncs, s)
			}
			fmt.Fprintf(env.Out, "tap: round %d, online %s: %d taps\n", round+1, method, o.taps)
		}
	}

	p := pickupcode.OfflineArgonParams
	rep := bench.Report{Name: "tap", Command: cmd,
		Params: map[string]any{"taps": o.taps, "rounds": o.rounds, "baud": o.baud, "frame_bytes": frameLen,
			"argon2id": p.String(), "compartments": comps}}
	fig := func(name string, vals, floor []time.Duration, pct float64, goal float64) bench.Figure {
		return bench.Figure{Name: name, Unit: "ms", LowerIsBetter: true, Goal: goal,
			Value: msf(bench.Percentile(vals, pct)), Floor: msf(bench.Percentile(floor, pct)),
			Notes: fmt.Sprintf("%d taps; floor p%.0f of the per-tap floors", len(vals), pct)}
	}
	rep.Figures = append(rep.Figures,
		fig("offline QR tap-to-pulse p50", qr, qrFloor, 50, 0),
		fig("offline QR tap-to-pulse p99", qr, qrFloor, 99, Goal),
		fig("offline PIN tap-to-pulse p50", pin, pinFloor, 50, 0),
		fig("offline PIN tap-to-pulse p99", pin, pinFloor, 99, 0),
		fig("offline QR, kluisd's part on the pty (no frame time) p99", qrSoft, qrSoftFloor, 99, 0),
		fig("offline PIN, kluisd's part on the pty (no frame time) p99", pinSoft, pinSoftFloor, 99, 0))
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("floor parts: intent fsync (raw write+fdatasync of %d bytes, sampled after each tap) p50 %s p99 %s; UNLOCK frame %d bytes at %d baud = %s (added to the measured taps too: the pseudo-terminal has no baud timing); offline PIN check (%s, two hashes at once) p50 %s p99 %s",
			len(intent), ms(bench.Percentile(syncs, 50)), ms(bench.Percentile(syncs, 99)), frameLen, o.baud, ms(frameTime),
			p, ms(bench.Percentile(hashes, 50)), ms(bench.Percentile(hashes, 99))),
		"measured: engine.Pickup called (what the kiosk API does on a tap) to the simulated board receiving the UNLOCK frame through the production driver and a pty; kluisd without backend verifies offline at once",
		"the offline path journals one record before the pulse: the intent, which carries the code's single-use mark")
	if on == nil {
		return rep, nil
	}
	rep.Params["online"] = "kluisd process (./cmd/kluisd), kluis-backend in-process, Mosquitto (deploy/mosquitto) between them"
	rep.Figures = append(rep.Figures,
		fig("online QR tap-to-pulse p50", onQR.taps, onQR.floor, 50, 0),
		fig("online QR tap-to-pulse p99", onQR.taps, onQR.floor, 99, 0),
		fig("online PIN tap-to-pulse p50", onPIN.taps, onPIN.floor, 50, 0),
		fig("online PIN tap-to-pulse p99", onPIN.taps, onPIN.floor, 99, 0),
		fig("online QR, on the pty (no frame time) p99", onQR.soft, onQR.softFloor, 99, 0),
		fig("online PIN, on the pty (no frame time) p99", onPIN.soft, onPIN.softFloor, 99, 0),
		bench.Figure{Name: "kluisd start (exec to a ready /healthz)", Unit: "ms", LowerIsBetter: true, Goal: 1, Value: msf(on.started), Floor: 10,
			Notes: fmt.Sprintf("one start, /healthz polled every 2 ms; READY=1 (sd_notify, what systemd waits for) after %s; floor: issue 14's figure (keep it there)", ms(on.notified))},
		bench.Figure{Name: "kluisd resident memory after the taps", Unit: "MB", LowerIsBetter: true, Goal: 1, Value: on.rss() / 1e6, Floor: 14,
			Notes: fmt.Sprintf("%.1f MB at READY=1; floor: issue 14's figure (keep it there)", on.readyRSS/1e6)})
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("online floor parts: MQTT round trip on the same Mosquitto (QoS 1 there and back between two clients) p50 %s p99 %s; claim transaction on the same database (mark a fresh code used, insert an audit record of the verification's shape) p50 %s p99 %s; UNLOCK frame %s; not in the floor: kluisd's pulse-intent fsync before the pulse (sampled: p50 %s p99 %s)",
			ms(bench.Percentile(rtts, 50)), ms(bench.Percentile(rtts, 99)), ms(bench.Percentile(claims, 50)), ms(bench.Percentile(claims, 99)),
			ms(frameTime), ms(bench.Percentile(onSyncs, 50)), ms(bench.Percentile(onSyncs, 99))),
		"online: a POST /kiosk/v1/pickup at kluisd's kiosk API with a fresh code (issued by the backend's codes.Service before the tap, untimed) to the simulated board receiving the UNLOCK frame; kluisd has no offline codes (no bundle is sent), so every opened door was verified online")
	return rep, nil
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func ms(d time.Duration) string   { return fmt.Sprintf("%.2f ms", msf(d)) }

// tap taps req for c on the in-process engine.
func (r *rig) tap(ctx context.Context, c code, req engine.PickupRequest) (time.Duration, error) {
	return r.board.tap(ctx, c.comp,
		func(ctx context.Context) (engine.Screen, error) { return r.e.Pickup(ctx, req) },
		func() bool { return len(r.j.Unfinished()) == 0 })
}

func start(ctx context.Context, o options) (_ *rig, err error) {
	dir, err := os.MkdirTemp(o.dir, "kluis-bench-tap-")
	if err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	r := &rig{dir: dir}
	defer func() {
		if err != nil {
			r.stop()
		}
	}()
	quiet := slog.New(slog.DiscardHandler)
	rctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	if r.board, err = openBoard(rctx, device); err != nil {
		return r, err
	}
	if err := r.load(docLabels()); err != nil {
		return r, err
	}
	cfg, err := config.Parse([]byte(r.yaml(device, "{url: tcp://127.0.0.1:1}", o.baud, dir, "")), config.ParseOptions{})
	if err != nil {
		return r, fmt.Errorf("tap: kluisd config: %w", err)
	}
	drv, err := daemon.OpenDriver(rctx, cfg, quiet, promtext.NewRegistry())
	if err != nil {
		return r, err
	}
	r.drv = drv
	var e *engine.Engine
	var recs []journal.Record
	r.j, recs, _, err = journal.Open(journal.Options{Dir: dir, DeviceID: device, Logger: quiet,
		Keep: func(rec journal.Record) bool { return e.Keep(rec) }})
	if err != nil {
		return r, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return r, err
	}
	if r.cache, err = offline.Open(dir, device, pub); err != nil {
		return r, err
	}
	sync, err := r.makeCodes(priv)
	if err != nil {
		return r, err
	}
	if err := r.cache.Apply(sync); err != nil {
		return r, err
	}
	e, err = engine.New(engine.Options{Config: cfg, Driver: drv, Journal: r.j, Replay: recs, Cache: r.cache,
		CommandKey: pub, Logger: quiet, Registry: promtext.NewRegistry()})
	if err != nil {
		return r, err
	}
	r.e = e
	r.done = make(chan error, 1)
	go func() { r.done <- e.Run(rctx) }()
	for deadline := time.Now().Add(10 * time.Second); !e.Ready(); {
		if time.Now().After(deadline) {
			return r, errors.New("tap: kluisd engine not ready within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return r, nil
}

// docLabels names the document in each compartment: doc-<channel>, the
// offline cache entries' document ids.
func docLabels() map[int]string {
	m := make(map[int]string, comps)
	for c := 0; c < comps; c++ {
		m[c] = fmt.Sprintf("doc-%d", c)
	}
	return m
}

// makeCodes makes one code per compartment: a QR token signed for the
// device, a PIN, and the offline cache entry the backend would sync (in a
// code_sync command signed for the device).
func (r *rig) makeCodes(priv ed25519.PrivateKey) (wire.Command, error) {
	b64 := base64.RawURLEncoding
	p := pickupcode.OfflineArgonParams
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return wire.Command{}, err
	}
	exp := time.Now().Add(24 * time.Hour)
	sync := wire.CodeSync{Version: 1, Full: true}
	for c := 0; c < comps; c++ {
		cid := make([]byte, 16)
		if _, err := rand.Read(cid); err != nil {
			return wire.Command{}, err
		}
		codeID := b64.EncodeToString(cid)
		tok, err := pickupcode.SignToken(priv, pickupcode.Claims{CodeID: codeID, DeviceID: device, Expires: exp.Unix()})
		if err != nil {
			return wire.Command{}, err
		}
		cd := code{comp: c + 1, token: tok, pin: fmt.Sprintf("%03d%03d%03d", 100+c, 200+c, 300+c), dob: "1990-02-28", secondFac: c%2 == 0}
		dob := ""
		if cd.secondFac {
			dob = cd.dob
		}
		v := pickupcode.OfflineVerifier(p, salt, device, cd.pin, dob)
		sync.Entries = append(sync.Entries, wire.CodeEntry{DocumentID: fmt.Sprintf("doc-%d", c), Addr: wire.Address{Board: 0, Channel: c},
			Expires: exp, QRHash: pickupcode.QRHash(codeID), SecondFactor: cd.secondFac,
			PINHash: pickupcode.FormatPINHash(p, b64.EncodeToString(salt), b64.EncodeToString(v))})
		r.codes = append(r.codes, cd)
	}
	// The cache keeps only code syncs the backend signed for the device.
	now := time.Now().UTC()
	cmd := wire.Command{ID: "tap-sync-1", Kind: wire.CmdCodeSync, Issued: now, Expires: now.Add(time.Minute), Codes: &sync}
	if err := wire.SignCommand(priv, device, &cmd); err != nil {
		return wire.Command{}, err
	}
	return cmd, nil
}

// intentLine is the journal line of a pulse intent as an offline pickup
// writes it (made in a scratch journal).
func intentLine(parent string) ([]byte, error) {
	dir, err := os.MkdirTemp(parent, "kluis-bench-tap-")
	if err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	defer os.RemoveAll(dir)
	j, _, _, err := journal.Open(journal.Options{Dir: dir, DeviceID: device, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	if _, err := j.BeginPulse(journal.Intent{Compartment: 16, Board: 0, Channel: 15, Slot: -1, Purpose: engine.PurposePickup,
		Ref: "doc-15", Offline: true, CodeRef: "5B1g_gZs3Tc_JlqNwLDYT832Axi2peKvc3F_WZms2Yc", Method: string(wire.MethodPIN)}); err != nil {
		j.Close()
		return nil, err
	}
	if err := j.Close(); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(dir, journal.FileName))
}

func (r *rig) stop() {
	if r.cancel != nil {
		r.cancel()
	}
	if r.done != nil {
		<-r.done
	}
	if r.drv != nil {
		r.drv.Close()
	}
	if r.j != nil {
		r.j.Close()
	}
	r.board.close()
	os.RemoveAll(r.dir)
}
