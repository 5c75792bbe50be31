package verify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/pprof/profile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"kluis/backend/api/apiclient"
	"kluis/backend/auth"
	"kluis/backend/codes"
	"kluis/backend/deviceops"
	"kluis/backend/server"
	"kluis/bench"
	"kluis/controller/daemon/daemonclient"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
	"kluis/internal/mqttconn"
)

// Goal is the ratio to the floor aimed for (issue 14).
const Goal = 0.7

type options struct {
	devices  []int
	duration time.Duration
	warmup   time.Duration
	rounds   int
	modes    []string             // the backend's batch modes, paired phase by phase (modeNames)
	profile  string               // directory for each Kluis phase's CPU profile, "" for none
	pgWaits  time.Duration        // pg_stat_activity's sampling interval (-pg-waits), 0 for none
	dbSet    [][2]string          // -db-set: settings of the throw-away database (name, value)
	answers  deviceops.AnswerForm // -answer-signature: the backend's server.Options.AnswerSignature
}

// modeNames are -batch-mode's values: how many batches run at once
// (codes.Options.VerifyLeaders; 0: the backend's default).
var modeNames = map[string]int{"default": 0, "one": 1, "one2": 2}

func parse(args []string) (options, string, error) {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	devs := fs.String("devices", "8,32", "comma-separated device counts (one phase pair per count and round)")
	dur := fs.Duration("duration", 5*time.Second, "measured time of one phase")
	warm := fs.Duration("warmup", time.Second, "unmeasured time at the start of each phase")
	rounds := fs.Int("rounds", 3, "rounds (each runs every count against its floor, interleaved)")
	mode := fs.String("batch-mode", "default", "the backend's QR batches: default, one (one batch at a time) or one2 (two at once: codes.Options.VerifyLeaders); "+
		"comma-separated to pair them: each round then runs a Kluis phase per mode and one floor, interleaved")
	profile := fs.String("profile", "", "directory to write each Kluis phase's CPU profile to (<devices>dev-<phase>-<n>.pprof, labelled part=backend/devices), "+
		"and the allocation profiles before and after it (...allocs-before.pprof, ...allocs-after.pprof: pprof -base)")
	pgWaits := fs.Duration("pg-waits", 0, "sample pg_stat_activity this often during each phase and report what the bench database's backends were doing and waiting on "+
		"(their statement, state, wait event; 0: not sampled). The sampler's queries take CPU from the machine (not from the figures' processes)")
	dbSet := fs.String("db-set", "", "comma-separated name=value settings of the throw-away database (ALTER DATABASE ... SET, before anything connects; "+
		"the floor's pgbench gets them too), e.g. commit_delay=100,commit_siblings=1")
	answers := fs.String("answer-signature", string(deviceops.AnswerKR2), "the backend's -answer-signature: kr2 (a verify batch's answers share one signature; "+
		"the simulated devices check both forms, as kluisd does) or kr1 (one signature per answer, the backend's default for a fleet not yet upgraded)")
	if err := fs.Parse(args); err != nil {
		return options{}, "", err
	}
	o := options{duration: *dur, warmup: *warm, rounds: *rounds, modes: strings.Split(*mode, ","), profile: *profile, pgWaits: *pgWaits}
	var err error
	if o.answers, err = deviceops.ParseAnswerForm(*answers); err != nil {
		return options{}, "", fmt.Errorf("verify: -answer-signature: %w", err)
	}
	for _, m := range o.modes {
		if _, ok := modeNames[m]; !ok {
			return options{}, "", fmt.Errorf("verify: -batch-mode: %q is not default, one or one2", m)
		}
	}
	if len(o.modes) != len(slices.Compact(slices.Sorted(slices.Values(o.modes)))) {
		return options{}, "", fmt.Errorf("verify: -batch-mode %q names a mode twice", *mode)
	}
	if o.devices, err = bench.ParseCounts(*devs, 1000); err != nil {
		return options{}, "", fmt.Errorf("verify: -devices: %w", err)
	}
	if o.rounds < 1 || o.duration < time.Second || o.warmup < 0 {
		return options{}, "", errors.New("verify: want -rounds >= 1, -duration >= 1s, -warmup >= 0")
	}
	cmd := fmt.Sprintf("go run ./cmd/kluis-bench verify -devices %s -duration %s -warmup %s -rounds %d",
		*devs, o.duration, o.warmup, o.rounds)
	if *mode != "default" {
		cmd += " -batch-mode " + *mode
	}
	if o.pgWaits > 0 {
		cmd += " -pg-waits " + o.pgWaits.String()
	}
	if o.answers != deviceops.AnswerKR2 {
		cmd += " -answer-signature " + string(o.answers)
	}
	if *dbSet != "" {
		for _, kv := range strings.Split(*dbSet, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || !settingName.MatchString(k) || v == "" {
				return options{}, "", fmt.Errorf("verify: -db-set: %q is not name=value", kv)
			}
			o.dbSet = append(o.dbSet, [2]string{k, v})
		}
		cmd += " -db-set " + *dbSet
	}
	return o, cmd, nil
}

