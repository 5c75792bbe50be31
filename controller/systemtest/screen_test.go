package systemtest

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"kluis/controller/engine"
	"kluis/controller/kiosk/screen"
	"kluis/deploy/dev/browsertest"
	"kluis/deploy/dev/testenv"
)

// kioskPage is the real kiosk screen of a kluisd in a headless Chromium
// tab.
type kioskPage struct {
	w    *world
	n    *node
	tab  *browsertest.Tab
	cat  *screen.Catalog
	lang string
}

// shown is what the page shows: the visible section, its heading and its
// message, and the compartment marked on the drawing.
type shown struct {
	ID      string `json:"id"`
	H1      string `json:"h1"`
	Msg     string `json:"msg"`
	Marked  string `json:"marked"`
	Caption string `json:"caption"`
	Lang    string `json:"lang"`
}

const readShown = `(function(){
 var s = document.querySelector("main .view:not([hidden])");
 var fig = document.getElementById("drawing");
 var hl = document.querySelector(".device .comp.hl");
 var m = s && s.querySelector("[data-msg], .msg, .lead");
 return {id: s ? s.id : "", h1: s && s.querySelector("h1") ? s.querySelector("h1").textContent.trim() : "",
   msg: m ? m.textContent.trim() : "", marked: !fig.hidden && hl ? hl.getAttribute("data-comp") : "",
   caption: fig.hidden ? "" : fig.querySelector("figcaption").textContent.trim(), lang: document.documentElement.lang};
})()`

// text is the catalogue's text of key in the page's language.
func (p *kioskPage) text(key string, n int) string {
	p.w.t.Helper()
	s, err := p.cat.Text(key, p.lang)
	if err != nil {
		p.w.t.Fatal(err)
	}
	return strings.NewReplacer("{n}", fmt.Sprint(n), "{m}", "10", "{s}", "").Replace(s)
}

// expectScreen waits until the page shows section id (at most 20 s), then
// checks its heading and message against the catalogue (n is the
// compartment, 0 for none; it must be marked on the drawing) and keeps a
// screenshot (axe-core checks every screen in controller/kiosk/screen).
func (p *kioskPage) expectScreen(id, h1, msg string, n int) shown {
	t := p.w.t
	t.Helper()
	p.tab.WaitFor(t, fmt.Sprintf(`(function(){var e=document.getElementById(%q);return !!e && !e.hidden})()`, id), 20*time.Second)
	got, err := chromedp.Run(p.tab.Ctx, chromedp.Evaluate[shown](readShown))
	if err != nil {
		t.Fatal(err)
	}
	if got.Lang != p.lang {
		t.Errorf("page in %q, want %q", got.Lang, p.lang)
	}
	if h1 != "" && got.H1 != p.text(h1, n) {
		t.Errorf("%s: heading %q, want %q", id, got.H1, p.text(h1, n))
	}
	if msg != "" && got.Msg != p.text(msg, n) {
		t.Errorf("%s: message %q, want %q", id, got.Msg, p.text(msg, n))
	}
	if n > 0 && (got.Marked != fmt.Sprint(n) || got.Caption != p.text("drawing.n", n)) {
		t.Errorf("%s: drawing marks %q (%q), want compartment %d", id, got.Marked, got.Caption, n)
	}
	p.tab.Screenshot(t, "kiosk/e2e/"+p.lang+"-"+id)
	return got
}

func (p *kioskPage) click(sel string) {
	p.w.t.Helper()
	p.tab.Do(p.w.t, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// toStart goes back to the start screen: a real click on "Start again"
// where the page offers it (the start screen itself has none, and the
// engine may have gone back to idle by itself meanwhile).
func (p *kioskPage) toStart() {
	p.w.t.Helper()
	if shown, _ := chromedp.Run(p.tab.Ctx, chromedp.Evaluate[bool](`!document.querySelector("footer [data-act=restart]").hidden`)); shown {
		ctx, cancel := context.WithTimeout(p.tab.Ctx, 10*time.Second)
		_ = chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`footer [data-act=restart]`), chromedp.NodeVisible))
		cancel()
	}
	p.expectScreen("v-start", "start.title", "state.idle", 0)
}

