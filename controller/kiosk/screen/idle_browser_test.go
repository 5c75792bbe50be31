package screen_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"kluis/controller/engine"
	"kluis/controller/kiosk/screen"
	"kluis/controller/wire"
	"kluis/deploy/dev/browsertest"
)

// recordViews makes the page note every section it shows, in order, with
// the typed PIN's dots and the staff PIN's at that moment and whether the
// idle warning shows (a MutationObserver on the sections' and the
// warning's hidden attributes: each render is one entry, however briefly
// it stayed).
const recordViews = `(function(){
  window.__seen = [];
  var note = function () {
    var v = document.querySelector("main .view:not([hidden])");
    var e = {id: v ? v.id : "", pin: document.querySelector("[data-out=pin]").textContent,
      staff: document.querySelector("[data-out=staff-pin]").textContent,
      warn: !document.getElementById("idle-warn").hidden};
    var last = window.__seen[window.__seen.length - 1];
    if (!last || last.id !== e.id || last.pin !== e.pin || last.staff !== e.staff || last.warn !== e.warn) { window.__seen.push(e); }
  };
  var o = new MutationObserver(note);
  o.observe(document.querySelector("main"), {subtree: true, attributes: true, attributeFilter: ["hidden"]});
  o.observe(document.getElementById("idle-warn"), {attributes: true, attributeFilter: ["hidden"]});
  window.__warned = [];
  new MutationObserver(function () {
    var t = document.querySelector("#idle-warn [data-idle-shown]").textContent;
    if (window.__warned[window.__warned.length - 1] !== t) { window.__warned.push(t); }
  }).observe(document.querySelector("#idle-warn [data-idle-shown]"), {childList: true, characterData: true, subtree: true});
  note();
  return true;
})()`

// readSeen is what recordViews noted.
func readSeen(t *testing.T, tab *browsertest.Tab) []seenView {
	t.Helper()
	raw, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[string](`JSON.stringify(window.__seen)`))
	if err != nil {
		t.Fatal(err)
	}
	var seen []seenView
	if err := json.Unmarshal([]byte(raw), &seen); err != nil {
		t.Fatal(err)
	}
	return seen
}

type seenView struct {
	ID    string `json:"id"`
	PIN   string `json:"pin"`
	Staff string `json:"staff"`
	Warn  bool   `json:"warn"`
}

