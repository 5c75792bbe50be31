package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Config configures Run.
type Config struct {
	// Seed makes the run: the same seed gives the same nights, the same
	// documents, behaviours, faults and moments.
	Seed uint64
	// Nights to play; default 3.
	Nights int
	// Faults are the fault kinds; default AllFaults().
	Faults []Fault
	// FaultsPerNight is how many faults strike each night at least;
	// every kind strikes at least once over the run when Nights *
	// FaultsPerNight >= len(Faults). Default: enough for that.
	FaultsPerNight int
	// DocsPerDevice is the most documents loaded per device each evening
	// (a seeded 1..DocsPerDevice); default 2.
	DocsPerDevice int
	// World configures the installation (BinDir is required).
	World Options
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Stats are the figures of a run.
type Stats struct {
	Nights, Loaded, Pickups, QRPickups, PINPickups, OfflinePickups int
	WrongCodes, LeftOpen, LeftBehind, Forced, Expired, Retrieved   int
	BadFramesHeard, Reissued, DiskFullRefused                      int
	Faults                                                         map[string]int
}

// Violation is a broken invariant.
type Violation struct {
	Night     int
	Invariant string
	Detail    string
}

// Report is the outcome of a run.
type Report struct {
	Seed       uint64
	Broker     string // the world's broker mode (Options.Broker)
	Stats      Stats
	Violations []Violation
	// Errors are faults or steps the gauntlet could not carry out (not
	// violations: the harness could not do its part).
	Errors []string
}

// String prints the figures.
func (r *Report) String() string {
	var b strings.Builder
	s := r.Stats
	fmt.Fprintf(&b, "chaos seed %d, broker %s: %d nights, %d loaded, %d pickups (%d QR, %d PIN, %d offline), %d wrong codes, %d doors left open, %d items left behind, %d forced doors, %d expired, %d retrieved, %d codes reissued at the counter, %d bad frames heard by boards, %d pickups kept shut on a full disk\n",
		r.Seed, r.Broker, s.Nights, s.Loaded, s.Pickups, s.QRPickups, s.PINPickups, s.OfflinePickups, s.WrongCodes, s.LeftOpen, s.LeftBehind, s.Forced, s.Expired, s.Retrieved, s.Reissued, s.BadFramesHeard, s.DiskFullRefused)
	var kinds []string
	for k := range s.Faults {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	b.WriteString("faults:")
	for _, k := range kinds {
		fmt.Fprintf(&b, " %s=%d", k, s.Faults[k])
	}
	fmt.Fprintf(&b, "\nviolations: %d\n", len(r.Violations))
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "  night %d: %s: %s (replay: CHAOS_SEED=%d CHAOS_NIGHTS=%d CHAOS_BROKER=%s)\n", v.Night, v.Invariant, v.Detail, r.Seed, v.Night, r.Broker)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "harness errors: %d\n", len(r.Errors))
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "  %s\n", e)
		}
	}
	return b.String()
}

// Gauntlet is a run in progress.
type Gauntlet struct {
	w      *World
	cfg    Config
	rng    *rand.Rand
	night  int
	docSeq int
	turn   int
	docs   []*Doc
	ledger ledger
	mail   *mailbox
	scan   *journalScan
	stats  Stats
	mu     sync.Mutex
	report Report
	// nightStart is when the current night began.
	nightStart time.Time
	// eventsWait bounds checkEvents' wait for journaled events the
	// backend does not have yet (0: the constant eventsWait);
	// eventsLooked, when set, is called after each look (tests).
	eventsWait   time.Duration
	eventsLooked func()
}

// World returns the installation.
func (g *Gauntlet) World() *World { return g.w }

func (g *Gauntlet) violate(inv, detail string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.report.Violations = append(g.report.Violations, Violation{Night: g.night, Invariant: inv, Detail: detail})
	g.w.Logf("VIOLATION night %d: %s: %s", g.night, inv, detail)
}

