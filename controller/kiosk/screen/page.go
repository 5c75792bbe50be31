package screen

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"kluis/controller/config"
	"kluis/controller/engine"
	"kluis/controller/kiosk/screen/pagetmpl"
	"kluis/controller/wire"
	"kluis/hardware"
)

//go:embed assets
var assets embed.FS

// escapedTemplates are assets/*.html escaped by html/template at build
// time (pagetmpl's doc says why; a test keeps the file up to date).
//
//go:generate go run ./internal/genescaped
//go:embed escaped.tmpl
var escapedTemplates string

// Source is what the screen shows: the engine.
type Source interface {
	// Screen returns what the kiosk shows now.
	Screen() engine.Screen
	// Diagnostics reads the hardware for the technician's screen.
	Diagnostics(ctx context.Context) engine.Diagnostics
}

// Options configure New.
type Options struct {
	Source Source
	Config *config.Config
	// Catalog; default NewCatalog(). Unused with Assets (they hold theirs).
	Catalog *Catalog
	// Assets prepared for Config (Prepare); default: prepared by New.
	Assets *Assets
	// Clock; default time.Now.
	Clock  func() time.Time
	Logger *slog.Logger
	// OnStaffActivity, when set, is called when the technician's
	// diagnostics are asked for (a staff action, for the idle logout).
	OnStaffActivity func()
}

// Screen serves the kiosk page.
type Screen struct {
	o   Options
	log *slog.Logger
	*Assets
}

// Assets are the parts of the screen that depend on the configuration
// alone: the catalogue, the parsed templates, the static files, the
// layout, the drawing in each language and the build ID. kluisd prepares
// them while its driver halts and its journal opens (Prepare), so that
// they are not on the start's path after those.
type Assets struct {
	cat     *Catalog
	tmpl    *pagetmpl.Set
	static  http.Handler
	build   string
	layout  *config.Layout
	drawing map[string]pagetmpl.HTML // by language
	// place is the line naming the machine, by language.
	place map[string]string
	// hours are the counter's opening hours, by language (hoursLines).
	hours map[string][]string
	// week and closed are kiosk.counter_hours and kiosk.counter_closed,
	// for the closed dates' note (closedNote, at each page).
	week   [][]config.Span
	closed []time.Time
}