// TestIdleReturnsToTheStartFromEveryScreen: a kiosk left alone goes back
// to the start screen from every screen a person can leave it on, never
// to a keypad on the way (with a PIN typed before still held): the
// date-of-birth keypad left alone (kluisd ends need_birth_date
// timeouts.session after it came, or after the last touch the page told
// it of: TestSlowTypingKeepsTheDateOfBirth), a refusal after a PIN, a
// staff login refused, the staff login keypad left alone, and the staff
// menu (kluisd logs staff out after kiosk.staff_idle). The start screen's
// own return (to the default language) and the PIN keypad's are
// TestScreenBehaviour's idle subtest. Each case has its own kiosk with a
// 6 s timeouts.session and kiosk.staff_idle, in parallel in one browser.
// The warning before the return ("In 1 seconds the screen goes back to
// the start") is gone when the start screen shows.
func TestIdleReturnsToTheStartFromEveryScreen(t *testing.T) {
	if testing.Short() {
		t.Skip("browser")
	}
	t.Parallel()
	b := browsertest.New(t, browsertest.Options{})
	exp := time.Now().Add(time.Hour)
	cat, err := screen.NewCatalog()
	if err != nil {
		t.Fatal(err)
	}
	text := func(t *testing.T, key string) string {
		t.Helper()
		s, err := cat.Text(key, "nl")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, c := range []struct {
		name string
		// reach brings the tab to the screen left alone (target).
		reach  func(t *testing.T, r *rig, tab *browsertest.Tab)
		target string
	}{
		{name: "date of birth left alone", target: "v-birth", reach: toBirth},
		{name: "wrong PIN", target: "s-wrong_code",
			reach: func(t *testing.T, r *rig, tab *browsertest.Tab) {
				clickAll(t, tab, `#v-start [data-act=pin]`)
				typePad(t, tab, "v-pin", "11122233")
				clickAll(t, tab, `#v-pin [data-key=ok]`)
			}},
		{name: "staff login keypad", target: "v-staff-login",
			reach: func(t *testing.T, r *rig, tab *browsertest.Tab) {
				clickAll(t, tab, `footer [data-act=staff-login]`)
				typePad(t, tab, "v-staff-login", "47")
			}},
		{name: "staff login refused", target: "s-staff_denied",
			reach: func(t *testing.T, r *rig, tab *browsertest.Tab) {
				clickAll(t, tab, `footer [data-act=staff-login]`)
				typePad(t, tab, "v-staff-login", "9999")
				clickAll(t, tab, `#v-staff-login [data-key=ok]`)
			}},
		{name: "staff menu", target: "v-staff-menu",
			reach: func(t *testing.T, r *rig, tab *browsertest.Tab) {
				clickAll(t, tab, `footer [data-act=staff-login]`)
				typePad(t, tab, "v-staff-login", "4711")
				clickAll(t, tab, `#v-staff-login [data-key=ok]`)
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, rigOptions{session: "6s", kiosk: "staff_idle: 6s"})
			r.be.set(func() {
				r.be.verify["24681357/"] = wire.VerifyResponse{Result: wire.VerifySecondFactorRequired}
				r.be.staff["login:4711"] = wire.StaffResponse{Result: wire.StaffOK, Session: "s1", StaffID: "u1",
					StaffName: "Clerk", Expires: &exp, Role: wire.RoleStaff}
			})
			tab := b.NewTab(t, 800, 480)
			tab.Do(t, chromedp.Navigate(r.base+"/?lang=nl"))
			tab.WaitFor(t, `document.readyState === "complete" && !document.getElementById("v-start").hidden`, 20*time.Second)
			tab.WaitFor(t, recordViews, 5*time.Second)
			c.reach(t, r, tab)
			tab.WaitFor(t, `!document.getElementById("`+c.target+`").hidden`, 30*time.Second)
			tab.Screenshot(t, "kiosk/idle/"+strings.ReplaceAll(c.name, " ", "-"))
			tab.WaitFor(t, `!document.getElementById("v-start").hidden && document.documentElement.lang === "nl"`, time.Minute)
			if s := r.e.Screen(); s.State != engine.StateIdle || s.Staff != "" {
				t.Fatalf("engine %s, staff %q after the idle return", s.State, s.Staff)
			}
			seen := readSeen(t, tab)
			// From the screen left alone straight to the start, with
			// nothing typed still held.
			at := -1
			for i, v := range seen {
				if v.ID == c.target {
					at = i
				}
			}
			if at < 0 {
				t.Fatalf("%s never recorded: %+v", c.target, seen)
			}
			for _, v := range seen[at+1:] {
				if v.ID != "v-start" || v.PIN != "" || v.Staff != "" || v.Warn {
					t.Fatalf("after %s the page showed %+v on its way back, want the start screen with nothing typed and no idle warning: %+v", c.target, v, seen[at:])
				}
			}
			tab.Screenshot(t, "kiosk/idle/"+strings.ReplaceAll(c.name, " ", "-")+"-back")
			// The countdown says "1 second", not "1 seconds" (whether it
			// showed 1 depends on when the page's ticks fell).
			raw, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[string](`JSON.stringify(window.__warned)`))
			if err != nil {
				t.Fatal(err)
			}
			var warned []string
			if err := json.Unmarshal([]byte(raw), &warned); err != nil {
				t.Fatal(err)
			}
			many, one := text(t, "idle.warn"), text(t, "idle.warn.one")
			for _, w := range warned {
				if w == strings.ReplaceAll(many, "{n}", "1") {
					t.Fatalf("the warning said %q, want %q", w, one)
				}
			}
			t.Logf("warnings shown: %q", warned)
		})
	}
}

// toBirth types a PIN that needs the date of birth.
func toBirth(t *testing.T, r *rig, tab *browsertest.Tab) {
	clickAll(t, tab, `#v-start [data-act=pin]`)
	typePad(t, tab, "v-pin", "24681357")
	clickAll(t, tab, `#v-pin [data-key=ok]`)
}