func (g *Gauntlet) harnessErr(format string, args ...any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	msg := fmt.Sprintf("night %d: ", g.night) + fmt.Sprintf(format, args...)
	g.report.Errors = append(g.report.Errors, msg)
	g.w.Logf("harness: %s", msg)
}

// Run starts a world and plays the nights. It returns the report; the
// caller fails the test on violations.
func Run(ctx context.Context, t testing.TB, cfg Config) (*Report, error) {
	cfg.defaults()
	if cfg.DocsPerDevice <= 0 {
		cfg.DocsPerDevice = 2
	}
	if cfg.World.Seed == 0 {
		cfg.World.Seed = cfg.Seed
	}
	if cfg.World.Log == nil {
		cfg.World.Log = cfg.Log
	}
	w, err := Start(ctx, t, cfg.World)
	if err != nil {
		return nil, err
	}
	g := &Gauntlet{w: w, cfg: cfg, mail: &mailbox{dir: w.MailDir}, scan: newJournalScan()}
	g.report.Seed, g.report.Broker = cfg.Seed, w.Opts.Broker
	g.stats.Faults = map[string]int{}
	stop := g.scanJournals(ctx)
	defer stop()
	plan := cfg.plan()
	for night := 1; night <= cfg.Nights && ctx.Err() == nil; night++ {
		if err := g.playNight(ctx, night, plan[night-1]); err != nil {
			return &g.report, err
		}
	}
	g.report.Stats = g.stats
	return &g.report, nil
}

func (cfg *Config) defaults() {
	if cfg.Nights <= 0 {
		cfg.Nights = 3
	}
	if len(cfg.Faults) == 0 {
		cfg.Faults = AllFaults()
	}
	if cfg.FaultsPerNight <= 0 {
		cfg.FaultsPerNight = (len(cfg.Faults) + cfg.Nights - 1) / cfg.Nights
	}
}

// plan is the faults of each night, in the order in which kinds strike:
// seeded, every kind once before any kind twice.
func (cfg Config) plan() [][]Fault {
	order := rand.New(rand.NewPCG(cfg.Seed, 0)).Perm(len(cfg.Faults))
	out := make([][]Fault, cfg.Nights)
	next := 0
	for night := range out {
		for i := 0; i < cfg.FaultsPerNight; i++ {
			out[night] = append(out[night], cfg.Faults[order[next%len(order)]])
			next++
		}
	}
	return out
}

// FaultPlan names the fault kinds of each night of cfg, as Run plays
// them (defaults filled in): two configurations with the same seed, fleet
// and plan for a night play the same night, whatever the broker.
func FaultPlan(cfg Config) [][]string {
	cfg.defaults()
	var out [][]string
	for _, night := range cfg.plan() {
		var kinds []string
		for _, f := range night {
			kinds = append(kinds, f.Kind())
		}
		out = append(out, kinds)
	}
	return out
}

// scanJournals reads every node's journal every 200 ms until stopped.
func (g *Gauntlet) scanJournals(ctx context.Context) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			for _, n := range g.w.Nodes {
				g.scan.read(n.Spec.ID, n.JournalDir)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); <-done }
}

// step is one thing that happens in a night: a pickup of a document,
// possibly with a fault around it.
type step struct {
	doc   *Doc
	fault Fault
	node  *Node // the fault's target when doc is nil
}