// Run measures; see the package doc.
func Run(ctx context.Context, env bench.Env, args []string) (bench.Report, error) {
	o, cmd, err := parse(args)
	if err != nil {
		return bench.Report{}, err
	}
	if _, err := exec.LookPath("pgbench"); err != nil {
		return bench.Report{}, fmt.Errorf("verify: pgbench is needed for the floor (apt-get install postgresql-client): %w", err)
	}
	if env.Out == nil {
		env.Out = io.Discard
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return bench.Report{}, fmt.Errorf("verify: -profile: %w", err)
		}
	}
	maxDev := 0
	for _, n := range o.devices {
		maxDev = max(maxDev, n)
	}
	dbURL, drop, err := bench.TempDatabase(ctx, env.AdminURL, "verify")
	if err != nil {
		return bench.Report{}, err
	}
	defer drop()
	if err := setDatabase(ctx, env.AdminURL, dbURL, o.dbSet); err != nil {
		return bench.Report{}, err
	}

	r, err := start(ctx, env, dbURL, maxDev, o.answers)
	if err != nil {
		return bench.Report{}, err
	}
	defer r.stop()

	rep := bench.Report{Name: "verify", Command: cmd, Params: map[string]any{
		"devices": o.devices, "duration": o.duration.String(), "warmup": o.warmup.String(), "rounds": o.rounds,
		"broker": "embedded", "claim": "QR token, single use", "batch_mode": strings.Join(o.modes, ",")}}
	for _, kv := range o.dbSet {
		rep.Params["db_set."+kv[0]] = kv[1]
	}
	// The phases of a round: a Kluis phase per batch mode ("kluis" with
	// one mode, "kluis:<mode>" with several) and the floor.
	var phases []string
	for _, m := range o.modes {
		phases = append(phases, kluisPhaseName(o.modes, m))
	}
	phases = append(phases, "floor")
	rates := map[string][]float64{} // by "<devices>/<phase>"
	for round := 0; round < o.rounds; round++ {
		for i := range o.devices {
			n := o.devices[i]
			if round%2 == 1 { // alternate the order of the counts...
				n = o.devices[len(o.devices)-1-i]
			}
			// ...and rotate the phases' order, reversed every other
			// round (with three phases, so that each follows each).
			k := (round + i) % len(phases)
			order := append(slices.Clone(phases[k:]), phases[:k]...)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, what := range order {
				var rate float64
				var err error
				if what == "floor" {
					rate, err = r.floorPhase(ctx, n, o)
				} else {
					m := strings.TrimPrefix(what, "kluis:")
					if what == "kluis" { // the only mode
						m = o.modes[0]
					}
					r.leaders.Store(int32(modeNames[m]))
					rate, err = r.kluisPhase(ctx, n, o, what)
				}
				if err != nil {
					return bench.Report{}, fmt.Errorf("verify: round %d, %d devices, %s: %w", round+1, n, what, err)
				}
				rates[fmt.Sprintf("%d/%s", n, what)] = append(rates[fmt.Sprintf("%d/%s", n, what)], rate)
				fmt.Fprintf(env.Out, "verify: round %d, %2d devices, %-13s %7.0f/s\n", round+1, n, what, rate)
			}
		}
	}
	for _, n := range o.devices {
		floor := rates[fmt.Sprintf("%d/floor", n)]
		for _, m := range o.modes {
			what := kluisPhaseName(o.modes, m)
			kluis := rates[fmt.Sprintf("%d/%s", n, what)]
			var ratios []string
			for i := range kluis {
				ratios = append(ratios, fmt.Sprintf("%.2f", kluis[i]/floor[i]))
			}
			name := fmt.Sprintf("verifications/s, %d devices", n)
			if len(o.modes) > 1 {
				name += ", batch mode " + m
			}
			rep.Figures = append(rep.Figures, bench.Figure{
				Name: name, Unit: "1/s",
				Value: bench.Median(kluis), Floor: bench.Median(floor), Goal: Goal,
				Notes: fmt.Sprintf("median of %d rounds; per-round ratios %s; floor: pgbench -c %d, claim transaction", o.rounds, strings.Join(ratios, " "), n)})
		}
	}
	for _, n := range o.devices {
		for _, m := range o.modes {
			what := kluisPhaseName(o.modes, m)
			if c := r.costNote(n, what); c != "" {
				rep.Notes = append(rep.Notes, c)
			}
			if c := r.latencyNote(n, what); c != "" {
				rep.Notes = append(rep.Notes, c)
			}
		}
		for _, what := range phases {
			k := fmt.Sprintf("%d devices, %s", n, phaseTitle(what))
			if what == "floor" {
				k = fmt.Sprintf("%d clients, the floor (pgbench)", n)
			}
			if c := waitsNote(k, r.waitSamples[fmt.Sprintf("%d/%s", n, what)], r.waits[fmt.Sprintf("%d/%s", n, what)], r.wal[fmt.Sprintf("%d/%s", n, what)]); c != "" {
				rep.Notes = append(rep.Notes, c)
			}
		}
	}
	note, err := r.checkAudit(ctx)
	if err != nil {
		return bench.Report{}, err
	}
	rep.Notes = append(rep.Notes, note)
	return rep, nil
}

// settingName is what -db-set accepts as a setting's name.
var settingName = regexp.MustCompile(`^[a-z_][a-z0-9_.]*$`)

// setDatabase gives the throw-away database at dbURL the settings (ALTER
// DATABASE ... SET), which every session opened afterwards takes.
func setDatabase(ctx context.Context, adminURL, dbURL string, set [][2]string) error {
	if len(set) == 0 {
		return nil
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		return fmt.Errorf("verify: -db-set: %w", err)
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("verify: -db-set: %w", err)
	}
	defer conn.Close(context.Background())
	db := pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
	for _, kv := range set {
		// The value as a literal: ALTER DATABASE takes no parameters.
		lit := "'" + strings.ReplaceAll(kv[1], "'", "''") + "'"
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+db+" SET "+kv[0]+" = "+lit); err != nil {
			return fmt.Errorf("verify: -db-set %s: %w", kv[0], err)
		}
	}
	return nil
}

// kluisPhaseName names the Kluis phase of batch mode m: "kluis" when it is
// the only mode, else "kluis:<mode>".
func kluisPhaseName(modes []string, m string) string {
	if len(modes) == 1 {
		return "kluis"
	}
	return "kluis:" + m
}

// cost is the CPU time spent on the claims of one kind of phase.
type cost struct {
	client, server time.Duration // the bench process (Kluis) or pgbench; the database's backends
	ops            int64
	wall           time.Duration            // the phases' elapsed time over which client and server were taken
	m              backendMetrics           // Kluis: what the backend's batches did
	parts          map[string]time.Duration // Kluis: the process's CPU by part, sampled (see sampleParts)
	rtt            []time.Duration          // Kluis: each verification's round trip at the kiosk
	sampler        time.Duration            // Kluis: the PostgreSQL CPU sampler's own thread, left out of client
	heap           heapCounts               // Kluis: the process's heap allocations and collections
}

// heapCounts are the Go runtime's cumulative heap allocations (objects
// and bytes) and completed collections (runtime/metrics).
type heapCounts struct{ objects, bytes, gcs uint64 }

func readHeapCounts() heapCounts {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	var v [3]uint64
	for i := range s {
		if s[i].Value.Kind() == metrics.KindUint64 {
			v[i] = s[i].Value.Uint64()
		}
	}
	return heapCounts{v[0], v[1], v[2]}
}

func (r *rig) cost(n int, what string, client, server, wall time.Duration, ops int64) {
	k := fmt.Sprintf("%d/%s", n, what)
	c := r.costs[k]
	if c == nil {
		c = &cost{}
		r.costs[k] = c
	}
	c.client += client
	c.server += server
	c.wall += wall
	c.ops += ops
}