// clickAll clicks sel (a real mouse click).
func clickAll(t *testing.T, tab *browsertest.Tab, sel string) {
	t.Helper()
	tab.Do(t, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// typePad taps digits on the keypad of the section id.
func typePad(t *testing.T, tab *browsertest.Tab, id, digits string) {
	t.Helper()
	for _, k := range digits {
		clickAll(t, tab, `#`+id+` [data-key="`+string(k)+`"]`)
	}
}

// TestSlowTypingKeepsTheDateOfBirth: a citizen who taps the date-of-birth
// keypad slowly (one key a second, with a 6 s timeouts.session) is not
// sent back to the start while typing, however long past
// timeouts.session: the page tells kluisd of the taps (POST
// /kiosk/v1/activity, throttled) and kluisd puts the screen's idle return
// off. Once the taps stop, kluisd and the page go back to the start
// timeouts.session later, with nothing typed kept.
func TestSlowTypingKeepsTheDateOfBirth(t *testing.T) {
	if testing.Short() {
		t.Skip("browser")
	}
	t.Parallel()
	b := browsertest.New(t, browsertest.Options{})
	r := newRig(t, rigOptions{session: "6s"})
	r.be.set(func() {
		r.be.verify["24681357/"] = wire.VerifyResponse{Result: wire.VerifySecondFactorRequired}
	})
	tab := b.NewTab(t, 800, 480)
	tab.Do(t, chromedp.Navigate(r.base+"/?lang=nl"))
	tab.WaitFor(t, `document.readyState === "complete" && !document.getElementById("v-start").hidden`, 20*time.Second)
	tab.WaitFor(t, recordViews, 5*time.Second)
	toBirth(t, r, tab)
	tab.WaitFor(t, `!document.getElementById("v-birth").hidden`, 30*time.Second)
	birth := r.e.Screen()
	if birth.State != engine.StateNeedBirthDate {
		t.Fatalf("engine %s, want %s", birth.State, engine.StateNeedBirthDate)
	}
	// The citizen taps a key every second (the page's own timer: a
	// busy machine's round trips do not space the taps out).
	tab.WaitFor(t, `(function(){
		window.__taps = 0;
		window.__tapper = setInterval(function () {
			var k = document.querySelector('#v-birth [data-key="1"]');
			if (k && !k.closest("[hidden]")) { k.click(); window.__taps++; }
		}, 1000);
		return true})()`, 5*time.Second)
	// Three times timeouts.session after the screen came, the same
	// screen is still shown: kluisd did not end it.
	session := 6 * time.Second
	tab.WaitFor(t, `window.__taps >= 3`, 30*time.Second)
	for time.Since(birth.At) <= 3*session {
		s := r.e.Screen()
		if s.Seq != birth.Seq || s.State != engine.StateNeedBirthDate {
			t.Fatalf("%s after the date-of-birth screen came, while someone taps: engine %s (seq %d), want %s (seq %d)",
				time.Since(birth.At).Round(time.Second), s.State, s.Seq, engine.StateNeedBirthDate, birth.Seq)
		}
		tab.WaitFor(t, `!document.getElementById("v-birth").hidden`, 5*time.Second)
		time.Sleep(500 * time.Millisecond) // pacing the checks only
	}
	tab.Screenshot(t, "kiosk/idle/date-of-birth-slow-typing")
	tab.WaitFor(t, `(function(){ clearInterval(window.__tapper); return true })()`, 5*time.Second)
	// Left alone now: back to the start by kluisd's own return.
	tab.WaitFor(t, `!document.getElementById("v-start").hidden && document.documentElement.lang === "nl"`, time.Minute)
	for r.e.Screen().State != engine.StateIdle {
		tab.WaitFor(t, `true`, 5*time.Second)
		time.Sleep(200 * time.Millisecond)
	}
	seen := readSeen(t, tab)
	at := -1
	for i, v := range seen {
		if v.ID == "v-birth" && at < 0 {
			at = i
		}
	}
	if at < 0 {
		t.Fatalf("v-birth never recorded: %+v", seen)
	}
	// From the date of birth (with or without the warning) to the start
	// once, with nothing typed kept.
	for i, v := range seen[at:] {
		if v.ID == "v-birth" {
			if i > 0 && seen[at+i-1].ID != "v-birth" {
				t.Fatalf("the date-of-birth screen came twice: %+v", seen[at:])
			}
			continue
		}
		if v.ID != "v-start" || v.PIN != "" || v.Warn {
			t.Fatalf("after the date of birth the page showed %+v, want the start screen with nothing typed: %+v", v, seen[at:])
		}
	}
}