// playNight plays one night and checks the invariants.
func (g *Gauntlet) playNight(ctx context.Context, night int, faults []Fault) error {
	g.night = night
	g.nightStart = time.Now()
	g.rng = rand.New(rand.NewPCG(g.cfg.Seed, uint64(night)))
	names := make([]string, len(faults))
	for i, f := range faults {
		names[i] = f.Kind()
	}
	g.w.Logf("=== night %d (seed %d): faults %s", night, g.cfg.Seed, strings.Join(names, ", "))

	// Evening: staff load documents, about one per device, and one that
	// nobody will collect (it expires and staff take it back).
	var fresh []*Doc
	nodes := g.w.Nodes
	expiring := g.rng.IntN(len(nodes))
	for i, n := range nodes {
		k := 1 + g.rng.IntN(g.cfg.DocsPerDevice)
		if g.free(n) < k+1 {
			k = g.free(n) - 1
		}
		for j := 0; j < k; j++ {
			kind := []string{"eid", "driving_licence", "passport"}[g.rng.IntN(3)]
			if i == expiring && j == 0 {
				kind = g.w.Opts.ExpiryKind
			}
			d, err := g.register(ctx, kind, n.Spec.ID)
			if err != nil {
				return err
			}
			if g.load(ctx, d) {
				fresh = append(fresh, d)
			}
		}
	}
	// Codes arrive by e-mail; the offline caches get them by code sync.
	var waiting []*Doc
	for _, d := range g.awaiting() {
		if d.Failed > 0 && !g.reissue(ctx, d) {
			continue
		}
		if d.QR == "" && !g.readCodes(ctx, d, 20*time.Second) {
			continue // not told (yet): the checks say whether that is allowed
		}
		if d.Kind == g.w.Opts.ExpiryKind {
			continue // nobody comes for it
		}
		waiting = append(waiting, d)
	}
	g.sleep(ctx, 2500*time.Millisecond) // code sync to the devices' offline caches
	g.rng.Shuffle(len(waiting), func(i, j int) { waiting[i], waiting[j] = waiting[j], waiting[i] })

	// Night: each fault at a seeded step.
	steps := make([]step, len(waiting))
	for i, d := range waiting {
		steps[i] = step{doc: d}
	}
	for _, f := range faults {
		g.place(&steps, f)
	}
	for _, st := range steps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if st.fault != nil {
			g.strike(ctx, st)
			continue
		}
		d := st.doc
		// Behaviours take turns (from a seeded start), so that a short run
		// sees each of them; a wrong code comes first every other time.
		g.turn++
		if g.turn%2 == 0 {
			g.wrongCode(ctx, d)
		}
		behaviour := []int{leaveOpen, leaveBehind, takeAndClose, takeAndClose}[(g.turn+int(g.cfg.Seed%4))%4]
		g.collect(ctx, d, g.rng.IntN(2) == 0, behaviour, nil)
		if g.rng.IntN(5) == 0 {
			g.forceEmpty(ctx)
		}
	}
	g.forceEmpty(ctx)

	// Morning: expired documents go back to the counter.
	for _, d := range g.docs {
		if d.Placed && !d.Taken && !d.Retrieved && d.Kind == g.w.Opts.ExpiryKind {
			if g.waitExpired(ctx, d) {
				g.stats.Expired++
				g.retrieve(ctx, d)
			}
		}
	}
	g.settle(ctx)
	g.check(ctx)
	g.stats.Nights++
	g.report.Stats = g.stats
	g.w.Logf("=== night %d done: %d pickups so far, %d violations", night, g.stats.Pickups, len(g.report.Violations))
	return nil
}

