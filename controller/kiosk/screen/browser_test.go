package screen_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"kluis/controller/engine"
	"kluis/controller/kiosk/screen"
	"kluis/controller/wire"
	"kluis/deploy/dev/browsertest"
	"kluis/hardware"
)

// layout is one screen the kiosk page is made for.
type layout struct {
	name string
	w, h int64
	// scale emulates browser zoom: the CSS viewport is w by h at this
	// device scale factor (2 is 200% zoom of a 2w by 2h screen).
	scale float64
}

var layouts = []layout{{name: "1080x1920", w: 1080, h: 1920}, {name: "800x480", w: 800, h: 480}}

// mtab is one tab of the matrix: a layout in a language.
type mtab struct {
	tab    *browsertest.Tab
	lay    layout
	lang   string
	large  bool
	folder string
	host   int // which of the rig's servers
}

// tabsAtOnce is how many tabs a matrix drives at once. A tab spends
// much of a step waiting (for kluisd's event, for axe-core's promise, for
// a screenshot): four at a time keep a two-core machine busier than two
// did (TestScreenMatrix took 301 s instead of 366 s on one loaded
// machine, load 34).
const tabsAtOnce = 4

// matrix drives tabs in parallel (tabsAtOnce at a time) and collects
// their failures for the test goroutine.
type matrix struct {
	t    *testing.T
	cat  *screen.Catalog
	tabs []*mtab
	// fit: at 800x480 (no zoom, normal text) a citizen's screen must fit
	// without scrolling.
	checkFit bool
	// queue holds the steps of inTurn, not yet run.
	queue    []tabStep
	queueing bool
}

// tabStep is one step of every tab.
type tabStep struct {
	what string
	fn   func(mt *mtab) error
}

func newMatrix(t *testing.T) *matrix {
	cat, err := screen.NewCatalog()
	if err != nil {
		t.Fatal(err)
	}
	return &matrix{t: t, cat: cat}
}

// each runs fn on every tab, tabsAtOnce at a time, and fails the test with every
// error. Inside inTurn it only queues fn.
func (m *matrix) each(what string, fn func(mt *mtab) error) {
	m.t.Helper()
	if m.queueing {
		m.queue = append(m.queue, tabStep{what, fn})
		return
	}
	var mu sync.Mutex
	var errs []string
	sem := make(chan struct{}, tabsAtOnce)
	var wg sync.WaitGroup
	for _, mt := range m.tabs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(mt); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("%s/%s: %s: %v", mt.folder, mt.lang, what, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		m.t.Error(e)
	}
	if len(errs) > 0 {
		m.t.FailNow()
	}
}

// inTurn runs the steps that steps queues (check, click, keys, typed,
// each) in every tab in their order, but each tab on its own: a tab goes
// on to its next step without waiting for the others to finish theirs.
// Only for what happens in the page alone (a view of the page, keys typed
// but not sent, checks): nothing that changes kluisd's state, which every
// tab shows, and no step of the test's own between them (steps runs them
// all before the first tab starts).
func (m *matrix) inTurn(what string, steps func()) {
	m.t.Helper()
	if m.queueing {
		m.t.Fatal("inTurn inside inTurn")
	}
	m.queueing = true
	steps()
	m.queueing = false
	q := m.queue
	m.queue = nil
	m.each(what, func(mt *mtab) error {
		for _, st := range q {
			if err := st.fn(mt); err != nil {
				return fmt.Errorf("%s: %w", st.what, err)
			}
		}
		return nil
	})
}