// coresNote says how many cores each side kept busy on average over its
// phases (CPU time over elapsed time, the process's less its sampler, as
// in the CPU per claim). A closed loop's rate is the cores it keeps busy
// over its CPU per claim, so the ratio to the floor is (Kluis's cores /
// the floor's) × (the floor's CPU per claim / Kluis's): see "Eleventh
// pass" in docs/performance.md.
func coresNote(k, f *cost) string {
	if k.wall <= 0 || f.wall <= 0 || k.ops == 0 || f.ops == 0 {
		return ""
	}
	cores := func(d, wall time.Duration) float64 { return d.Seconds() / wall.Seconds() }
	kc, fc := cores(k.client+k.server, k.wall), cores(f.client+f.server, f.wall)
	perK := float64(k.client+k.server) / float64(k.ops)
	perF := float64(f.client+f.server) / float64(f.ops)
	return fmt.Sprintf("; cores kept busy: Kluis %.2f (the process %.2f + PostgreSQL %.2f), floor %.2f (pgbench %.2f + PostgreSQL %.2f): "+
		"so the ratio is about %.2f (cores) × %.2f (the floor's CPU per claim over Kluis's)",
		kc, cores(k.client, k.wall), cores(k.server, k.wall), fc, cores(f.client, f.wall), cores(f.server, f.wall), kc/fc, perF/perK)
}

// costNote says what one claim cost in CPU time on each side.
func (r *rig) costNote(n int, what string) string {
	k, f := r.costs[fmt.Sprintf("%d/%s", n, what)], r.costs[fmt.Sprintf("%d/floor", n)]
	if k == nil || f == nil || k.ops == 0 || f.ops == 0 {
		return ""
	}
	per := func(d time.Duration, ops int64) string {
		return fmt.Sprintf("%.0f µs", float64(d.Microseconds())/float64(ops))
	}
	batch := ""
	if k.m.batches > 0 {
		batch = fmt.Sprintf("; %.1f verifications per transaction (kluis_codes_verify_batched_total / kluis_codes_verify_batches_total)", k.m.batched/k.m.batches)
	}
	if k.m.sigs > 0 {
		batch += fmt.Sprintf("; %.2f answers per signature (kluis_device_answers_signed_total / kluis_device_answer_signatures_total, -answer-signature %s)",
			k.m.signed/k.m.sigs, r.answers)
	}
	heap := ""
	if k.heap.objects > 0 {
		heap = fmt.Sprintf("; the process allocated %.0f objects (%.1f KB) per claim, %d collections in the phases",
			float64(k.heap.objects)/float64(k.ops), float64(k.heap.bytes)/1000/float64(k.ops), k.heap.gcs)
	}
	split := ""
	if len(k.parts) > 0 {
		split = fmt.Sprintf(" (sampled: the backend and its broker %s, the simulated devices %s, the runtime and the rest %s)",
			per(k.parts[partBackend], k.ops), per(k.parts[partDevices], k.ops), per(k.parts[""], k.ops))
	}
	return fmt.Sprintf("%d devices, CPU per claim: %s %s in kluis-bench's process (less its PostgreSQL CPU sampler's thread, %s)%s + %s in PostgreSQL%s; floor %s in pgbench + %s in PostgreSQL%s%s",
		n, phaseTitle(what), per(k.client, k.ops), per(k.sampler, k.ops), split, per(k.server, k.ops), heap, per(f.client, f.ops), per(f.server, f.ops), batch, coresNote(k, f))
}