// place puts fault f at a seeded step: around the pickup of a document
// on a device it applies to, or (mail faults, and when no document fits)
// as a step of its own.
func (g *Gauntlet) place(steps *[]step, f Fault) {
	var fits []int
	for i, st := range *steps {
		if st.fault == nil && st.doc != nil && f.Applies(g.w.Node(st.doc.Device)) {
			fits = append(fits, i)
		}
	}
	normal := 0
	for _, st := range *steps {
		if st.fault == nil && st.doc != nil {
			normal++
		}
	}
	// One pickup of the night stays without a fault.
	if _, isMail := f.(mailGateway); !isMail && len(fits) > 0 && normal > 1 {
		i := fits[g.rng.IntN(len(fits))]
		(*steps)[i].fault = f
		return
	}
	var nodes []*Node
	for _, n := range g.w.Nodes {
		if f.Applies(n) && g.free(n) > 0 {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		g.harnessErr("fault %s: no device to strike", f.Kind())
		return
	}
	at := g.rng.IntN(len(*steps) + 1)
	st := step{fault: f, node: nodes[g.rng.IntN(len(nodes))]}
	*steps = append((*steps)[:at], append([]step{st}, (*steps)[at:]...)...)
}

// strike runs a fault's step.
func (g *Gauntlet) strike(ctx context.Context, st step) {
	n := st.node
	if st.doc != nil {
		n = g.w.Node(st.doc.Device)
	}
	if st.doc == nil {
		if _, isMail := st.fault.(mailGateway); !isMail {
			// A fault of its own step: a fresh document is loaded for it.
			d, err := g.register(ctx, "eid", n.Spec.ID)
			if err != nil || !g.load(ctx, d) || !g.readCodes(ctx, d, 20*time.Second) {
				g.harnessErr("fault %s: no document to collect on %s", st.fault.Kind(), n.Spec.ID)
				return
			}
			g.sleep(ctx, 2500*time.Millisecond)
			st.doc = d
		}
	}
	s := &Strike{G: g, W: g.w, Node: n, Doc: st.doc, Rng: g.rng}
	g.w.Logf("night %d: fault %s on %s", g.night, st.fault.Kind(), n.Spec.ID)
	if err := st.fault.Strike(ctx, s); err != nil {
		g.harnessErr("fault %s on %s: %v", st.fault.Kind(), n.Spec.ID, err)
	}
	g.stats.Faults[st.fault.Kind()]++
}

// free counts the compartments of n without a document of the gauntlet.
func (g *Gauntlet) free(n *Node) int {
	used := 0
	for _, d := range g.docs {
		if d.Device == n.Spec.ID && d.Comp > 0 && d.Placed && !d.Taken && !d.Retrieved {
			used++
		}
	}
	return n.Spec.Compartments() - used
}

// awaiting lists the documents in a compartment that nobody took yet.
func (g *Gauntlet) awaiting() []*Doc {
	var out []*Doc
	for _, d := range g.docs {
		if d.Placed && !d.Taken && !d.Retrieved {
			out = append(out, d)
		}
	}
	return out
}

// forceEmpty forces the door of a seeded empty compartment of a locker.
func (g *Gauntlet) forceEmpty(ctx context.Context) {
	n := g.w.Nodes[g.rng.IntN(len(g.w.Nodes))]
	if n.Spec.Kind != "locker" {
		return
	}
	ch := g.rng.IntN(n.Spec.Channels)
	for _, d := range g.docs {
		if d.Device == n.Spec.ID && d.Comp == ch+1 && d.Placed && !d.Taken && !d.Retrieved {
			return
		}
	}
	g.force(ctx, n, 0, ch)
}

// waitExpired waits for the backend's housekeeping to expire d.
func (g *Gauntlet) waitExpired(ctx context.Context, d *Doc) bool {
	err := waitFor(ctx, g.w.Opts.ExpiryPeriod+30*time.Second, d.Number+" expired", func(ctx context.Context) (bool, string, error) {
		bd, err := g.backendDoc(ctx, d)
		return err == nil && bd.State == "expired", bd.State, err
	})
	if err != nil {
		g.harnessErr("%v", err)
	}
	return err == nil
}

// settle heals what may still be broken and waits until every kluisd is
// connected with nothing left to send.
func (g *Gauntlet) settle(ctx context.Context) {
	g.w.Mail.SetMode(GatewayOK, 0)
	g.w.SMS.SetMode(GatewayOK, 0)
	for i, b := range g.w.Backends {
		if !b.Proc.Running() {
			if err := g.w.StartBackend(ctx, i); err != nil {
				g.harnessErr("%v", err)
			}
		}
	}
	for _, n := range g.w.Nodes {
		n.Proxy.Restore()
		if !n.Proc.Running() {
			_ = n.Proc.Start()
		}
	}
	for _, n := range g.w.Nodes {
		if err := g.w.WaitBacklogEmpty(ctx, n, 60*time.Second); err != nil {
			g.violate("event delivered", err.Error())
		}
	}
	// Every event the backend acknowledged has been applied; give the
	// notifications a moment.
	g.sleep(ctx, time.Second)
	for _, n := range g.w.Nodes {
		g.scan.read(n.Spec.ID, n.JournalDir)
	}
}