// keypad types digits on the on-screen keypad of section id (real clicks).
func (p *kioskPage) keypad(id, digits string) {
	p.w.t.Helper()
	for _, d := range digits {
		p.click(fmt.Sprintf(`#%s [data-key="%c"]`, id, d))
	}
}

// open navigates to the kiosk in lang.
func (p *kioskPage) open(lang string) {
	p.w.t.Helper()
	p.lang = lang
	p.tab.Do(p.w.t, chromedp.Navigate(p.n.kiosk.Base+"/?lang="+lang))
	p.tab.WaitFor(p.w.t, `document.readyState === "complete"`, 20*time.Second)
}

// dobDigits is a date of birth as typed on the keypad: day, month, year.
func dobDigits(birth string) string {
	d, err := time.Parse(time.DateOnly, birth)
	if err != nil {
		panic(err)
	}
	return d.Format("02012006")
}

// TestKioskScreen drives the real kiosk screen in headless Chromium
// against a real kluisd, kluis-sim and kluis-backend: a staff load at the
// device, a QR pickup typed by a keyboard-wedge scanner, a PIN and date of
// birth on the on-screen keypads, a wrong PIN, the lockout screen, a
// language switch and an offline pickup. Each step checks what the screen
// says (from the catalogue) and what the simulator did (exactly one pulse,
// at the right door).
func TestKioskScreen(t *testing.T) {
	if testing.Short() {
		t.Skip("system test: starts the backend, the simulator, kluisd and a browser")
	}
	parallelWorld(t)
	w := newWorldWith(t, worldOptions{lockerOnly: true})
	locker := w.nodes[lockerID]
	b := browsertest.New(t, browsertest.Options{Timeout: 10 * time.Minute})
	cat, err := screen.NewCatalog()
	if err != nil {
		t.Fatal(err)
	}
	p := &kioskPage{w: w, n: locker, tab: b.NewTab(t, 800, 480), cat: cat}
	ctx := context.Background()
	step := func(name string, fn func(t *testing.T)) {
		if !t.Run(name, func(t *testing.T) {
			w.t = t
			defer func() { w.t = t }()
			fn(t)
		}) {
			t.Logf("--- kluisd %s ---\n%s", lockerID, locker.proc.Tail(4000))
			t.Logf("--- kluis-backend ---\n%s", w.backend.Tail(3000))
			t.FailNow()
		}
	}

	var loaded *doc
	step("staff load at the device", func(t *testing.T) {
		loaded = w.register("driving_licence", lockerID)
		p.open("en")
		p.expectScreen("v-start", "start.title", "state.idle", 0)
		p.click(`footer [data-act=staff-login]`)
		p.expectScreen("v-staff-login", "staff.login.title", "", 0)
		p.keypad("v-staff-login", w.staffPIN)
		p.click(`#v-staff-login [data-key=ok]`)
		p.expectScreen("v-staff-menu", "staff.menu.title", "", 0)
		p.tab.WaitText(t, "#v-staff-menu p", "Logged in as an.balie.", 5*time.Second)
		p.click(`#v-staff-menu [data-act=load]`)
		p.expectScreen("v-staff-load", "staff.load", "", 0)
		// The document number is scanned (a wedge scanner types into the
		// focused field).
		p0 := w.pulseCount(lockerID)
		p.tab.Do(t, chromedp.KeyEvent(loaded.number+"\r"))
		p.tab.WaitFor(t, `!document.getElementById("s-loading").hidden`, 20*time.Second)
		w.compOf(loaded)
		n := loaded.comp.Number
		p.expectScreen("s-loading", "title.door_open", "state.loading", n)
		w.waitDoor(lockerID, loaded.comp.Board, loaded.comp.Channel, true)
		time.Sleep(humanPause)
		w.act(lockerID, loaded.comp.Board, loaded.comp.Channel, "put", url.Values{"label": {loaded.label}})
		time.Sleep(humanPause)
		w.act(lockerID, loaded.comp.Board, loaded.comp.Channel, "close", nil)
		p.expectScreen("s-loaded", "title.loaded", "state.loaded", n)
		w.exactlyOnePulse(lockerID, p0, loaded.comp.Board, loaded.comp.Channel)
		w.waitState(loaded, "notified")
		if a := loaded.ActorOf("loaded"); a != "device:"+lockerID {
			t.Fatalf("loaded by %q, want device:%s", a, lockerID)
		}
		p.click(`footer [data-act=logout]`)
		p.expectScreen("v-start", "start.title", "state.idle", 0)
		if s, err := locker.kiosk.Session(ctx); err != nil || s.Staff != "" {
			t.Fatalf("after logging out the kiosk shows staff %q (%v)", s.Staff, err)
		}
		w.readMail(loaded)
	})

	step("QR pickup typed by a keyboard-wedge scanner", func(t *testing.T) {
		d := loaded
		n := d.comp.Number
		p0 := w.pulseCount(lockerID)
		// Nothing has focus: the scanner types into the page.
		p.tab.Do(t, chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`))
		p.tab.Do(t, browsertest.Scan(d.mail.QR+"\r"))
		p.expectScreen("s-open", "title.open", "state.open", n)
		w.waitDoor(lockerID, d.comp.Board, d.comp.Channel, true)
		w.takeAndClose(d)
		p.expectScreen("s-done", "title.done", "state.done", 0)
		w.exactlyOnePulse(lockerID, p0, d.comp.Board, d.comp.Channel)
		w.waitState(d, "collected")
	})

	var e *doc
	step("PIN and date of birth on the on-screen keypads", func(t *testing.T) {
		e = w.register("eid", lockerID)
		w.load(e)
		n := e.comp.Number
		p0 := w.pulseCount(lockerID)
		p.toStart()
		p.click(`#v-start [data-act=pin]`)
		p.keypad("v-pin", e.mail.PIN)
		p.click(`#v-pin [data-key=ok]`)
		p.expectScreen("v-birth", "birth.title", "state.need_birth_date", 0)
		p.keypad("v-birth", dobDigits(e.birth))
		p.click(`#v-birth [data-key=ok]`)
		p.expectScreen("s-open", "title.open", "state.open", n)
		w.waitDoor(lockerID, e.comp.Board, e.comp.Channel, true)
		w.takeAndClose(e)
		p.expectScreen("s-done", "title.done", "state.done", 0)
		w.exactlyOnePulse(lockerID, p0, e.comp.Board, e.comp.Channel)
		w.waitState(e, "collected")
	})

	step("language switch: a pickup in French", func(t *testing.T) {
		f := w.register("driving_licence", lockerID)
		w.load(f)
		n := f.comp.Number
		p.toStart()
		p.click(`a[data-lang=fr]`)
		p.lang = "fr"
		p.tab.WaitFor(t, `document.documentElement.lang === "fr" && document.readyState === "complete"`, 20*time.Second)
		p.expectScreen("v-start", "start.title", "state.idle", 0)
		p.tab.WaitText(t, "footer .help", "Appelez le\u00a01777", 5*time.Second)
		p0 := w.pulseCount(lockerID)
		p.tab.Do(t, browsertest.Scan(f.mail.QR+"\r"))
		p.expectScreen("s-open", "title.open", "state.open", n)
		if s, err := locker.kiosk.Session(ctx); err != nil || s.Lang != "fr" {
			t.Fatalf("kluisd's screen in %q (%v), want fr", s.Lang, err)
		}
		w.waitDoor(lockerID, f.comp.Board, f.comp.Channel, true)
		w.takeAndClose(f)
		p.expectScreen("s-done", "title.done", "state.done", 0)
		w.exactlyOnePulse(lockerID, p0, f.comp.Board, f.comp.Channel)
		w.waitState(f, "collected")
		p.click(`a[data-lang=en]`)
		p.lang = "en"
		p.tab.WaitFor(t, `document.documentElement.lang === "en" && document.readyState === "complete"`, 20*time.Second)
	})

	step("offline pickup: the backend is gone, the screen works on", func(t *testing.T) {
		g := w.register("driving_licence", lockerID)
		w.load(g)
		n := g.comp.Number
		testenv.MustPoll(t, 30*time.Second, "the code in kluisd's offline cache", func(context.Context) (bool, string, error) {
			return locker.inOfflineCache(g.ID), "", nil
		})
		before, _ := locker.kluisd.Metric(ctx, "kluisd_verifications_total", `source="offline"`)
		w.killBackend()
		p.toStart()
		p0 := w.pulseCount(lockerID)
		p.tab.Do(t, browsertest.Scan(g.mail.QR+"\r"))
		p.expectScreen("s-open", "title.open", "state.open", n)
		w.waitDoor(lockerID, g.comp.Board, g.comp.Channel, true)
		w.takeAndClose(g)
		p.expectScreen("s-done", "title.done", "state.done", 0)
		w.exactlyOnePulse(lockerID, p0, g.comp.Board, g.comp.Channel)
		w.waitMetricAbove(locker, "kluisd_verifications_total", `source="offline"`, before)
		w.restartBackend()
		w.waitState(g, "collected")
		w.waitBacklogEmpty(locker)
		if s, err := locker.kiosk.Session(ctx); err != nil || s.State == engine.StateError {
			t.Fatalf("kiosk %+v (%v)", s, err)
		}
	})
	step("a wrong PIN, then the lockout screen", func(t *testing.T) {
		p0 := w.pulseCount(lockerID)
		p.toStart()
		p.click(`#v-start [data-act=pin]`)
		for i := 0; i < lockoutAfter; i++ {
			p.expectScreen("v-pin", "pin.title", "", 0)
			p.keypad("v-pin", wrongPIN(e.mail.PIN))
			p.click(`#v-pin [data-key=ok]`)
			// The date of birth is asked for first, or the PIN is refused.
			p.tab.WaitFor(t, `!document.getElementById("v-birth").hidden || !document.getElementById("s-wrong_code").hidden || !document.getElementById("s-locked_out").hidden`, 20*time.Second)
			if ok, _ := chromedp.Run(p.tab.Ctx, chromedp.Evaluate[bool](`!document.getElementById("v-birth").hidden`)); ok {
				p.keypad("v-birth", dobDigits(e.birth))
				p.click(`#v-birth [data-key=ok]`)
			}
			if i < lockoutAfter-1 {
				p.expectScreen("s-wrong_code", "title.wrong_code", "state.wrong_code", 0)
				// "Try again" after a refused PIN: the PIN keypad, empty.
				p.click(`#s-wrong_code [data-act=again]`)
			}
		}
		p.expectScreen("s-locked_out", "title.locked_out", "state.locked_out", 0)
		// lockoutLength is 10 minutes: "try again in 10 minutes".
		p.tab.WaitText(t, "#s-locked_out .retry", p.text("retry.many", 0), 5*time.Second)
		w.noPulse(lockerID, p0)
		// A clerk lifts the lockout at the device: staff login, the lift
		// button, then the start screen again and PIN entry open.
		p.toStart()
		p.click(`footer [data-act=staff-login]`)
		p.expectScreen("v-staff-login", "staff.login.title", "", 0)
		p.keypad("v-staff-login", w.staffPIN)
		p.click(`#v-staff-login [data-key=ok]`)
		p.expectScreen("v-staff-menu", "staff.menu.title", "", 0)
		p.click(`#v-staff-menu [data-act=unlock]`)
		p.expectScreen("s-lockout_cleared", "title.lockout_cleared", "state.lockout_cleared", 0)
		p.click(`footer [data-act=logout]`)
		p.expectScreen("v-start", "start.title", "state.idle", 0)
		w.noPulse(lockerID, p0)
		// (The diagnostics are for a technician logged in: the metric.)
		if v, err := locker.kluisd.Metric(ctx, "kluisd_code_entry_locked", ""); err != nil || v != 0 {
			t.Fatalf("after the staff lift the kiosk's PIN entry is still locked: kluisd_code_entry_locked %v (%v)", v, err)
		}
	})

}