// latencyNote says where a verification's time went at the kiosk: its
// round trip, the wait for a batch and the batch's transaction (means
// from the backend's histograms), and the rest (MQTT both ways,
// devicelink, the token's signature check).
func (r *rig) latencyNote(n int, what string) string {
	k := r.costs[fmt.Sprintf("%d/%s", n, what)]
	if k == nil || len(k.rtt) == 0 || k.m.waits == 0 || k.m.batches == 0 {
		return ""
	}
	rtt := slices.Clone(k.rtt)
	slices.Sort(rtt)
	var sum time.Duration
	for _, d := range rtt {
		sum += d
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
	mean := sum / time.Duration(len(rtt))
	wait := time.Duration(k.m.waitSum / k.m.waits * float64(time.Second))
	took := time.Duration(k.m.batchSum / k.m.batches * float64(time.Second))
	var stages []string
	for i, st := range batchStages {
		if k.m.stageCount[i] > 0 {
			stages = append(stages, fmt.Sprintf("%s %.3f ms", st, k.m.stageSum[i]/k.m.stageCount[i]*1000))
		}
	}
	split := ""
	if len(stages) > 0 {
		split = " (" + strings.Join(stages, ", ") + ": kluis_codes_verify_batch_stage_seconds, mean per batch)"
	}
	return fmt.Sprintf("%d devices, %s: a verification's round trip at the kiosk (verify/req published to verify/res received): mean %s, p50 %s, p99 %s; "+
		"of the mean, waiting for a batch's transaction to begin %s (mean per attempt) and a batch's transaction (connection, its round trips, commit) %s (mean per batch)%s "+
		"(kluis_codes_verify_batch_wait_seconds; kluis_codes_verify_batch_seconds), the rest (MQTT both ways, devicelink, the token's signature) %s",
		n, phaseTitle(what), ms(mean), ms(rtt[len(rtt)/2]), ms(rtt[len(rtt)*99/100]), ms(wait), ms(took), split, ms(mean-wait-took))
}

// phaseTitle is a Kluis phase's name in the notes: "Kluis", or "Kluis
// (batch mode <mode>)".
func phaseTitle(what string) string {
	if m, ok := strings.CutPrefix(what, "kluis:"); ok {
		return "Kluis (batch mode " + m + ")"
	}
	return "Kluis"
}

// rig is the running backend, its devices and the floor's script.
type rig struct {
	env         bench.Env
	dbURL       string
	pool        *pgxpool.Pool
	keys        codes.Keys
	api         string
	token       string
	devices     []*device
	script      string
	claims      atomic.Int64 // verifications answered ok
	dbName      string
	best        float64                   // the best Kluis rate so far
	costs       map[string]*cost          // by "<devices>/<phase>" (kluisPhaseName or floor)
	waits       map[string]map[string]int // -pg-waits: backends seen in each state, by "<devices>/<phase>"
	waitSamples map[string]int            // -pg-waits: samples taken, by "<devices>/<phase>"
	wal         map[string]walCounts      // -pg-waits: WAL flushes and commits, by "<devices>/<phase>"
	leaders     atomic.Int32              // the backend's batches at once (0: its default), set before each Kluis phase
	floorN      int64                     // floor codes created so far
	phases      int                       // Kluis phases run so far (-profile's file names)
	stopSrv     func() error
	tmp         string
	answers     deviceops.AnswerForm // the backend's -answer-signature
}

func start(ctx context.Context, env bench.Env, dbURL string, nDev int, answers deviceops.AnswerForm) (_ *rig, err error) {
	keys, err := codes.GenerateKeys()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "kluis-bench-verify-")
	if err != nil {
		return nil, err
	}
	r := &rig{env: env, dbURL: dbURL, keys: keys, tmp: tmp, costs: map[string]*cost{}, answers: answers,
		waits: map[string]map[string]int{}, waitSamples: map[string]int{}, wal: map[string]walCounts{}}
	if u, err := url.Parse(dbURL); err == nil {
		r.dbName = strings.TrimPrefix(u.Path, "/")
	}
	defer func() {
		if err != nil {
			r.stop()
		}
	}()
	var pw [16]byte
	_, _ = rand.Read(pw[:])
	adminPW := fmt.Sprintf("%x", pw)
	// The backend logs at info level as in production, into nothing.
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// The backend's goroutines (its broker's included) carry the label
	// part=backend, the simulated devices' part=devices: the CPU profile
	// of each Kluis phase is split by it (sampleParts).
	var (
		srv  *server.Server
		stop func() error
	)
	pprof.Do(ctx, pprof.Labels(partLabel, partBackend), func(ctx context.Context) {
		srv, stop, err = bench.StartBackend(ctx, server.Options{DatabaseURL: dbURL, Keys: keys,
			HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", SlipDir: filepath.Join(tmp, "slips"),
			AdminPassword: adminPW, Console: io.Discard, Logger: logger,
			// Cheap password hashes: logins are not what is measured here.
			PasswordParams: auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1},
			MQTTParams:     pickupcode.ArgonParams{Time: 1, MemoryKiB: 1024, Threads: 1},
			// Far above the default per-device budgets (docs/performance.md).
			DeviceVerifyBudget: bench.Unthrottled(), DeviceEventBudget: bench.Unthrottled(),
			DeviceAlarmBudget: bench.Unthrottled(), DeviceResultBudget: bench.Unthrottled(),
			// Jobs that would act on the bench's codes (bundles for the
			// devices, giving accepted codes back) stay off.
			CodeSyncEvery: server.Disabled, RearmUnfollowed: server.Disabled, HousekeepEvery: server.Disabled,
			AuditEvery:      server.Disabled,
			AnswerSignature: answers,
			VerifyLeaders:   func() int { return int(r.leaders.Load()) }})
	})
	if err != nil {
		return nil, err
	}
	r.stopSrv = stop
	r.api = "http://" + srv.HTTPAddr()
	if r.pool, err = pgxpool.New(ctx, dbURL); err != nil {
		return nil, err
	}
	sess, err := apiclient.Login(ctx, &http.Client{Timeout: 30 * time.Second}, r.api, server.DefaultAdminUser, adminPW)
	if err != nil {
		return nil, fmt.Errorf("admin %w", err)
	}
	r.token = sess.Token
	if err := r.call(ctx, "POST", "/api/v1/sites", map[string]any{"id": "bench", "name": "Bench"}, nil); err != nil {
		return nil, err
	}
	for i := 0; i < nDev; i++ {
		var d *device
		pprof.Do(ctx, pprof.Labels(partLabel, partDevices), func(ctx context.Context) {
			d, err = r.newDevice(ctx, fmt.Sprintf("bench-%03d", i+1), srv.BrokerAddr(), i)
		})
		if err != nil {
			return nil, err
		}
		r.devices = append(r.devices, d)
	}
	if err := r.prepareFloor(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rig) stop() {
	for _, d := range r.devices {
		d.c.Disconnect(100)
	}
	if r.pool != nil {
		r.pool.Close()
	}
	if r.stopSrv != nil {
		if err := r.stopSrv(); err != nil {
			r.env.Log.Warn("verify: backend stop", "err", err)
		}
	}
	_ = os.RemoveAll(r.tmp)
}

func (r *rig) call(ctx context.Context, method, path string, in, out any) error {
	return apiclient.DoJSON(ctx, &http.Client{Timeout: 30 * time.Second}, method, r.api+path, r.token, in, out)
}

// device is one simulated kiosk.
type device struct {
	id                string
	c                 paho.Client
	documentID        string
	documentKind      string
	compartmentID     int64
	compartmentNumber int
	offlineParams     string
	tokens            []string // unused claims, each a signed QR token

	mu      sync.Mutex
	waiting map[string]chan wire.VerifyResponse
	timeout *time.Timer // a request's 30 s, reused (the device's loop only)
}

