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

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"kluis/bench"
	"kluis/controller/config"
	"kluis/controller/daemon"
	"kluis/controller/engine"
	"kluis/controller/journal"
	"kluis/controller/offline"
	"kluis/controller/pickupcode"
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
}

func parse(args []string) (options, string, error) {
	fs := flag.NewFlagSet("tap", flag.ContinueOnError)
	taps := fs.Int("taps", 40, "taps per method and round")
	rounds := fs.Int("rounds", 3, "rounds (each taps QR codes, then PINs, each tap followed by its floor samples)")
	baud := fs.Int("baud", 9600, "the lock boards' baud rate (kluisd's hardware.serial.baud; frame time)")
	dir := fs.String("dir", os.TempDir(), "directory under which kluisd's journal and the floor's file are made")
	if err := fs.Parse(args); err != nil {
		return options{}, "", err
	}
	o := options{taps: *taps, rounds: *rounds, baud: *baud, dir: *dir}
	if o.taps < 1 || o.rounds < 1 || o.baud < 1200 {
		return options{}, "", errors.New("tap: want -taps >= 1, -rounds >= 1, -baud >= 1200")
	}
	cmd := fmt.Sprintf("go run ./cmd/kluis-bench tap -taps %d -rounds %d -baud %d", o.taps, o.rounds, o.baud)
	if *dir != os.TempDir() {
		cmd += " -dir " + *dir
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

// rig is the running kluisd engine and simulated boards.
type rig struct {
	dev    *simulator.Device
	line   *simulator.Line
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

	frame, err := kluisproto.EncodeMessage(0, &kluisproto.UnlockRequest{Channel: 1, DurationMS: 500, ID: 12345})
	if err != nil {
		return bench.Report{}, err
	}
	frameTime := time.Duration(len(frame)) * 10 * time.Second / time.Duration(o.baud)
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
	}

	p := pickupcode.OfflineArgonParams
	rep := bench.Report{Name: "tap", Command: cmd,
		Params: map[string]any{"taps": o.taps, "rounds": o.rounds, "baud": o.baud, "frame_bytes": len(frame),
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
			len(intent), ms(bench.Percentile(syncs, 50)), ms(bench.Percentile(syncs, 99)), len(frame), o.baud, ms(frameTime),
			p, ms(bench.Percentile(hashes, 50)), ms(bench.Percentile(hashes, 99))),
		"measured: engine.Pickup called (what the kiosk API does on a tap) to the simulated board receiving the UNLOCK frame through the production driver and a pty; kluisd without backend verifies offline at once",
		"the offline path journals one record before the pulse: the intent, which carries the code's single-use mark")
	return rep, nil
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func ms(d time.Duration) string   { return fmt.Sprintf("%.2f ms", msf(d)) }

// tap taps req for c and returns the time until the board received the
// pulse, after the operation it started has ended (door closed again).
func (r *rig) tap(ctx context.Context, c code, req engine.PickupRequest) (time.Duration, error) {
	before := len(r.dev.Pulses())
	t0 := time.Now()
	s, err := r.e.Pickup(ctx, req)
	if err != nil {
		return 0, fmt.Errorf("tap: pickup: %w", err)
	}
	if s.State != engine.StateOpen {
		return 0, fmt.Errorf("tap: compartment %d: screen %q, want %q", c.comp, s.State, engine.StateOpen)
	}
	deadline := time.Now().Add(10 * time.Second)
	var at time.Time
	for {
		if ps := r.dev.Pulses(); len(ps) > before {
			at = ps[len(ps)-1].At
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("tap: compartment %d: no pulse within 10s", c.comp)
		}
		time.Sleep(200 * time.Microsecond)
	}
	// The simulated citizen leaves the document; the door closes by
	// itself (AutoClose) and the operation ends.
	for len(r.j.Unfinished()) > 0 {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("tap: compartment %d: operation did not end within 10s", c.comp)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return at.Sub(t0), nil
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
	r.dev, err = simulator.New(simulator.Options{ID: device, Boards: 1, Channels: comps, AutoClose: 40 * time.Millisecond})
	if err != nil {
		return r, err
	}
	rctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	r.line, err = simulator.ServeSerial(rctx, r.dev, simulator.SerialOptions{Protocol: simulator.ProtoKluis})
	if err != nil {
		return r, err
	}
	var y strings.Builder
	fmt.Fprintf(&y, "device_id: %s\nsite: bench\nkind: locker\nmqtt: {url: tcp://127.0.0.1:1}\n", device)
	fmt.Fprintf(&y, "hardware: {driver: kluis, boards: [0], serial: {port: %s, baud: %d}}\njournal_dir: %s\ncompartments:\n", r.line.Path, o.baud, dir)
	for c := 0; c < comps; c++ {
		fmt.Fprintf(&y, "  - {number: %d, board: 0, channel: %d}\n", c+1, c)
		if err := r.dev.Load(0, c, 0, fmt.Sprintf("doc-%d", c)); err != nil {
			return r, err
		}
	}
	cfg, err := config.Parse([]byte(y.String()), config.ParseOptions{})
	if err != nil {
		return r, fmt.Errorf("tap: kluisd config: %w", err)
	}
	drv, err := daemon.OpenDriver(rctx, cfg, quiet, prometheus.NewRegistry())
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
		CommandKey: pub, Logger: quiet, Registry: prometheus.NewRegistry()})
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

// makeCodes makes one code per compartment: a QR token signed for the
// device, a PIN, and the offline cache entry the backend would sync.
func (r *rig) makeCodes(priv ed25519.PrivateKey) (wire.CodeSync, error) {
	b64 := base64.RawURLEncoding
	p := pickupcode.OfflineArgonParams
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return wire.CodeSync{}, err
	}
	exp := time.Now().Add(24 * time.Hour)
	sync := wire.CodeSync{Version: 1, Full: true}
	for c := 0; c < comps; c++ {
		cid := make([]byte, 16)
		if _, err := rand.Read(cid); err != nil {
			return sync, err
		}
		codeID := b64.EncodeToString(cid)
		tok, err := pickupcode.SignToken(priv, pickupcode.Claims{CodeID: codeID, DeviceID: device, Expires: exp.Unix()})
		if err != nil {
			return sync, err
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
	return sync, nil
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
	if r.line != nil {
		r.line.Close()
	}
	os.RemoveAll(r.dir)
}