func eval[T any](mt *mtab, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(mt.tab.Ctx, 30*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

func do(mt *mtab, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(mt.tab.Ctx, 30*time.Second)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// open navigates every tab to the rig's kiosk in its language (each
// layout on its own loopback address).
func (m *matrix) open(r *rig) {
	m.each("open", func(mt *mtab) error {
		u := r.bases[mt.host%len(r.bases)] + "/?lang=" + mt.lang
		if mt.large {
			u += "&large=1"
		}
		if err := do(mt, chromedp.Navigate(u)); err != nil {
			return err
		}
		return waitJS(mt, `document.readyState === "complete"`)
	})
}

// waitJS polls expr until it is true, for at most 30 s (a bound for a
// loaded machine, not a timing goal).
func waitJS(mt *mtab, expr string) error { return waitJSWithin(mt, expr, 30*time.Second) }

// waitJSWithin is waitJS with the bound d.
func waitJSWithin(mt *mtab, expr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := eval[bool](mt, expr)
		if err == nil && ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not true within %v: %s (%v)", d, expr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// pageState is what a tab shows.
type pageState struct {
	Shown   string   `json:"shown"`
	H1      string   `json:"h1"`
	Msg     string   `json:"msg"`
	Next    string   `json:"next"`
	Fig     bool     `json:"fig"`
	Caption string   `json:"caption"`
	Marked  []string `json:"marked"`
	Small   []string `json:"small"`
	// TinyKeys are the keypad labels under 18 px (a night-time reader
	// with poor sight needs them large).
	TinyKeys   []string `json:"tinyKeys"`
	Overflow   bool     `json:"overflow"`
	Scroll     int      `json:"scroll"`
	Lang       string   `json:"lang"`
	Violations []browsertest.Violation
}

const readState = `(function(){
 var sec = Array.prototype.filter.call(document.querySelectorAll("main .view"), function(s){ return !s.hidden; });
 var s = sec[0];
 var fig = document.getElementById("drawing");
 var small = [];
 document.querySelectorAll("button, a, input").forEach(function(el){
   var r = el.getBoundingClientRect();
   if (r.width === 0 && r.height === 0) { return; }
   if (r.width < 47.5 || r.height < 47.5) { small.push((el.getAttribute("data-key") || el.getAttribute("data-act") || el.textContent.trim()) + " " + Math.round(r.width) + "x" + Math.round(r.height)); }
 });
 var tinyKeys = [];
 document.querySelectorAll(".key span").forEach(function(el){
   if (el.offsetParent === null) { return; }
   var px = parseFloat(getComputedStyle(el).fontSize);
   if (px < 18) { tinyKeys.push(el.textContent.trim() + " " + px + "px"); }
 });
 var msg = s && s.querySelector("[data-msg], .msg, .lead");
 return {
   shown: sec.map(function(x){ return x.id; }).join(","),
   h1: s && s.querySelector("h1") ? s.querySelector("h1").textContent.trim() : "",
   msg: msg ? msg.textContent.trim() : "",
   next: s && s.querySelector(".next") ? s.querySelector(".next").textContent.trim() : "",
   fig: !fig.hidden,
   caption: fig.querySelector("figcaption").textContent.trim(),
   marked: Array.prototype.map.call(document.querySelectorAll(".device .comp.hl"), function(g){ return g.getAttribute("data-comp"); }),
   small: small,
   tinyKeys: tinyKeys,
   overflow: document.documentElement.scrollWidth > window.innerWidth + 1,
   scroll: document.documentElement.scrollHeight - window.innerHeight,
   lang: document.documentElement.lang
 };
})()`

// expect says what a screen must show.
type expect struct {
	h1, msg string // catalogue keys ("" not checked); msg "state.x" is the engine's
	// next is the catalogue key of the "what to do now" line; "" means
	// the screen has none.
	next    string
	n       int  // the compartment in the message and on the drawing (0: no drawing)
	hatch   bool // the automaton's hatch is marked
	citizen bool // must fit 800x480 without scrolling
	// large: a citizen screen that must fit 800x480 with large text too
	// (the screens with the counter's opening hours).
	large bool
	// until is the end of the lock the message tells of ({t}, in the
	// device's local time).
	until time.Time
}

// check waits until every tab shows the section id, then checks its text
// against the catalogue in the tab's language, the drawing, target sizes
// and overflow, runs axe-core and keeps a screenshot named name.
func (m *matrix) check(name, id string, ex expect) {
	m.t.Helper()
	m.each(name, func(mt *mtab) error {
		if err := waitJS(mt, fmt.Sprintf(`(function(){var e=document.getElementById(%s);return !!e && !e.hidden && document.querySelectorAll("main .view:not([hidden])").length===1})()`, jsString(id))); err != nil {
			st, _ := eval[pageState](mt, readState)
			return fmt.Errorf("%w; shows %q", err, st.Shown)
		}
		st, err := eval[pageState](mt, readState)
		if err != nil {
			return err
		}
		var problems []string
		if st.Lang != mt.lang {
			problems = append(problems, "page language "+st.Lang)
		}
		text := func(key string, n int) string {
			s, err := m.cat.Text(key, mt.lang)
			if err != nil {
				problems = append(problems, err.Error())
			}
			t := ""
			if !ex.until.IsZero() {
				t = engine.UntilText(mt.lang, ex.until, time.Now())
			}
			return strings.NewReplacer("{n}", fmt.Sprint(n), "{m}", "10", "{t}", t).Replace(s)
		}
		if ex.h1 != "" && st.H1 != text(ex.h1, ex.n) {
			problems = append(problems, fmt.Sprintf("heading %q, want %q", st.H1, text(ex.h1, ex.n)))
		}
		if ex.msg != "" && st.Msg != text(ex.msg, ex.n) {
			problems = append(problems, fmt.Sprintf("message %q, want %q", st.Msg, text(ex.msg, ex.n)))
		}
		// A lock's end on the staff console's clock ("17:42" in every
		// language), not "17.42 uur", "17 h 42" or "17:42 Uhr".
		if !ex.until.IsZero() {
			if clock := ex.until.In(time.Local).Format("15:04"); !strings.Contains(st.Msg, clock) ||
				strings.Contains(st.Msg, clock+" uur") || strings.Contains(st.Msg, clock+" Uhr") || strings.Contains(st.Msg, "\u00a0h\u00a0") {
				problems = append(problems, fmt.Sprintf("message %q: the time not as the console writes it (%s)", st.Msg, clock))
			}
		}
		wantNext := ""
		if ex.next != "" {
			wantNext = text(ex.next, ex.n)
		}
		if st.Next != wantNext {
			problems = append(problems, fmt.Sprintf("next step %q, want %q", st.Next, wantNext))
		}
		switch {
		case ex.hatch:
			if !st.Fig || len(st.Marked) != 1 || st.Marked[0] != "hatch" || st.Caption != text("drawing.hatch", 0) {
				problems = append(problems, fmt.Sprintf("drawing shown %t, marked %v, caption %q: want the hatch", st.Fig, st.Marked, st.Caption))
			}
		case ex.n > 0:
			if !st.Fig || len(st.Marked) != 1 || st.Marked[0] != fmt.Sprint(ex.n) || st.Caption != text("drawing.n", ex.n) {
				problems = append(problems, fmt.Sprintf("drawing shown %t, marked %v, caption %q: want compartment %d", st.Fig, st.Marked, st.Caption, ex.n))
			}
		default:
			if st.Fig {
				problems = append(problems, "a drawing is shown")
			}
		}
		if len(st.Small) > 0 {
			problems = append(problems, fmt.Sprintf("touch targets under 48x48: %v", st.Small))
		}
		if len(st.TinyKeys) > 0 {
			problems = append(problems, fmt.Sprintf("keypad labels under 18 px: %v", st.TinyKeys))
		}
		if st.Overflow {
			problems = append(problems, "wider than the screen")
		}
		if m.checkFit && ex.citizen && mt.lay.h == 480 && mt.lay.scale == 0 && (!mt.large || ex.large) && st.Scroll > 0 {
			problems = append(problems, fmt.Sprintf("%d px taller than 800x480", st.Scroll))
		}
		axe, err := runAxe(mt, mt.folder+"/"+mt.lang+"/"+name)
		if err != nil {
			return err
		}
		for _, v := range axe {
			problems = append(problems, "axe: "+v.String())
		}
		if err := shot(mt, name); err != nil {
			return err
		}
		if len(problems) > 0 {
			return fmt.Errorf("%s", strings.Join(problems, "\n  "))
		}
		return nil
	})
}

// runAxe is the tab's browsertest.Tab.Axe (a full WCAG 2.1 A and AA run
// on the page as it is now, axe-core loaded into the tab's pages once) as
// an error for the steps of each, which run outside the test's goroutine:
// a page axe-core could not check at all is an error.
func runAxe(mt *mtab, page string) ([]browsertest.Violation, error) {
	vs, passed, err := mt.tab.Axe(page)
	if err != nil {
		return nil, err
	}
	if passed == 0 {
		return nil, fmt.Errorf("axe passed no rule: the page was not checked")
	}
	return vs, nil
}

func shot(mt *mtab, name string) error {
	ctx, cancel := context.WithTimeout(mt.tab.Ctx, 60*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, browsertest.FullPNG())
	if err != nil {
		return err
	}
	root, err := browsertest.Root()
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(root, "var", "screenshots", "kiosk", mt.folder, mt.lang, name+".png"), buf)
}

// click clicks sel in every tab (a real mouse click).
func (m *matrix) click(sel string) {
	m.t.Helper()
	m.each("click "+sel, func(mt *mtab) error {
		return do(mt, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	})
}

// clicks clicks sel n times in every tab, each tab on its own (real
// mouse clicks, one after the other; the tabs do not wait for each other
// between clicks).
func (m *matrix) clicks(sel string, n int) {
	m.t.Helper()
	m.each(fmt.Sprintf("click %s %d times", sel, n), func(mt *mtab) error {
		for i := range n {
			if err := do(mt, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)); err != nil {
				return fmt.Errorf("click %d: %w", i+1, err)
			}
		}
		return nil
	})
}

// typed checks in every tab what the display of the PIN keypad pad (pin,
// staff-pin) shows, want, and its show-digits toggle's aria-pressed; the
// secrets (the PIN as typed and as grouped) must then be nowhere in the
// page: not in its text, not in its HTML (nor in the value of the
// output, which is its text).
func (m *matrix) typed(what, pad, want, pressed string, secrets ...string) {
	m.t.Helper()
	m.each(what, func(mt *mtab) error {
		sel := jsString(`[data-out="` + pad + `"]`)
		if err := waitJS(mt, `document.querySelector(`+sel+`).textContent === `+jsString(want)); err != nil {
			got, _ := eval[string](mt, `document.querySelector(`+sel+`).textContent`)
			return fmt.Errorf("the PIN shows %q, want %q", got, want)
		}
		sec := jsString(`[data-pad="` + pad + `"]`)
		got, err := eval[string](mt, `document.querySelector(`+sec+`).closest("section").querySelector("[data-act=reveal]").getAttribute("aria-pressed")`)
		if err == nil && got != pressed {
			err = fmt.Errorf("show digits aria-pressed %q, want %q", got, pressed)
		}
		if err != nil {
			return err
		}
		for _, sc := range secrets {
			if sc == "" {
				continue
			}
			found, err := eval[bool](mt, `(function(s){
				if (document.body.innerText.indexOf(s) >= 0) { return true; }
				// The page's HTML, without the keys of the keypads (1 2 3 ...),
				// the script and style, and the times and build id.
				var d = document.documentElement.cloneNode(true);
				d.querySelectorAll("[data-pad], script, link").forEach(function(e){ e.remove(); });
				["data-at", "data-build", "data-seq", "data-retry-until"].forEach(function(a){
					d.removeAttribute(a);
					d.querySelectorAll("[" + a + "]").forEach(function(e){ e.removeAttribute(a); });
				});
				return d.outerHTML.indexOf(s) >= 0;
			})(`+jsString(sc)+`)`)
			if err == nil && found {
				err = fmt.Errorf("the masked PIN %q is in the page", sc)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// shown waits in every tab until the view or screen id shows: the tabs
// learn of kluisd's new screen through the event stream, and keys typed
// before it shows go to the screen before (a date of birth typed at once
// after the PIN lost its first digit).
func (m *matrix) shown(id string) {
	m.t.Helper()
	m.each(id+" shown", func(mt *mtab) error {
		return waitJS(mt, `!document.getElementById(`+jsString(id)+`).hidden`)
	})
}

// keys types on the keyboard in every tab (nothing has focus but the
// page).
func (m *matrix) keys(k string) {
	m.t.Helper()
	m.each("keys "+k, func(mt *mtab) error { return do(mt, chromedp.KeyEvent(k)) })
}

// TestScreenMatrix renders every screen in every language in both layouts
// in one headless Chromium (one tab per layout and language), driving the
// states through the real engine on the fake driver and the real kiosk
// server; on each screen it checks the texts against the catalogue, the
// drawing, the touch targets and overflow, runs axe-core (WCAG 2.1 A and
// AA: no violation allowed) and keeps a screenshot under
// var/screenshots/kiosk/<layout>/<lang>/<screen>.png.
func TestScreenMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("browser matrix")
	}
	t.Parallel() // its own kiosks and browser: beside the package's other browser tests, which it may wait for
	r := newRig(t, rigOptions{})
	aut := newRig(t, rigOptions{kind: "automaton", manualPresent: true})
	b := browsertest.New(t, browsertest.Options{}) // until the test binary's deadline
	m := newMatrix(t)
	m.checkFit = true
	for i, lay := range layouts {
		for _, l := range screen.Langs() {
			m.tabs = append(m.tabs, &mtab{tab: b.NewTab(t, lay.w, lay.h), lay: lay, lang: l, folder: lay.name, host: i})
		}
	}
	ctx := context.Background()
	m.open(r)

	// The citizen's screens.
	m.inTurn("the PIN keypad", func() {
		m.check("start", "v-start", expect{h1: "start.title", msg: "state.idle", citizen: true})
		m.click(`[data-act=pin]`)
		m.keys("12345678")
		m.check("pin", "v-pin", expect{h1: "pin.title", citizen: true})
		// Masked as dots in groups; the toggle shows the digits, and masks
		// them again (TestPINScreenFitsTheSmallPanel has the rest).
		m.typed("the PIN masked", "pin", "••• ••• ••", "false", "12345678", "123 456")
		m.click(`#v-pin [data-act=reveal]`)
		m.typed("the PIN shown", "pin", "123 456 78", "true", "", "")
		m.check("pin-shown", "v-pin", expect{h1: "pin.title", citizen: true})
		m.click(`#v-pin [data-act=reveal]`)
		m.typed("the PIN masked again", "pin", "••• ••• ••", "false", "12345678", "123 456")
	})

	r.be.set(func() { r.be.verify["11223344/"] = wire.VerifyResponse{Result: wire.VerifySecondFactorRequired} })
	r.pickup(engine.PickupRequest{PIN: "11223344", Lang: "en"})
	m.shown("v-birth")
	m.keys("0302")
	m.check("need_birth_date", "v-birth", expect{h1: "birth.title", msg: "state.need_birth_date", citizen: true})

	hold := make(chan struct{})
	r.be.set(func() { r.be.hold["K1.hold"] = hold })
	go func() { _, _ = r.e.Pickup(ctx, engine.PickupRequest{QR: "K1.hold", Lang: "en"}) }()
	r.waitState(engine.StateVerifying)
	m.check("verifying", "s-verifying", expect{h1: "title.wait", msg: "state.verifying", citizen: true})
	close(hold) // the backend does not know the code
	r.waitState(engine.StateWrongCode)
	m.inTurn("wrong code, try again", func() {
		m.check("wrong_code", "s-wrong_code", expect{h1: "title.wrong_code", msg: "state.wrong_code", next: "next.wrong_code", citizen: true})
		// The way on is on the screen itself: "Try again" (a real click) after
		// a refused QR code goes back to the start to scan again
		// (TestWrongCodeOffersOneWayOn has the rest).
		m.each("try again", func(mt *mtab) error {
			want, _ := m.cat.Text("again", mt.lang)
			got, err := eval[string](mt, `document.querySelector("#s-wrong_code .acts [data-act=again]").textContent.trim()`)
			if err == nil && got != want {
				err = fmt.Errorf("button %q, want %q", got, want)
			}
			return err
		})
		m.click(`#s-wrong_code [data-act=again]`)
		m.check("wrong_code-again", "v-start", expect{h1: "start.title", msg: "state.idle", citizen: true})
	})

	r.be.set(func() {
		r.be.verify["K1.expired"] = wire.VerifyResponse{Result: wire.VerifyExpired}
		r.be.verify["K1.used"] = wire.VerifyResponse{Result: wire.VerifyAlreadyCollected}
		r.be.verify["K1.pending"] = wire.VerifyResponse{Result: wire.VerifyPending}
		r.be.verify["K1.nowhere"] = okAt("doc-x", 15) // not a compartment of this device
		r.be.verify["K1.c3"] = okAt("doc-3", 2)
		r.be.verify["K1.c5"] = okAt("doc-5", 4)
		r.be.verify["K1.c6"] = okAt("doc-6", 5)
		r.be.verify["K1.c6b"] = okAt("doc-6b", 5)
		r.be.verify["K1.c7"] = okAt("doc-7", 6)
		r.be.verify["K1.lock"] = wire.VerifyResponse{Result: wire.VerifyDeviceLockedOut, RetryAfterS: 600}
	})
	r.pickup(engine.PickupRequest{QR: "K1.expired", Lang: "en"})
	m.check("expired", "s-expired", expect{h1: "title.expired", msg: "state.expired", next: "next.expired", citizen: true})
	r.pickup(engine.PickupRequest{QR: "K1.used", Lang: "en"})
	m.check("already_collected", "s-already_collected", expect{h1: "title.already_collected", msg: "state.already_collected", next: "next.already_collected", citizen: true})
	r.pickup(engine.PickupRequest{QR: "K1.pending", Lang: "en"})
	m.check("pending", "s-pending", expect{h1: "title.pending", msg: "state.pending", citizen: true})
	r.pickup(engine.PickupRequest{QR: "K1.nowhere", Lang: "en"})
	m.check("out_of_order", "s-out_of_order", expect{h1: "title.out_of_order", msg: "state.out_of_order", next: "next.closed", citizen: true})
	r.be.set(func() { r.be.down = true })
	r.pickup(engine.PickupRequest{QR: "K1.c3", Lang: "en"}) // no answer and nothing to verify offline with
	r.be.set(func() { r.be.down = false })
	m.check("error", "s-error", expect{h1: "title.problem", msg: "state.error", next: "next.closed", citizen: true})

	r.item(2, true)
	o := r.opens(2)
	r.pickup(engine.PickupRequest{QR: "K1.c3", Lang: "en"})
	r.waitOpened(2, o)
	m.inTurn("open", func() {
		m.check("open", "s-open", expect{h1: "title.open", msg: "state.open", n: 3, citizen: true})
		m.each("no start again while the door is open", func(mt *mtab) error {
			return waitJS(mt, `document.querySelector("footer [data-act=restart]").hidden`)
		})
	})
	r.close(2, false)
	m.check("done", "s-done", expect{h1: "title.done", msg: "state.done", citizen: true})

	r.item(4, true)
	o = r.opens(4)
	r.pickup(engine.PickupRequest{QR: "K1.c5", Lang: "en"})
	r.waitOpened(4, o)
	r.close(4, true)
	m.check("not_collected", "s-not_collected", expect{h1: "title.not_collected", msg: "state.not_collected", next: "next.not_collected", n: 5, citizen: true})

	r.item(5, true)
	o = r.opens(5)
	r.pickup(engine.PickupRequest{QR: "K1.c6", Lang: "en"}) // the door stays open
	r.waitOpened(5, o)
	r.pickup(engine.PickupRequest{QR: "K1.c6b", Lang: "en"})
	m.check("busy", "s-busy", expect{h1: "title.wait", msg: "state.busy", citizen: true})
	r.close(5, false)
	r.waitState(engine.StateDone)

	r.setOpenOnPulse(false)
	r.item(6, true)
	r.pickup(engine.PickupRequest{QR: "K1.c7", Lang: "en"})
	m.check("not_opened", "s-not_opened", expect{h1: "title.problem", msg: "state.not_opened", next: "next.closed", n: 7, citizen: true})
	r.setOpenOnPulse(true)

	r.pickup(engine.PickupRequest{QR: "K1.lock", Lang: "en"})
	m.inTurn("locked out; the staff PIN keypad", func() {
		m.check("locked_out", "s-locked_out", expect{h1: "title.locked_out", msg: "state.locked_out", next: "next.closed", citizen: true})
		m.each("time to try again", func(mt *mtab) error {
			want, _ := m.cat.Text("retry.many", mt.lang)
			want = strings.ReplaceAll(want, "{m}", "10")
			got, err := eval[string](mt, `document.querySelector("#s-locked_out .retry").innerText.trim()`)
			if err == nil && got != want {
				err = fmt.Errorf("retry line %q, want %q", got, want)
			}
			return err
		})

		// Staff at the device.
		m.click(`footer [data-act=restart]`)
		m.click(`footer [data-act=staff-login]`)
		m.keys("4321")
		m.check("staff-login", "v-staff-login", expect{h1: "staff.login.title"})
		m.typed("the staff PIN masked", "staff-pin", "••••", "false", "4321", "")
		m.click(`#v-staff-login [data-act=reveal]`)
		m.typed("the staff PIN shown", "staff-pin", "4321", "true", "", "")
		m.click(`#v-staff-login [data-act=reveal]`)
		m.typed("the staff PIN masked again", "staff-pin", "••••", "false", "4321", "")
	})
	if _, err := r.e.StaffLogin(ctx, "BADGE-NOBODY", "", "en"); err != nil {
		t.Fatal(err)
	}
	m.check("staff_denied", "s-staff_denied", expect{h1: "title.staff_denied", msg: "state.staff_denied", next: "next.staff.staff_denied"})
	// The device's staff logins under the 15-minute lock: a PIN typed
	// with real keys and Enter, the backend's denial says when the lock
	// ends (expires), the screen says until when, in the device's local
	// time and each language's way of writing it.
	burst := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	r.be.set(func() {
		r.be.staff["login:4321"] = wire.StaffResponse{Result: wire.StaffDenied, Expires: &burst}
	})
	m.inTurn("the staff PIN keypad again", func() {
		m.click(`#s-staff_denied [data-act=staff-login]`)
		m.check("staff-login-again", "v-staff-login", expect{h1: "staff.login.title"})
	})
	m.keys("4321\r")
	m.check("staff_locked", "s-staff_locked", expect{h1: "title.staff_locked", msg: "state.staff_locked", until: burst})
	// Under the daily cap: the advice is the staff console or the desk.
	locked := time.Now().Add(20 * time.Hour).Truncate(time.Second)
	r.be.set(func() {
		r.be.staff["login:BADGE-LOCKED"] = wire.StaffResponse{Result: wire.StaffDenied, Expires: &locked}
	})
	if _, err := r.e.StaffLogin(ctx, "BADGE-LOCKED", "", "en"); err != nil {
		t.Fatal(err)
	}
	m.inTurn("locked for today", func() {
		m.check("staff_locked_today", "s-staff_locked_today", expect{h1: "title.staff_locked", msg: "state.staff_locked_today", until: locked})
		m.each("the lock's end, not a duration", func(mt *mtab) error {
			got, err := eval[string](mt, `document.querySelector("#s-staff_locked_today [data-msg]").textContent`)
			if err == nil && !strings.Contains(got, locked.In(time.Local).Format("04")) {
				err = fmt.Errorf("message %q: want the end %v", got, locked.In(time.Local))
			}
			return err
		})
	})
	exp := time.Now().Add(time.Hour)
	r.be.set(func() {
		r.be.staff["login:BADGE-AN"] = wire.StaffResponse{Result: wire.StaffOK, Session: "s1", StaffID: "17", StaffName: "An Peeters", Expires: &exp, Role: wire.RoleAdmin}
		r.be.staff["reserve:591-0008"] = wire.StaffResponse{Result: wire.StaffOK, DocumentID: "d8", Addr: &wire.Address{Channel: 7}}
		r.be.staff["reserve:591-0009"] = wire.StaffResponse{Result: wire.StaffOK, DocumentID: "d9", Addr: &wire.Address{Channel: 8}}
		r.be.staff["reserve:591-0404"] = wire.StaffResponse{Result: wire.StaffNotFound}
		r.be.staff["reserve:591-0409"] = wire.StaffResponse{Result: wire.StaffWrongState}
		r.be.staff["reserve:591-0000"] = wire.StaffResponse{Result: wire.StaffNoCompartment}
		r.be.staff["retrieve:591-0008"] = wire.StaffResponse{Result: wire.StaffOK, DocumentID: "d8", Addr: &wire.Address{Channel: 7}}
		r.be.staff["retrieve:591-0010"] = wire.StaffResponse{Result: wire.StaffOK, DocumentID: "d10", Addr: &wire.Address{Channel: 9}}
	})
	if _, err := r.e.StaffLogin(ctx, "BADGE-AN", "", "en"); err != nil {
		t.Fatal(err)
	}
	m.inTurn("the staff menu", func() {
		m.check("staff", "v-staff-menu", expect{h1: "staff.menu.title"})
		m.each("staff name", func(mt *mtab) error {
			want, _ := m.cat.Text("staff.as", mt.lang)
			want = strings.ReplaceAll(want, "{s}", "An Peeters")
			got, err := eval[string](mt, `document.querySelector("#v-staff-menu p").textContent.trim()`)
			if err == nil && got != want {
				err = fmt.Errorf("%q, want %q", got, want)
			}
			return err
		})
	})
	// Staff lift the PIN lockout of the locked_out step above.
	r.be.set(func() { r.be.staff["clear_lockout:"] = wire.StaffResponse{Result: wire.StaffOK} })
	// One tab's click lifts it for the device; every tab follows live.
	if err := do(m.tabs[0], chromedp.Click(chromedp.CSS(`#v-staff-menu [data-act=unlock]`), chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	m.inTurn("lockout cleared; the load screen", func() {
		m.check("lockout_cleared", "s-lockout_cleared", expect{h1: "title.lockout_cleared", msg: "state.lockout_cleared"})
		m.click(`#s-lockout_cleared [data-act=staff-menu]`)
		m.click(`[data-act=load]`)
		m.check("staff-load", "v-staff-load", expect{h1: "staff.load"})
	})
	if d := r.e.Diagnostics(ctx); d.LockedUntil != nil {
		t.Fatalf("PIN entry still locked until %v after the staff lift", d.LockedUntil)
	}
	staffDo := func(fn func(context.Context, string, string) (engine.Screen, error), nr string) {
		t.Helper()
		if _, err := fn(ctx, nr, "en"); err != nil {
			t.Fatal(err)
		}
	}
	o = r.opens(7)
	staffDo(r.e.StaffLoad, "591-0008")
	r.waitOpened(7, o)
	m.check("loading", "s-loading", expect{h1: "title.door_open", msg: "state.loading", n: 8})
	r.close(7, true)
	m.check("loaded", "s-loaded", expect{h1: "title.loaded", msg: "state.loaded", n: 8})
	o = r.opens(8)
	staffDo(r.e.StaffLoad, "591-0009")
	r.waitOpened(8, o)
	r.close(8, false)
	m.check("load_empty", "s-load_empty", expect{h1: "title.load_empty", msg: "state.load_empty", next: "next.staff.load_empty", n: 9})
	staffDo(r.e.StaffLoad, "591-0404")
	m.check("not_found", "s-not_found", expect{h1: "title.not_found", msg: "state.not_found", next: "next.staff.not_found"})
	staffDo(r.e.StaffLoad, "591-0409")
	m.check("wrong_state", "s-wrong_state", expect{h1: "title.wrong_state", msg: "state.wrong_state", next: "next.staff.wrong_state"})
	staffDo(r.e.StaffLoad, "591-0000")
	m.check("no_compartment", "s-no_compartment", expect{h1: "title.no_compartment", msg: "state.no_compartment"})
	// The backend paused the device's document lookups (too many numbers
	// not found): until when, in the device's time; the session goes on.
	pauseEnd := time.Now().Add(40 * time.Minute).Truncate(time.Second)
	r.be.set(func() {
		r.be.staff["reserve:591-0777"] = wire.StaffResponse{Result: wire.StaffDenied, Expires: &pauseEnd}
	})
	staffDo(r.e.StaffLoad, "591-0777")
	m.inTurn("lookups paused; the retrieve screen", func() {
		m.check("lookups_paused", "s-lookups_paused", expect{h1: "title.lookups_paused", msg: "state.lookups_paused", until: pauseEnd})
		// Its own "Back to the menu", not the footer's as well.
		m.each("one back to the menu", func(mt *mtab) error {
			return waitJS(mt, `document.querySelector("footer [data-act=staff-menu]").hidden && !document.querySelector("footer [data-act=logout]").hidden`)
		})
		m.click(`#s-lookups_paused [data-act=staff-menu]`)
		m.click(`[data-act=retrieve]`)
		m.check("staff-retrieve", "v-staff-retrieve", expect{h1: "staff.retrieve"})
	})
	o = r.opens(7)
	staffDo(r.e.StaffRetrieve, "591-0008")
	r.waitOpened(7, o)
	m.check("retrieving", "s-retrieving", expect{h1: "title.door_open", msg: "state.retrieving", n: 8})
	r.close(7, false)
	m.check("retrieved", "s-retrieved", expect{h1: "title.retrieved", msg: "state.retrieved", n: 8})
	r.item(9, true)
	o = r.opens(9)
	staffDo(r.e.StaffRetrieve, "591-0010")
	r.waitOpened(9, o)
	r.close(9, true)
	m.check("still_there", "s-still_there", expect{h1: "title.still_there", msg: "state.still_there", next: "next.staff.still_there", n: 10})
	// The backend ended the session after too many numbers not found:
	// logged out, told why, "Log in again"; then logged in again.
	ended := time.Now().Truncate(time.Second)
	r.be.set(func() {
		r.be.staff["retrieve:591-0666"] = wire.StaffResponse{Result: wire.StaffSessionExpired, Expires: &ended}
	})
	staffDo(r.e.StaffRetrieve, "591-0666")
	m.inTurn("lookups ended", func() {
		m.check("lookups_ended", "s-lookups_ended", expect{h1: "title.lookups_ended", msg: "state.lookups_ended"})
		m.each("logged out", func(mt *mtab) error {
			return waitJS(mt, `document.querySelector("footer [data-act=logout]").hidden && !document.querySelector("#s-lookups_ended [data-act=staff-login]").hidden`)
		})
	})
	if _, err := r.e.StaffLogin(ctx, "BADGE-AN", "", "en"); err != nil {
		t.Fatal(err)
	}
	m.check("staff-again", "v-staff-menu", expect{h1: "staff.menu.title"})

	// The technician: a forced door first, so there is an alarm to list.
	r.f.Inject(hardware.Event{Kind: hardware.DoorOpened, Addr: hardware.Address{Channel: 11}})
	r.waitFor("forced door alarm", func() bool { return len(r.e.Diagnostics(ctx).Alarms) > 0 })
	r.f.Inject(hardware.Event{Kind: hardware.DoorClosed, Addr: hardware.Address{Channel: 11}})
	m.inTurn("the technician's screen", func() {
		m.click(`#v-staff-menu [data-act=tech]`)
		m.each("diagnostics", func(mt *mtab) error {
			return waitJS(mt, `!!document.querySelector("[data-tech-body] table.alarms") && !!document.querySelector("[data-act=test-open][data-comp='12']")`)
		})
		m.check("tech", "v-tech", expect{h1: "tech.title"})
		m.each("alarm listed", func(mt *mtab) error {
			want, _ := m.cat.Text("alarm.forced_door", mt.lang)
			got, err := eval[string](mt, `document.querySelector("table.alarms tbody").innerText`)
			if err == nil && !strings.Contains(got, want) {
				err = fmt.Errorf("alarms %q, want %q", got, want)
			}
			return err
		})
	})
	// Test-open is the technician's: the backend says yes for this one.
	r.be.set(func() { r.be.staff["test_open:"] = wire.StaffResponse{Result: wire.StaffOK} })
	o = r.opens(11)
	if _, err := r.e.TestOpen(ctx, 12, "en"); err != nil {
		t.Fatal(err)
	}
	r.waitOpened(11, o)
	m.check("test_open", "s-test_open", expect{h1: "title.test_open", msg: "state.test_open", n: 12})
	r.close(11, false)

	// A door left open: after timeouts.door_left_open (1 s here) the page
	// asks to close it.
	lo := newRig(t, rigOptions{leftOpen: "1s"})
	m.open(lo)
	lo.be.set(func() { lo.be.verify["K1.lo"] = okAt("doc-lo", 1) })
	lo.item(1, true)
	o = lo.opens(1)
	lo.pickup(engine.PickupRequest{QR: "K1.lo", Lang: "en"})
	lo.waitOpened(1, o)
	m.inTurn("door left open", func() {
		m.check("door_left_open", "s-left_open", expect{h1: "title.left_open", msg: "left_open.msg", n: 2, citizen: true})
		// Nothing hides an open door: there is no "Start again" while it is
		// open (the engine goes on; the start screen would only hide it).
		m.each("no start again at an open door", func(mt *mtab) error {
			return waitJS(mt, `document.querySelector("footer [data-act=restart]").hidden`)
		})
	})
	lo.close(1, false)

	// A full disk (no room for the journal's reserve): no door of the
	// machine opens, and the citizen is told that the machine is out of
	// order and to call 1777, not that "this compartment" cannot open.
	full := newRig(t, rigOptions{diskFull: true})
	m.open(full)
	full.be.set(func() { full.be.verify["K1.full"] = okAt("doc-full", 1) })
	full.pickup(engine.PickupRequest{QR: "K1.full", Lang: "en"})
	m.inTurn("device out of order", func() {
		m.check("device_out_of_order", "s-device_out_of_order", expect{h1: "title.out_of_order", msg: "state.device_out_of_order", citizen: true})
		m.each("the machine out of order, call 1777", func(mt *mtab) error {
			want := map[string]string{
				"nl": "Dit toestel is buiten gebruik. Bel\u00a01777, wij helpen u verder.",
				"fr": "Cet appareil est hors service. Appelez le\u00a01777, nous vous aiderons.",
				"en": "This machine is out of order. Please call\u00a01777 for help.",
				"de": "Dieses Gerät ist außer Betrieb. Bitte rufen Sie\u00a01777\u00a0an, wir helfen Ihnen weiter.",
			}[mt.lang]
			got, err := eval[string](mt, `document.querySelector("#s-device_out_of_order").innerText`)
			if err == nil && !strings.Contains(got, want) {
				err = fmt.Errorf("screen %q, want %q", got, want)
			}
			return err
		})
	})
	if n := len(full.f.Pulses()); n != 0 {
		t.Fatalf("%d pulses on a full disk", n)
	}

	// The automaton: its carousel brings the slot, then the hatch opens.
	m.open(aut)
	aut.be.set(func() { aut.be.verify["K1.a2"] = okAt("doc-a2", 1) })
	aut.pickup(engine.PickupRequest{QR: "K1.a2", Lang: "en"})
	m.check("presenting", "s-presenting", expect{h1: "title.wait", msg: "state.presenting", hatch: true, citizen: true})
	aut.arrive(0, 1)
	m.check("open-automaton", "s-open", expect{h1: "title.open", msg: "hatch.open", hatch: true, citizen: true})

	// kluisd gone: the page says so and waits.
	aut.stopServer()
	m.check("offline", "v-offline", expect{h1: "title.wait", citizen: true})
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	// Written aside and renamed: browser tests running in parallel may
	// keep a screenshot of the same name (the last one stays, whole).
	f, err := os.CreateTemp(filepath.Dir(path), ".shot-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}