// newDevice creates the device over the API with one compartment holding a
// loaded document (whose code gives the compartment's address), gives it
// MQTT credentials and connects it.
func (r *rig) newDevice(ctx context.Context, id, broker string, i int) (*device, error) {
	if err := r.call(ctx, "POST", "/api/v1/devices", map[string]any{"id": id, "site_id": "bench", "kind": "locker",
		"compartments": []map[string]any{{"board": 0, "channel": 1, "size": "M", "height_cm": 100}}}, nil); err != nil {
		return nil, fmt.Errorf("device %s: %w", id, err)
	}
	var doc struct {
		ID string `json:"id"`
	}
	if err := r.call(ctx, "POST", "/api/v1/documents", map[string]any{"kind": "passport",
		"number": fmt.Sprintf("BENCH%06d", i+1), "holder_first_name": "Bench", "holder_last_name": "Holder",
		"holder_birth_date": "1980-01-02", "language": "nl", "site_id": "bench", "no_contact": true}, &doc); err != nil {
		return nil, fmt.Errorf("document for %s: %w", id, err)
	}
	for _, step := range []struct {
		name string
		body any
	}{{"reserve", map[string]string{"device_id": id}}, {"load", nil}} {
		if err := r.call(ctx, "POST", "/api/v1/documents/"+doc.ID+"/"+step.name, step.body, nil); err != nil {
			return nil, fmt.Errorf("%s document for %s: %w", step.name, id, err)
		}
	}
	d := &device{id: id, documentID: doc.ID, waiting: map[string]chan wire.VerifyResponse{}, timeout: time.NewTimer(time.Hour)}
	d.timeout.Stop()
	err := r.pool.QueryRow(ctx, `SELECT document_kind, compartment_id, compartment_number, offline_params
		FROM codes WHERE document_id = $1::uuid AND device_id = $2 LIMIT 1`, doc.ID, id).
		Scan(&d.documentKind, &d.compartmentID, &d.compartmentNumber, &d.offlineParams)
	if err != nil {
		return nil, fmt.Errorf("the loaded document's code on %s: %w", id, err)
	}
	var pw struct {
		Password string `json:"password"`
	}
	if err := r.call(ctx, "POST", "/api/v1/devices/"+id+"/mqtt-password", nil, &pw); err != nil {
		return nil, err
	}
	// The kiosk's client does what kluisd's does (controller/link) and no
	// more: like it, it reads its connection through a buffer
	// (internal/mqttconn; paho reads a packet's header a byte at a time:
	// three read system calls a packet without one); cheaper where that
	// costs the kiosk alone, it runs its answer handler, which never
	// blocks, in paho's router goroutine (ordered) rather than in a
	// goroutine of its own per answer. It subscribes to its answers at
	// kluisd's QoS (wire.Kind.SubscribeQoS: 0, no PUBACK per answer).
	o := paho.NewClientOptions().AddBroker("tcp://" + broker).SetClientID(id).SetUsername(id).SetPassword(pw.Password).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(20 * time.Second).SetOrderMatters(true).
		SetCustomOpenConnectionFn(mqttconn.Open)
	topic, _ := wire.TopicFor(id, wire.KindVerifyRes)
	o.SetOnConnectHandler(func(c paho.Client) {
		c.Subscribe(topic, wire.KindVerifyRes.SubscribeQoS(), d.onResponse)
	})
	d.c = paho.NewClient(o)
	tok := d.c.Connect()
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("device %s: connect: %v", id, tok.Error())
	}
	// The subscription is made in OnConnect; make sure it is in place.
	st := d.c.Subscribe(topic, wire.KindVerifyRes.SubscribeQoS(), d.onResponse)
	if !st.WaitTimeout(30*time.Second) || st.Error() != nil {
		return nil, fmt.Errorf("device %s: subscribe: %v", id, st.Error())
	}
	return d, nil
}

// onResponse runs in paho's router goroutine and never blocks (one
// waiter per request id, its channel buffered). It reads the answer with
// encoding/json alone; kluisd's wire.Decode also checks its shape
// (an answer with an address is not flat: read twice), which a kiosk pays
// and the signature check after the phase makes moot here.
func (d *device) onResponse(_ paho.Client, m paho.Message) {
	var res wire.VerifyResponse
	if err := json.Unmarshal(m.Payload(), &res); err != nil {
		return
	}
	d.mu.Lock()
	ch := d.waiting[res.ID]
	delete(d.waiting, res.ID)
	d.mu.Unlock()
	if ch != nil {
		ch <- res
	}
}

// verify sends one request and waits for its answer; it returns the
// request's id and the answer. Like kluisd (controller/link's request),
// it waits for the answer, not for the broker's PUBACK of the request
// (the PUBACK comes first; waiting for it too woke the kiosk twice);
// a publish that failed is reported when no answer came.
func (d *device) verify(ctx context.Context, token string) (string, wire.VerifyResponse, error) {
	id := wire.NewID(time.Now())
	ch := make(chan wire.VerifyResponse, 1)
	d.mu.Lock()
	d.waiting[id] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.waiting, id)
		d.mu.Unlock()
	}()
	b, err := wire.Encode(&wire.VerifyRequest{ID: id, At: time.Now().UTC(), Method: wire.MethodQR, Token: token})
	if err != nil {
		return id, wire.VerifyResponse{}, err
	}
	topic, _ := wire.TopicFor(d.id, wire.KindVerifyReq)
	tok := d.c.Publish(topic, 1, false, b)
	d.timeout.Reset(30 * time.Second)
	defer d.timeout.Stop()
	select {
	case res := <-ch:
		return id, res, nil
	case <-d.timeout.C:
		if tok.Error() != nil {
			return id, wire.VerifyResponse{}, fmt.Errorf("publish: %w", tok.Error())
		}
		return id, wire.VerifyResponse{}, errors.New("no answer within 30 s")
	case <-ctx.Done():
		return id, wire.VerifyResponse{}, ctx.Err()
	}
}

// answer is one answer a simulated device received, kept for the check
// of its signature after the phase.
type answer struct {
	device, request string
	res             wire.VerifyResponse
	at              time.Time // received
}

// The profile label that tells the process's parts apart.
const (
	partLabel   = "part"
	partBackend = "backend" // the backend and its embedded broker
	partDevices = "devices" // the simulated devices (paho clients)
	partSampler = "sampler" // the bench's PostgreSQL CPU sampler (left out of the process's figure)
)

// sampling is a CPU profile of one Kluis phase, nil when another profile
// is running (kluis-bench -cpuprofile).
type sampling struct{ buf *bytes.Buffer }

func startSampling() sampling {
	buf := &bytes.Buffer{}
	if err := pprof.StartCPUProfile(buf); err != nil {
		return sampling{}
	}
	return sampling{buf: buf}
}

// stop ends the profile and returns the sampled CPU time by part ("" for
// goroutines without the label: the runtime's, the bench's own); nil when
// there was no profile or it cannot be read. With save set, the profile
// itself is written there too.
func (p sampling) stop(save string) map[string]time.Duration {
	if p.buf == nil {
		return nil
	}
	pprof.StopCPUProfile()
	if save != "" {
		_ = os.WriteFile(save, p.buf.Bytes(), 0o644) // a look at the profile, not a figure: best effort
	}
	prof, err := profile.Parse(p.buf)
	if err != nil {
		return nil
	}
	ix := -1
	for i, st := range prof.SampleType {
		if st.Type == "cpu" {
			ix = i
		}
	}
	if ix < 0 {
		return nil
	}
	out := map[string]time.Duration{}
	for _, smp := range prof.Sample {
		part := ""
		if v := smp.Label[partLabel]; len(v) > 0 {
			part = v[0]
		}
		out[part] += time.Duration(smp.Value[ix])
	}
	return out
}