// Prepare parses the templates and draws the device of cfg; cat is the
// catalogue (nil: NewCatalog()).
func Prepare(cfg *config.Config, cat *Catalog) (*Assets, error) {
	if cfg == nil {
		return nil, errors.New("screen: config is required")
	}
	if cat == nil {
		c, err := NewCatalog()
		if err != nil {
			return nil, err
		}
		cat = c
	}
	a := &Assets{cat: cat, drawing: map[string]pagetmpl.HTML{}, place: map[string]string{}, hours: map[string][]string{}}
	t, err := parseTemplates()
	if err != nil {
		return nil, fmt.Errorf("screen: %w", err)
	}
	a.tmpl = t
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	a.static = http.StripPrefix("/screen/static/", http.FileServerFS(sub))
	a.layout, err = cfg.ResolvedLayout()
	if err != nil {
		return nil, err
	}
	week, err := cfg.Kiosk.OpeningHours()
	if err != nil {
		return nil, err
	}
	if a.closed, err = cfg.Kiosk.ClosedDates(); err != nil {
		return nil, err
	}
	a.week = week
	for _, l := range Langs() {
		if a.hours[l], err = hoursLines(cat, week, l); err != nil {
			return nil, err
		}
		place, err := cat.Text("place", l)
		if err != nil {
			return nil, err
		}
		a.place[l] = strings.ReplaceAll(place, "{name}", cfg.Kiosk.DisplayName)
		here, err := cat.Text("drawing.here", l)
		if err != nil {
			return nil, err
		}
		if a.layout != nil {
			a.drawing[l] = drawLocker(a.layout, here)
			continue
		}
		hatch, err := cat.Text("drawing.hatch", l)
		if err != nil {
			return nil, err
		}
		a.drawing[l] = drawAutomaton(here, hatch)
	}
	a.build, err = buildID(cat)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// New makes the screen: with o.Assets (prepared for o.Config) as they
// are, else it prepares them.
func New(o Options) (*Screen, error) {
	if o.Source == nil || o.Config == nil {
		return nil, errors.New("screen: source and config are required")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	a := o.Assets
	if a == nil {
		var err error
		if a, err = Prepare(o.Config, o.Catalog); err != nil {
			return nil, err
		}
	}
	o.Catalog = a.cat
	return &Screen{o: o, log: o.Logger.With("part", "screen"), Assets: a}, nil
}

// Build identifies what this kluisd serves: the page reloads itself when
// a restarted kluisd serves another build.
func (s *Screen) Build() string { return s.build }

// buildID hashes the embedded files, the catalogue and the binary's
// version control revision. It runs at every start (its garbage is page
// faults before the kiosk is ready), so it streams the files through one
// small buffer instead of copying each (embed.FS.ReadFile) and formats
// without fmt; what it hashes is what "%s %d\n" (path, size) with the
// file's bytes and "%s=%q\n" (key, texts) wrote.
func buildID(c *Catalog) (string, error) {
	h := sha256.New()
	buf := make([]byte, 0, 4<<10)
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := assets.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return err
		}
		buf = append(append(buf[:0], p...), ' ')
		buf = append(strconv.AppendInt(buf, info.Size(), 10), '\n')
		h.Write(buf)
		_, err = io.CopyBuffer(h, f, buf[:cap(buf)])
		return err
	})
	if err != nil {
		return "", err
	}
	for _, k := range c.Keys() {
		buf = append(append(buf[:0], k...), '=', '[')
		for i, t := range c.texts[k] {
			if i > 0 {
				buf = append(buf, ' ')
			}
			buf = strconv.AppendQuote(buf, t)
		}
		h.Write(append(buf, ']', '\n'))
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, st := range bi.Settings {
			if st.Key == "vcs.revision" || st.Key == "vcs.modified" {
				fmt.Fprintf(h, "%s=%s\n", st.Key, st.Value)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Register mounts the page on mux: GET / (the page), GET
// /screen/static/... (CSS, JavaScript) and GET /screen/tech (the
// technician's diagnostics, an HTML fragment).
func (s *Screen) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", s.page)
	mux.Handle("GET /screen/static/", s.static)
	mux.HandleFunc("GET /screen/tech", s.tech)
}

// csp allows nothing but this kluisd: no inline script or style.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (s *Screen) lang(r *http.Request) string {
	l := r.URL.Query().Get("lang")
	if engine.ValidLang(l) {
		return l
	}
	return s.o.Config.Kiosk.DefaultLang
}

// view is one screen of the page for the engine state State.
type view struct {
	State, Title, Next string
	// Tone picks the icon: ok, wait, warn or stop.
	Tone    string
	Drawing bool
	Retry   bool
	// Act is the section's own button: "again" (the way the refused code
	// was given: the PIN keypad after a PIN, the start screen to scan
	// after a QR code), "staff-next", "staff-login", "tech", "staff-menu"
	// or "".
	Act, ActLabel string
	// Alt is a second, distinct way on, shown only after a refused QR
	// code: "pin" (type the PIN instead) or "". A section with its own
	// way on (Act "again") hides the footer's "Start again", which would
	// do the same.
	Alt, AltLabel string
	// Hatch is the catalogue key of the message an automaton shows
	// instead of the engine's (people see a hatch, not compartments).
	Hatch string
	// Hours: the message sends the citizen to the counter (or the city
	// hall); the counter's opening hours follow it when configured.
	Hours bool
}

// views are the engine states that have a section of their own (idle,
// staff and need_birth_date are the start, staff menu and date-of-birth
// screens).
var views = []view{
	{State: engine.StateVerifying, Title: "title.wait", Tone: "wait"},
	{State: engine.StatePresenting, Title: "title.wait", Tone: "wait", Drawing: true},
	{State: engine.StateOpen, Title: "title.open", Tone: "ok", Drawing: true, Hatch: "hatch.open"},
	{State: engine.StateDone, Title: "title.done", Tone: "ok"},
	{State: engine.StateNotCollected, Title: "title.not_collected", Next: "next.not_collected", Tone: "warn", Drawing: true},
	// The door did not open and the code was not used: the message says
	// to try again, so the screen offers it (to the start screen: scan
	// again or type the PIN).
	{State: engine.StateNotOpened, Title: "title.problem", Next: "next.closed", Tone: "stop", Drawing: true, Hours: true, Act: "again", ActLabel: "again"},
	{State: engine.StateWrongCode, Title: "title.wrong_code", Next: "next.wrong_code", Tone: "warn", Act: "again", ActLabel: "again", Alt: "pin", AltLabel: "start.pin"},
	{State: engine.StateExpired, Title: "title.expired", Next: "next.expired", Tone: "stop", Hours: true},
	{State: engine.StateAlreadyCollected, Title: "title.already_collected", Next: "next.already_collected", Tone: "warn"},
	{State: engine.StatePending, Title: "title.pending", Tone: "wait"},
	{State: engine.StateLockedOut, Title: "title.locked_out", Next: "next.closed", Tone: "stop", Retry: true, Hours: true},
	{State: engine.StateOutOfOrder, Title: "title.out_of_order", Next: "next.closed", Tone: "stop", Hours: true},
	// The whole machine (a full disk): its message says to call 1777.
	{State: engine.StateDeviceOutOfOrder, Title: "title.out_of_order", Tone: "stop"},
	{State: engine.StateBusy, Title: "title.wait", Tone: "wait"},
	{State: engine.StateError, Title: "title.problem", Next: "next.closed", Tone: "stop", Hours: true},
	{State: engine.StateStaffDenied, Title: "title.staff_denied", Next: "next.staff.staff_denied", Tone: "warn", Act: "staff-login", ActLabel: "staff.again"},
	// A lock of the device's staff logins: the message says for how long
	// and what to do; trying again at once is no use.
	{State: engine.StateStaffLocked, Title: "title.staff_locked", Tone: "stop"},
	{State: engine.StateStaffLockedToday, Title: "title.staff_locked", Tone: "stop"},
	// The backend bounds document lookups: a session with too many that
	// found nothing is ended (log in again), the device's are paused.
	{State: engine.StateLookupsEnded, Title: "title.lookups_ended", Tone: "stop", Act: "staff-login", ActLabel: "staff.again"},
	{State: engine.StateLookupsPaused, Title: "title.lookups_paused", Tone: "stop", Act: "staff-menu", ActLabel: "staff.back"},
	{State: engine.StateLoading, Title: "title.door_open", Tone: "ok", Drawing: true},
	{State: engine.StateLoaded, Title: "title.loaded", Tone: "ok", Drawing: true, Act: "staff-next", ActLabel: "staff.next"},
	{State: engine.StateLoadEmpty, Title: "title.load_empty", Next: "next.staff.load_empty", Tone: "warn", Drawing: true, Act: "staff-next", ActLabel: "staff.next"},
	{State: engine.StateRetrieving, Title: "title.door_open", Tone: "ok", Drawing: true},
	{State: engine.StateRetrieved, Title: "title.retrieved", Tone: "ok", Drawing: true, Act: "staff-next", ActLabel: "staff.next"},
	{State: engine.StateStillThere, Title: "title.still_there", Next: "next.staff.still_there", Tone: "warn", Drawing: true, Act: "staff-next", ActLabel: "staff.next"},
	{State: engine.StateNotFound, Title: "title.not_found", Next: "next.staff.not_found", Tone: "warn", Act: "staff-next", ActLabel: "staff.next"},
	{State: engine.StateWrongState, Title: "title.wrong_state", Next: "next.staff.wrong_state", Tone: "warn", Act: "staff-next", ActLabel: "staff.next"},
	{State: engine.StateNoCompartment, Title: "title.no_compartment", Tone: "warn", Act: "staff-next", ActLabel: "staff.next"},
	{State: engine.StateTestOpen, Title: "title.test_open", Tone: "ok", Drawing: true, Act: "tech", ActLabel: "tech.title"},
	// The backend refused a technician's test-open: a citizen's document
	// is recorded in it (the item sensor read empty: an alarm is raised).
	{State: engine.StateTestOccupied, Title: "title.test_occupied", Next: "next.staff.test_occupied", Tone: "warn", Drawing: true, Act: "tech", ActLabel: "tech.title"},
	{State: engine.StateLockoutCleared, Title: "title.lockout_cleared", Tone: "ok", Act: "staff-menu", ActLabel: "staff.back"},
	{State: engine.StateLockoutCapped, Title: "title.lockout_capped", Next: "next.staff.lockout_capped", Tone: "warn", Retry: true, Act: "staff-menu", ActLabel: "staff.back"},
}

// leftOpen are the states of a door open for someone: after
// timeouts.door_left_open the page shows "the door is still open" instead
// (the engine raises its door_left_open alarm then; its state stays).
var leftOpen = map[string]bool{engine.StateOpen: true, engine.StateLoading: true, engine.StateRetrieving: true,
	engine.StateTestOpen: true}

// Views returns the engine states that have a section of their own.
func Views() []string {
	out := make([]string, len(views))
	for i, v := range views {
		out[i] = v.State
	}
	return out
}

// page is what the templates see.
type page struct {
	s       *Screen
	Lang    string
	Large   bool
	Build   string
	Kind    string
	Default string
	// Place is the line naming this machine (kiosk.display_name).
	Place string
	// Hours are the counter's opening hours (nil: none configured).
	Hours []string
	// Closed says the counter's closed dates before its next opening and
	// that opening (closedNote), "" when none; FreshUntil is when it may
	// change (Unix ms; 0 without kiosk.counter_closed): the script loads
	// the page again then, at the idle return.
	Closed     string
	FreshUntil int64
	IdleMS     int64
	// LeftOpenMS is timeouts.door_left_open.
	LeftOpenMS int64
	Screen     engine.Screen
	// Show is the id of the section shown first.
	Show       string
	Views      []view
	Langs      []langLink
	Drawing    pagetmpl.HTML
	ShowFig    bool
	RetryUntil int64
	RetryMin   int
	// LastTry is the warning after the second-to-last wrong PIN (one
	// more locks PIN entry for so long), "" when none.
	LastTry string
	// Tech is filled for the technician fragment.
	Tech *techData
}

// langLink is one link of the language switch: Name is the language's
// own name, Short its code as the panel shows it with large text.
type langLink struct {
	Code, Name, Short, Href string
	Current                 bool
}

// T is the catalogue text of key in the page's language (an error, never
// a fallback, when there is none).
func (p *page) T(key string) (string, error) { return p.s.cat.Text(key, p.Lang) }

// TN is T with the placeholders as elements the script can update:
// {n} the compartment, {m} minutes, {s} the staff member.
func (p *page) TN(key string) (pagetmpl.HTML, error) {
	t, err := p.T(key)
	if err != nil {
		return "", err
	}
	esc := pagetmpl.HTMLEscapeString(t)
	r := strings.NewReplacer(
		"{n}", fmt.Sprintf(`<span data-fill="n">%d</span>`, p.Screen.Compartment),
		"{m}", fmt.Sprintf(`<span data-fill="m">%d</span>`, p.RetryMin),
		"{s}", `<span data-fill="s">`+pagetmpl.HTMLEscapeString(p.Screen.Staff)+`</span>`)
	return pagetmpl.HTML(r.Replace(esc)), nil
}

// Tpl is the raw text of key, for data-tpl attributes the script fills.
func (p *page) Tpl(key string) (string, error) { return p.T(key) }

// Msg is the engine's message for state with the current compartment.
func (p *page) Msg(state string) (string, error) {
	t, err := p.s.cat.Text("state."+state, p.Lang)
	if err != nil {
		return "", err
	}
	t = fill(t, p.Screen.Compartment, int(p.s.o.Config.Timeouts.Grace/time.Minute), p.Screen.Staff)
	if strings.Contains(t, "{t}") {
		// When a lock ends: known for the engine's screen (the script
		// shows the engine's message, with its end, when another comes).
		// Unknown, it is said as nothing, with its space.
		if state == p.Screen.State && p.Screen.Until != nil {
			t = strings.ReplaceAll(t, "{t}", engine.UntilText(p.Lang, *p.Screen.Until, p.s.o.Clock().In(time.Local)))
		} else {
			t = strings.ReplaceAll(strings.ReplaceAll(t, " {t}", ""), "{t}", "")
		}
	}
	return t, nil
}

// Fill is a catalogue text with {n} replaced by n.
func (p *page) Fill(key string, n int) (string, error) {
	t, err := p.T(key)
	return fill(t, n, 0, ""), err
}

// firstView is the section the page shows for the engine screen sc at now
// before the script runs (left is timeouts.door_left_open).
func firstView(sc engine.Screen, now time.Time, left time.Duration) string {
	if leftOpen[sc.State] && left > 0 && !now.Before(sc.At.Add(left)) {
		return "s-left_open"
	}
	switch sc.State {
	case engine.StateIdle:
		if sc.Staff != "" {
			return "v-staff-menu"
		}
		return "v-start"
	case engine.StateStaff:
		return "v-staff-menu"
	case engine.StateNeedBirthDate:
		return "v-birth"
	}
	for _, v := range views {
		if v.State == sc.State {
			return "s-" + sc.State
		}
	}
	return "s-" + engine.StateError
}

func (s *Screen) newPage(r *http.Request) *page {
	sc := s.o.Source.Screen()
	p := &page{s: s, Lang: s.lang(r), Large: r.URL.Query().Get("large") == "1", Build: s.build, Kind: s.o.Config.Kind,
		Default: s.o.Config.Kiosk.DefaultLang, IdleMS: s.o.Config.Timeouts.Session.Milliseconds(),
		LeftOpenMS: s.o.Config.Timeouts.DoorLeftOpen.Milliseconds(), Screen: sc, Views: views}
	p.Show = firstView(sc, s.o.Clock(), s.o.Config.Timeouts.DoorLeftOpen)
	p.Place = s.place[p.Lang]
	p.Hours = s.hours[p.Lang]
	if len(s.closed) > 0 {
		note, fresh, err := closedNote(s.cat, s.week, s.closed, p.Lang, s.o.Clock().In(time.Local))
		if err != nil {
			s.log.Error("closed dates", "err", err)
		}
		p.Closed, p.FreshUntil = note, fresh.UnixMilli()
	}
	p.Drawing = s.drawing[p.Lang]
	for _, v := range views {
		if "s-"+v.State == p.Show && v.Drawing && sc.Compartment > 0 {
			p.ShowFig = true
		}
	}
	if p.Show == "s-left_open" && sc.Compartment > 0 {
		p.ShowFig = true
	}
	p.RetryMin = 1
	if sc.State == engine.StateWrongCode && sc.LastTryLockS > 0 {
		p.LastTry = s.lastTry(p.Lang, sc.LastTryLockS)
	}
	if (sc.State == engine.StateLockedOut || sc.State == engine.StateLockoutCapped) && sc.RetryAfterS > 0 {
		until := sc.At.Add(time.Duration(sc.RetryAfterS) * time.Second)
		p.RetryUntil = until.UnixMilli()
		p.RetryMin = retryMinutes(until.Sub(s.o.Clock()))
	}
	for _, l := range Langs() {
		q := url.Values{"lang": {l}}
		if p.Large {
			q.Set("large", "1")
		}
		name, _ := s.cat.Text("lang."+l, l)
		short, _ := s.cat.Text("lang.short."+l, l)
		p.Langs = append(p.Langs, langLink{Code: l, Name: name, Short: short, Href: "/?" + q.Encode(), Current: l == p.Lang})
	}
	return p
}

func (s *Screen) page(w http.ResponseWriter, r *http.Request) {
	s.render(w, "page", s.newPage(r))
}

func (s *Screen) render(w http.ResponseWriter, name string, p *page) {
	var b strings.Builder
	if err := s.tmpl.Execute(&b, name, p); err != nil {
		s.log.Error("screen template failed", "template", name, "err", err)
		http.Error(w, "screen template failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", csp)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Kluis-Build", s.build)
	_, _ = w.Write([]byte(b.String()))
}

// techData is the technician's diagnostics.
type techData struct {
	Boards  []techBoard
	Comps   []techComp
	Hatch   []techComp
	Alarms  []techAlarm
	Backlog int
}

type techBoard struct {
	Board, Errors int
	Online        bool
}

type techComp struct {
	Number               int
	Known, Open, Present bool
	ItemKnown            bool
}

type techAlarm struct {
	At, Key string
	// Cleared says when the device cleared it ("(cleared at 14:05:09)"),
	// "" while it holds.
	Cleared string
	Comp    int
	Board   int
	IsBoard bool
}

// roleMay reports whether a staff member with role may use the staff
// menu's action act: counter staff load and retrieve, technicians open the
// diagnostics and test-open, admins both; everyone logged in may lift a
// lockout. The screen offers only these; the backend decides anyway.
func roleMay(role wire.StaffRole, act string) bool {
	if role == "" {
		role = wire.RoleStaff
	}
	switch act {
	case "load", "retrieve":
		return role == wire.RoleStaff || role == wire.RoleAdmin
	case "tech":
		return role == wire.RoleTechnician || role == wire.RoleAdmin
	}
	return true
}

// Allowed reports whether the logged-in staff member may use act (roleMay).
func (p *page) Allowed(act string) bool {
	return p.Screen.Staff != "" && roleMay(p.Screen.StaffRole, act)
}

// TechAllowed reports whether the technician's diagnostics are for
// whoever is logged in on sc: a technician or an admin (roleMay "tech").
// The panel (/screen/tech) and kluisd's GET /kiosk/v1/diagnostics ask it.
func TechAllowed(sc engine.Screen) bool { return sc.Staff != "" && roleMay(sc.StaffRole, "tech") }

func (s *Screen) tech(w http.ResponseWriter, r *http.Request) {
	if !TechAllowed(s.o.Source.Screen()) {
		// The diagnostics are for a technician logged in at the device.
		http.Error(w, http.StatusText(http.StatusForbidden), http.StatusForbidden)
		return
	}
	if s.o.OnStaffActivity != nil {
		s.o.OnStaffActivity()
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	s.render(w, "tech", s.techPage(ctx, r))
}

// techPage is the technician's diagnostics page for r.
func (s *Screen) techPage(ctx context.Context, r *http.Request) *page {
	p := s.newPage(r)
	d := s.o.Source.Diagnostics(ctx)
	td := &techData{Backlog: d.Backlog}
	for _, b := range d.Boards {
		td.Boards = append(td.Boards, techBoard{Board: b.Address + 1, Errors: int(b.Errors), Online: b.Online})
	}
	doors := map[hardware.Address]hardware.ChannelState{}
	for _, st := range d.Doors {
		doors[st.Addr] = st
	}
	cfg := s.o.Config
	for _, c := range cfg.Compartments {
		tc := techComp{Number: c.Number}
		if cfg.Kind == config.KindLocker {
			st, ok := doors[c.Addr()]
			tc.Known, tc.Open, tc.Present, tc.ItemKnown = ok && d.Caps.DoorSensor, st.DoorOpen, st.ItemPresent, ok && d.Caps.ItemSensor
		}
		td.Comps = append(td.Comps, tc)
	}
	sort.Slice(td.Comps, func(i, j int) bool { return td.Comps[i].Number < td.Comps[j].Number })
	if cfg.Kind == config.KindAutomaton {
		for _, b := range cfg.Hardware.Boards {
			st, ok := doors[hardware.Address{Board: b, Channel: cfg.Hardware.HatchChannel}]
			td.Hatch = append(td.Hatch, techComp{Number: b + 1, Known: ok && d.Caps.DoorSensor, Open: st.DoorOpen})
		}
	}
	for _, a := range d.Alarms {
		ta := techAlarm{At: a.At.In(time.Local).Format("15:04:05"), Key: alarmKey(a.Alarm), Comp: a.Compartment}
		if a.Board != nil && a.Compartment == 0 {
			ta.IsBoard, ta.Board = true, *a.Board+1
		}
		if a.Cleared != nil {
			t, err := p.T("tech.cleared")
			if err != nil {
				t = "{t}"
			}
			ta.Cleared = strings.ReplaceAll(t, "{t}", a.Cleared.In(time.Local).Format("15:04:05"))
		}
		td.Alarms = append(td.Alarms, ta)
	}
	p.Tech = td
	return p
}

// lastTry is the warning of a wrong_code screen whose next wrong PIN
// locks PIN entry for secs seconds: in minutes (rounded up), in hours
// from two hours (screen.js says the same with lastTry).
func (s *Screen) lastTry(lang string, secs int) string {
	m := (secs + 59) / 60
	key := "pin.last_try.many"
	switch {
	case m <= 1:
		key, m = "pin.last_try.one", 1
	case m >= 120:
		key, m = "pin.last_try.hours", (m+59)/60
	}
	t, _ := s.cat.Text(key, lang) // every key is in every language (NewCatalog)
	return strings.ReplaceAll(t, "{m}", strconv.Itoa(m))
}

// retryMinutes is the wait in whole minutes as people read it: rounded
// up, at least 1 (the engine adds a second to its retry_after_s).
func retryMinutes(d time.Duration) int {
	return max(1, int(math.Ceil((d - time.Second).Minutes())))
}

// icon is the inline SVG of a tone (aria-hidden: the heading says it).
func icon(tone string) pagetmpl.HTML {
	return pagetmpl.HTML(`<svg class="icon" viewBox="0 0 48 48" aria-hidden="true" focusable="false"><use href="#i-` + pagetmpl.HTMLEscapeString(tone) + `"/></svg>`)
}

// Reveal is the button beside a typed PIN that shows its digits instead
// of dots (aria-pressed), for people who want to check what they typed;
// the PIN is masked again with every new PIN (screen.js).
func (p *page) Reveal() (pagetmpl.HTML, error) {
	label, err := p.T("pin.show")
	if err != nil {
		return "", err
	}
	return pagetmpl.HTML(fmt.Sprintf(`<button type="button" class="btn reveal" data-act="reveal" aria-pressed="false"><svg class="icon" viewBox="0 0 48 48" aria-hidden="true" focusable="false"><use href="#i-eye"/></svg>%s</button>`,
		pagetmpl.HTMLEscapeString(label))), nil
}

// escaped is the texts of keys in the page's language, HTML-escaped.
func (p *page) escaped(keys ...string) ([]string, error) {
	txt := make([]string, len(keys))
	for i, k := range keys {
		t, err := p.T(k)
		if err != nil {
			return nil, err
		}
		txt[i] = pagetmpl.HTMLEscapeString(t)
	}
	return txt, nil
}

// Typed is the display of the PIN typed on the keypad pad (pin,
// staff-pin): the digits, or a dot for each (data-out, filled by
// screen.js), hidden from assistive technology, which would read the dots
// as "bullet bullet"; and for it a status (a polite live region, data-say)
// saying how many digits are typed, and which while they are shown (the
// Reveal toggle), in the page's language from the catalogue's templates
// (pin.said.*). The digits are never in it while masked.
func (p *page) Typed(pad string) (pagetmpl.HTML, error) {
	txt, err := p.escaped("pin.said.none", "pin.said.one", "pin.said.many", "pin.said.digits")
	if err != nil {
		return "", err
	}
	pad = pagetmpl.HTMLEscapeString(pad)
	return pagetmpl.HTML(fmt.Sprintf(`<output class="digits" data-out="%s" aria-hidden="true"></output>`+
		`<span class="sr-only" role="status" data-say="%s" data-none="%s" data-one="%s" data-many="%s" data-digits="%s">%s</span>`,
		pad, pad, txt[0], txt[1], txt[2], txt[3], txt[0])), nil
}

// Keypad is an on-screen number pad for the field name (pin, birth,
// staff-pin, load, retrieve); dash adds a "-" key for document numbers
// (four columns: 1 2 3 delete, 4 5 6 -, 7 8 9 0, then confirm).
func (p *page) Keypad(name string, dash bool) (pagetmpl.HTML, error) {
	txt, err := p.escaped("keypad.label", "key.delete", "key.ok", "key.dash")
	if err != nil {
		return "", err
	}
	label, del, ok, dashLabel := txt[0], txt[1], txt[2], txt[3]
	digit := func(k string) string {
		return fmt.Sprintf(`<button type="button" class="key" data-key="%s">%s</button>`, k, k)
	}
	// The digits in three columns (1 to 9, then 0 under them, beside the
	// dash on the staff pads), Delete and Confirm down a fourth column as
	// tall keys, as wide as their words need (the CSS places them): their
	// labels stay large ("Bestätigen" at 18 px on the 800x480 panel) and
	// whole. In the page they come after the characters they act on.
	var keys []string
	for _, k := range []string{"1", "2", "3", "4", "5", "6", "7", "8", "9"} {
		keys = append(keys, digit(k))
	}
	if dash {
		keys = append(keys, fmt.Sprintf(`<button type="button" class="key dash" data-key="-" aria-label="%s">-</button>`, dashLabel))
	}
	keys = append(keys, `<button type="button" class="key zero" data-key="0">0</button>`,
		fmt.Sprintf(`<button type="button" class="key del" data-key="del">%s<span>%s</span></button>`, icon("del"), del),
		fmt.Sprintf(`<button type="button" class="key ok" data-key="ok">%s<span>%s</span></button>`, icon("ok"), ok))
	class := "keypad"
	if dash {
		class += " four"
	}
	return pagetmpl.HTML(fmt.Sprintf(`<div class="%s" role="group" aria-label="%s" data-pad="%s">%s</div>`,
		class, label, pagetmpl.HTMLEscapeString(name), strings.Join(keys, ""))), nil
}