// topUp gives every one of the first n devices at least want unused
// codes: rows in codes like the ones codes.Issue writes (the offline
// verifier is random bytes: online verification never reads it; the
// token's keyed digest as Issue keeps it) and their QR tokens signed with
// the backend's key.
func (r *rig) topUp(ctx context.Context, n, want int) error {
	exp := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	now := time.Now().UTC()
	var rows [][]any
	for _, d := range r.devices[:n] {
		for len(d.tokens) < want {
			id := make([]byte, pickupcode.CodeIDSize)
			pin := make([]byte, 32)
			ver := make([]byte, 32)
			_, _ = rand.Read(id)
			_, _ = rand.Read(pin)
			_, _ = rand.Read(ver)
			id[0] = 0xff // disjoint from the floor's codes (0x00...)
			cid := pickupcode.FormatCodeID(id)
			tok, err := pickupcode.SignToken(r.keys.Signing, pickupcode.Claims{Version: 1, CodeID: cid, DeviceID: d.id, Expires: exp.Unix()})
			if err != nil {
				return err
			}
			rows = append(rows, []any{id, d.documentID, d.documentKind, d.id, d.compartmentID, d.compartmentNumber,
				0, 1, pin, false, ver, d.offlineParams, exp, now, r.keys.TokenDigest(tok)})
			d.tokens = append(d.tokens, tok)
		}
	}
	_, err := r.pool.CopyFrom(ctx, pgx.Identifier{"codes"}, []string{"id", "document_id", "document_kind", "device_id",
		"compartment_id", "compartment_number", "board", "channel", "pin_digest", "needs_dob", "offline_verifier",
		"offline_params", "expires_at", "created_at", "token_digest"}, pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("codes for the devices: %w", err)
	}
	_, err = r.pool.Exec(ctx, "ANALYZE codes")
	return err
}

// backendMetrics is what the backend's verification batches did.
type backendMetrics struct {
	batches, batched float64 // batches (ok and failed) and the attempts in them
	batchSum         float64 // seconds in the batches' transactions (over batches: the mean)
	waits, waitSum   float64 // attempts that waited for a batch and the seconds they waited
	// seconds in each stage of the batches' transactions, and how many
	// batches reached it (kluis_codes_verify_batch_stage_seconds)
	stageSum, stageCount [len(batchStages)]float64
	// answers signed and the signatures made for them
	// (kluis_device_answers_signed_total, kluis_device_answer_signatures_total)
	signed, sigs float64
}

// batchStages are kluis_codes_verify_batch_stage_seconds' stages, in order.
var batchStages = [...]string{"connect", "read", "decide", "write"}

func (m backendMetrics) minus(o backendMetrics) backendMetrics {
	d := backendMetrics{m.batches - o.batches, m.batched - o.batched, m.batchSum - o.batchSum, m.waits - o.waits, m.waitSum - o.waitSum,
		m.stageSum, m.stageCount, m.signed - o.signed, m.sigs - o.sigs}
	for i := range batchStages {
		d.stageSum[i] -= o.stageSum[i]
		d.stageCount[i] -= o.stageCount[i]
	}
	return d
}

func (m *backendMetrics) add(o backendMetrics) {
	m.batches, m.batched, m.batchSum = m.batches+o.batches, m.batched+o.batched, m.batchSum+o.batchSum
	m.waits, m.waitSum = m.waits+o.waits, m.waitSum+o.waitSum
	m.signed, m.sigs = m.signed+o.signed, m.sigs+o.sigs
	for i := range batchStages {
		m.stageSum[i] += o.stageSum[i]
		m.stageCount[i] += o.stageCount[i]
	}
}

// batchMetrics reads the backend's verification batches from its
// /metrics; zeros when it cannot.
func (r *rig) batchMetrics(ctx context.Context) backendMetrics {
	ss, err := daemonclient.Scrape(ctx, nil, r.api+"/metrics")
	if err != nil {
		r.env.Log.Warn("verify: metrics", "err", err)
		return backendMetrics{}
	}
	var out backendMetrics
	for _, s := range ss {
		switch s.Name {
		case "kluis_codes_verify_batches_total":
			out.batches += s.Value
		case "kluis_codes_verify_batched_total":
			out.batched += s.Value
		case "kluis_codes_verify_batch_seconds_sum":
			out.batchSum += s.Value
		case "kluis_codes_verify_batch_wait_seconds_count":
			out.waits += s.Value
		case "kluis_codes_verify_batch_wait_seconds_sum":
			out.waitSum += s.Value
		case "kluis_device_answers_signed_total":
			out.signed += s.Value
		case "kluis_device_answer_signatures_total":
			out.sigs += s.Value
		case "kluis_codes_verify_batch_stage_seconds_sum", "kluis_codes_verify_batch_stage_seconds_count":
			for i, st := range batchStages {
				if strings.Contains(s.Labels, `stage="`+st+`"`) {
					if strings.HasSuffix(s.Name, "_sum") {
						out.stageSum[i] += s.Value
					} else {
						out.stageCount[i] += s.Value
					}
				}
			}
		}
	}
	return out
}

// sampleWaits starts -pg-waits' sampler for a phase; the function it
// returns stops it and adds its counts to the phase's. Without -pg-waits
// both do nothing.
func (r *rig) sampleWaits(ctx context.Context, o options, n int, what string) (func(), error) {
	if o.pgWaits <= 0 {
		return func() {}, nil
	}
	w, err := startWaits(ctx, r.env.AdminURL, r.dbName, o.pgWaits)
	if err != nil {
		return nil, err
	}
	return func() {
		samples, counts, wal := w.end()
		k := fmt.Sprintf("%d/%s", n, what)
		r.waitSamples[k] += samples
		r.wal[k] = walCounts{r.wal[k].syncs + wal.syncs, r.wal[k].commits + wal.commits, r.wal[k].bytes + wal.bytes, r.wal[k].took + wal.took}
		if r.waits[k] == nil {
			r.waits[k] = map[string]int{}
		}
		for s, c := range counts {
			r.waits[k][s] += c
		}
	}, nil
}

// kluisPhase runs n devices for warmup+duration and returns the answered
// verifications per second within the measured window.
func (r *rig) kluisPhase(ctx context.Context, n int, o options, what string) (float64, error) {
	// Enough claims for twice the best rate so far (at least 12,000/s),
	// and twice a device's even share of them (the devices are not served
	// evenly): a device that runs out fails the run. 5,000/s with even
	// shares ran out in the first round on the quiet machine of
	// 2026-12-08 (one device answered more than 625 a second).
	want := int((o.warmup+o.duration+2*time.Second).Seconds()*max(12000, 2*r.best)*2)/n + 10
	if err := r.topUp(ctx, n, want); err != nil {
		return 0, err
	}
	endWaits, err := r.sampleWaits(ctx, o, n, what)
	if err != nil {
		return 0, err
	}
	rate, answers, err := r.kluisRun(ctx, n, o, what)
	endWaits()
	if err != nil {
		return 0, err
	}
	// kluisd acts on no answer whose signature does not hold: neither do
	// the simulated devices. They check after the phase, so that the
	// checks (on the kiosks' own CPU in production) are not measured.
	for _, a := range answers {
		if err := wire.VerifyResponseSig(r.keys.Public(), a.device, a.request, &a.res, a.at); err != nil {
			return 0, fmt.Errorf("%s: answer to %s: %w", a.device, a.request, err)
		}
	}
	r.best = max(r.best, rate)
	return rate, nil
}

// kluisRun is kluisPhase's measured part: the rate and every answer.
func (r *rig) kluisRun(ctx context.Context, n int, o options, what string) (float64, []answer, error) {
	m0 := r.batchMetrics(ctx)
	var allocs0 bytes.Buffer // with -profile: the allocation profile before the phase
	if o.profile != "" {
		runtime.GC() // the allocation profile is as of the last collection: make it now
		_ = pprof.Lookup("allocs").WriteTo(&allocs0, 0)
	}
	prof := startSampling()
	cpu0, wall0 := bench.SelfCPU(), time.Now()
	var pg *bench.BackendCPU
	// The sampler's goroutine carries its own label, so that the profile's
	// unlabelled part ("the runtime and the rest") leaves it out, as the
	// process's CPU per claim does.
	pprof.Do(ctx, pprof.Labels(partLabel, partSampler), func(context.Context) { pg = bench.StartBackendCPU(r.dbName) })
	heap0 := readHeapCounts()
	before := r.claims.Load()
	var (
		rttMu   sync.Mutex
		rtt     []time.Duration // the measured window's round trips
		answers []answer        // every answer, its signature checked after the phase
	)
	defer func() {
		server := pg.Stop()
		heap1 := readHeapCounts()
		r.cost(n, what, bench.SelfCPU()-cpu0-pg.Own(), server, time.Since(wall0), r.claims.Load()-before)
		c := r.costs[fmt.Sprintf("%d/%s", n, what)]
		c.sampler += pg.Own()
		c.heap.objects += heap1.objects - heap0.objects
		c.heap.bytes += heap1.bytes - heap0.bytes
		c.heap.gcs += heap1.gcs - heap0.gcs
		save := ""
		if o.profile != "" {
			r.phases++
			save = filepath.Join(o.profile, fmt.Sprintf("%ddev-%s-%d.pprof", n, strings.ReplaceAll(what, ":", "-"), r.phases))
			// The allocation profiles before and after the phase, for
			// go tool pprof -sample_index=alloc_space -base <before> <after>
			// (best effort, like the CPU profile).
			var allocs1 bytes.Buffer
			runtime.GC()
			if pprof.Lookup("allocs").WriteTo(&allocs1, 0) == nil {
				base := strings.TrimSuffix(save, ".pprof")
				_ = os.WriteFile(base+".allocs-before.pprof", allocs0.Bytes(), 0o644)
				_ = os.WriteFile(base+".allocs-after.pprof", allocs1.Bytes(), 0o644)
			}
		}
		parts := prof.stop(save)
		c.m.add(r.batchMetrics(ctx).minus(m0))
		c.rtt = append(c.rtt, rtt...)
		if parts != nil {
			if c.parts == nil {
				c.parts = map[string]time.Duration{}
			}
			for k, v := range parts {
				c.parts[k] += v
			}
		}
	}()
	start := time.Now()
	from, until := start.Add(o.warmup), start.Add(o.warmup+o.duration)
	var counts atomic.Int64
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for _, d := range r.devices[:n] {
		wg.Add(1)
		go pprof.Do(ctx, pprof.Labels(partLabel, partDevices), func(ctx context.Context) {
			defer wg.Done()
			for time.Now().Before(until) {
				if len(d.tokens) == 0 {
					errs <- fmt.Errorf("%s ran out of claims", d.id)
					return
				}
				tok := d.tokens[0]
				d.tokens = d.tokens[1:]
				sent := time.Now()
				req, res, err := d.verify(ctx, tok)
				took := time.Since(sent)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", d.id, err)
					return
				}
				if res.Result != wire.VerifyOK {
					errs <- fmt.Errorf("%s: a fresh claim was answered %q", d.id, res.Result)
					return
				}
				r.claims.Add(1)
				t := time.Now()
				counted := !t.Before(from) && t.Before(until)
				rttMu.Lock()
				if counted {
					rtt = append(rtt, took)
				}
				answers = append(answers, answer{device: d.id, request: req, res: res, at: t})
				rttMu.Unlock()
				if counted {
					counts.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return 0, nil, err
	}
	return float64(counts.Load()) / o.duration.Seconds(), answers, nil
}

// prepareFloor creates the floor's audit table (audit_log's shape and
// indexes, no chain) and its pick sequence, and writes the pgbench script.
func (r *rig) prepareFloor(ctx context.Context) error {
	if _, err := r.pool.Exec(ctx, `CREATE TABLE bench_floor_audit (LIKE audit_log INCLUDING ALL);
		CREATE SEQUENCE bench_floor_audit_seq OWNED BY bench_floor_audit.seq;
		ALTER TABLE bench_floor_audit ALTER seq SET DEFAULT nextval('bench_floor_audit_seq');
		CREATE SEQUENCE bench_floor_pick`); err != nil {
		return fmt.Errorf("floor tables: %w", err)
	}
	d := r.devices[0]
	// pgbench reads ":name" as a variable, even in a literal: the colons
	// are spelt chr(58).
	colon := func(s string) string { return "'" + strings.ReplaceAll(s, ":", "' || chr(58) || '") + "'" }
	details := colon(fmt.Sprintf(`{"device":"%s","method":"qr","reason":"ok","code_id":"AAAAAAAAAAAAAAAAAAAAAA"}`, d.id))
	// One claim: the code with the next number is marked used (exactly one
	// row: the pick sequence hands each number out once), and one audit row
	// like the verification's goes in.
	script := fmt.Sprintf(`BEGIN;
WITH p AS (SELECT nextval('bench_floor_pick') AS n)
UPDATE codes c SET used_at = now() FROM p
  WHERE c.id = decode(lpad(to_hex(p.n), 32, '0'), 'hex') AND c.used_at IS NULL AND c.revoked_at IS NULL;
INSERT INTO bench_floor_audit (at, actor, action, subject, details, prev_hash, hash)
  VALUES (now(), %s, 'code.used', %s, CAST(%s AS json), sha256(CAST('prev' AS bytea)), sha256(CAST('hash' AS bytea)));
END;
`, colon("device:"+d.id), colon("document:"+d.documentID), details)
	r.script = filepath.Join(r.tmp, "claim.sql")
	return os.WriteFile(r.script, []byte(script), 0o644)
}

// floorCodes makes sure codes numbered 1..upTo exist for the floor.
func (r *rig) floorCodes(ctx context.Context, upTo int64) error {
	if upTo <= r.floorN {
		return nil
	}
	d := r.devices[0]
	_, err := r.pool.Exec(ctx, `INSERT INTO codes (id, document_id, document_kind, device_id, compartment_id,
		compartment_number, board, channel, pin_digest, needs_dob, offline_verifier, offline_params, expires_at, created_at)
		SELECT decode(lpad(to_hex(n), 32, '0'), 'hex'), $1::uuid, $2, $3, $4, $5, 0, 1,
			sha256(('floor' || n)::bytea), false, sha256(('ver' || n)::bytea), $6, now() + interval '2 days', now()
		FROM generate_series($7::bigint, $8::bigint) n`,
		d.documentID, d.documentKind, d.id, d.compartmentID, d.compartmentNumber, d.offlineParams, r.floorN+1, upTo)
	if err != nil {
		return fmt.Errorf("floor codes: %w", err)
	}
	r.floorN = upTo
	_, err = r.pool.Exec(ctx, "ANALYZE codes")
	return err
}

var tpsLine = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
var txLine = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)

// floorPhase runs pgbench with n clients for warmup+duration (pgbench's
// own progress excludes nothing, so the warmup is a separate short run)
// and returns its transactions per second.
func (r *rig) floorPhase(ctx context.Context, n int, o options) (float64, error) {
	var before int64
	if err := r.pool.QueryRow(ctx, `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM bench_floor_pick`).Scan(&before); err != nil {
		return 0, err
	}
	if err := r.floorCodes(ctx, before+int64((o.warmup+o.duration+2*time.Second).Seconds()*20000)); err != nil {
		return 0, err
	}
	run := func(d time.Duration) (float64, int64, time.Duration, error) {
		secs := int(d.Round(time.Second) / time.Second)
		if secs < 1 {
			return 0, 0, 0, nil
		}
		cmd := exec.CommandContext(ctx, "pgbench", "-n", "-M", "prepared", "-c", strconv.Itoa(n),
			"-j", strconv.Itoa(min(n, 4)), "-T", strconv.Itoa(secs), "-f", r.script, r.dbURL)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return 0, 0, 0, fmt.Errorf("pgbench: %w\n%s", err, out)
		}
		cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		m, t := tpsLine.FindSubmatch(out), txLine.FindSubmatch(out)
		if t == nil {
			return 0, 0, 0, fmt.Errorf("pgbench: no transaction count in\n%s", out)
		}
		tx, _ := strconv.ParseInt(string(t[1]), 10, 64)
		if m == nil || tx == 0 {
			// pgbench prints no rate without transactions (a short warmup
			// on a busy machine can spend itself connecting).
			return 0, 0, cpu, nil
		}
		tps, _ := strconv.ParseFloat(string(m[1]), 64)
		return tps, tx, cpu, nil
	}
	endWaits, err := r.sampleWaits(ctx, o, n, "floor")
	if err != nil {
		return 0, err
	}
	defer endWaits()
	pg := bench.StartBackendCPU(r.dbName)
	wall0 := time.Now()
	var client time.Duration
	_, wtx, wcpu, err := run(o.warmup)
	if err != nil {
		pg.Stop()
		return 0, err
	}
	tps, tx, cpu, err := run(o.duration)
	client = wcpu + cpu
	// pgbench's -T counts from before its clients connected: on a busy
	// machine n connections can take the whole of a short run (-duration
	// 1s with 32 clients at load 20 and more: 0 transactions). Its rate
	// leaves the connection time out, so a longer run measures the same
	// thing: the run is repeated with twice the time, at most 3 times.
	spent := o.warmup + o.duration
	for d := 2 * o.duration; err == nil && tx == 0 && d <= 8*o.duration; d *= 2 {
		fmt.Fprintf(r.env.Out, "verify: %2d devices, floor: pgbench processed no transaction in %s (connecting took it); again for %s\n", n, d/2, d)
		spent += d
		if err = r.floorCodes(ctx, before+int64((spent+2*time.Second).Seconds()*20000)); err != nil {
			break
		}
		var more time.Duration
		tps, tx, more, err = run(d)
		client += more
	}
	if err == nil && tx == 0 {
		err = errors.New("pgbench: no transaction in the measured run")
	}
	r.cost(n, "floor", client, pg.Stop(), time.Since(wall0), wtx+tx)
	if err != nil {
		return 0, err
	}
	// Every transaction claimed a code of its own.
	var used int64
	if err := r.pool.QueryRow(ctx, `SELECT count(*) FROM codes WHERE id >= decode(lpad(to_hex($1::bigint), 32, '0'), 'hex')
		AND id <= decode(lpad(to_hex($2::bigint), 32, '0'), 'hex') AND used_at IS NOT NULL`, before+1, r.floorN).Scan(&used); err != nil {
		return 0, err
	}
	if used != wtx+tx {
		return 0, fmt.Errorf("floor: %d transactions but %d codes claimed (were there enough floor codes?)", wtx+tx, used)
	}
	return tps, nil
}

// checkAudit verifies the chain through the API (what `kluisctl audit
// verify` does) and counts the claims in it.
func (r *rig) checkAudit(ctx context.Context) (string, error) {
	var v struct {
		OK      bool   `json:"ok"`
		Records int    `json:"records"`
		Reason  string `json:"reason"`
	}
	if err := r.call(ctx, "GET", "/api/v1/audit/verify", nil, &v); err != nil {
		return "", fmt.Errorf("audit verify: %w", err)
	}
	if !v.OK {
		return "", fmt.Errorf("audit chain broken after the run: %s", v.Reason)
	}
	var used int64
	if err := r.pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'code.used' AND actor LIKE 'device:bench-%'`).Scan(&used); err != nil {
		return "", err
	}
	if used != r.claims.Load() {
		return "", fmt.Errorf("audit: %d verifications answered ok but %d code.used records in the chain", r.claims.Load(), used)
	}
	return fmt.Sprintf("audit chain verified after the run (GET /api/v1/audit/verify, as kluisctl audit verify): intact, %d records, every one of the %d claims in it", v.Records, used), nil
}
