package screen_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"kluis/controller/engine"
	"kluis/controller/kiosk/screen"
	"kluis/controller/wire"
)

// TestCounterHoursOnTheHelpScreens: with kiosk.counter_hours configured,
// the screens that send a citizen to the counter (an expired code, the
// PIN lockout, a compartment out of order, no answer, a door that did not
// open) give its opening hours in the page's language on the 24 h clock,
// above "Is the counter closed? Call 1777."; and the start screen and
// these name the machine as the citizen's letter does
// (kiosk.display_name: "Stadhuis Kortrijk, automaat 2"). In every
// language at 800x480, fitting with normal text (the door that did not
// open, its drawing beside the hours, was 41 px too tall in German and
// French) and passing axe, large text too; with large text they fit as
// well, the hours at the large setting's size (see onceAndNoDrawing).
func TestCounterHoursOnTheHelpScreens(t *testing.T) {
	const name = "Stadhuis Kortrijk, automaat 2"
	hours := `counter_hours:
  mon: [08:30-12:30, 13:30-16:00]
  tue: [08:30-12:30, 13:30-16:00]
  wed: [08:30-12:30, 13:30-16:00]
  thu: [08:30-12:30, 13:30-16:00]
  fri: [08:30-12:30, 13:30-16:00]
  sat: [09:00-12:00]`
	want := map[string]string{
		"nl": "Openingsuren van het loket:|Maandag tot en met vrijdag: 08:30 tot 12:30 en 13:30 tot 16:00|Zaterdag: 09:00 tot 12:00|Zondag: gesloten",
		"fr": "Heures d'ouverture du guichet\u00a0:|Du lundi au vendredi\u00a0: de 08:30 à 12:30 et de 13:30 à 16:00|Samedi\u00a0: de 09:00 à 12:00|Dimanche\u00a0: fermé",
		"en": "Opening hours of the counter:|Monday to Friday: 08:30 to 12:30 and 13:30 to 16:00|Saturday: 09:00 to 12:00|Sunday: closed",
		"de": "Öffnungszeiten des Schalters:|Montag bis Freitag: 08:30 bis 12:30 und 13:30 bis 16:00|Samstag: 09:00 bis 12:00|Sonntag: geschlossen",
	}
	onSmallPanelWith(t, rigOptions{kiosk: hours + "\ndisplay_name: \"" + name + "\""}, func(t *testing.T, p panelRun) {
		named := func(where string) {
			t.Helper()
			want := strings.ReplaceAll(p.text(t, "place"), "{name}", name)
			got, err := eval[string](p.mt, `document.querySelector("header .place").innerText.replace(/\s+/g, " ").trim()`)
			if err != nil || got != strings.ReplaceAll(want, "\u00a0", " ") {
				t.Fatalf("%s: the machine is named %q (%v), want %q", where, got, err, want)
			}
		}
		p.m.check("place-start", "v-start", expect{h1: "start.title", msg: "state.idle", citizen: true})
		named("start")
		shown := func(sec string) {
			t.Helper()
			named(sec)
			got, err := eval[[]string](p.mt, `Array.prototype.map.call(document.querySelectorAll("#`+sec+` .hours p, #`+sec+` .hours li"),
				function(e){ return e.textContent.trim(); })`)
			if err != nil || strings.Join(got, "|") != want[p.lang] {
				t.Fatalf("%s: opening hours %q (%v), want %q", sec, got, err, want[p.lang])
			}
			onceAndNoDrawing(t, p, sec)
			if sec == "s-not_opened" {
				compartmentInWords(t, p, sec, 7)
			}
			// With large text, the hours at the large setting's size.
			small, err := eval[[]string](p.mt, `(function(){ var root = parseFloat(getComputedStyle(document.documentElement).fontSize);
				return Array.prototype.filter.call(document.querySelectorAll("#`+sec+` .hours p, #`+sec+` .hours li"),
					function(e){ return parseFloat(getComputedStyle(e).fontSize) < root - 0.01; }).map(function(e){ return e.textContent.trim() + " " + getComputedStyle(e).fontSize; }); })()`)
			if err != nil || (p.mt.large && len(small) > 0) {
				t.Fatalf("%s with large text: hours smaller than the large setting's text: %q (%v)", sec, small, err)
			}
		}
		p.r.be.set(func() {
			p.r.be.verify["K1.old"] = wire.VerifyResponse{Result: wire.VerifyExpired}
			p.r.be.verify["123456789/"] = wire.VerifyResponse{Result: wire.VerifyDeviceLockedOut, RetryAfterS: 600}
		})
		p.r.pickup(engine.PickupRequest{QR: "K1.old", Lang: p.lang})
		p.m.check("hours-expired", "s-expired", expect{h1: "title.expired", msg: "state.expired", next: "next.expired", citizen: true, large: true})
		shown("s-expired")
		p.r.pickup(engine.PickupRequest{PIN: "123456789", Lang: p.lang})
		p.m.check("hours-locked_out", "s-locked_out", expect{h1: "title.locked_out", msg: "state.locked_out", next: "next.closed", citizen: true, large: true})
		shown("s-locked_out")
		p.r.be.set(func() { p.r.be.verify["K1.nowhere"] = okAt("doc-x", 15) }) // not a compartment of this device
		p.r.pickup(engine.PickupRequest{QR: "K1.nowhere", Lang: p.lang})
		p.m.check("hours-out_of_order", "s-out_of_order", expect{h1: "title.out_of_order", msg: "state.out_of_order", next: "next.closed", citizen: true, large: true})
		shown("s-out_of_order")
		p.r.be.set(func() { p.r.be.down = true })
		p.r.pickup(engine.PickupRequest{QR: "K1.c3", Lang: p.lang}) // no answer and nothing to verify offline with
		p.r.be.set(func() { p.r.be.down = false })
		p.m.check("hours-error", "s-error", expect{h1: "title.problem", msg: "state.error", next: "next.closed", citizen: true, large: true})
		shown("s-error")
		// The door stays shut: the drawing beside the message.
		p.r.be.set(func() { p.r.be.verify["K1.c7"] = okAt("doc-7", 6) })
		p.r.item(6, true)
		p.r.setOpenOnPulse(false)
		p.r.pickup(engine.PickupRequest{QR: "K1.c7", Lang: p.lang})
		p.m.check("hours-not_opened", "s-not_opened", expect{h1: "title.problem", msg: "state.not_opened", next: "next.closed", n: 7, citizen: true, large: true})
		shown("s-not_opened")
	})
}

// TestClosedDatesOnTheSmallPanel: with kiosk.counter_closed naming today
// and tomorrow (open all day by the weekly hours), the lockout screen
// says first that the counter is closed then and when it opens again,
// above the opening hours; it still fits the 800x480 panel without
// scrolling and passes axe, in every language, large text off and on.
//
// The device's clock (engine and kiosk) runs from a Wednesday morning:
// on the real clock, on a Sunday after 23:00 (Sunday's hours over, so
// today no longer counts) the note named Monday alone ("closed.on.one")
// and the test failed; from 23:59 a date computed before midnight was
// yesterday's by the time the screen was drawn.
func TestClosedDatesOnTheSmallPanel(t *testing.T) {
	shift := time.Until(time.Date(2026, 12, 9, 10, 0, 0, 0, time.Local))
	clock := func() time.Time { return time.Now().Add(shift) }
	now := clock()
	today, tomorrow := now.Format(time.DateOnly), now.AddDate(0, 0, 1).Format(time.DateOnly)
	hours := `counter_hours:
  mon: [00:00-12:00, 12:30-24:00]
  tue: [00:00-12:00, 12:30-24:00]
  wed: [00:00-12:00, 12:30-24:00]
  thu: [00:00-12:00, 12:30-24:00]
  fri: [00:00-12:00, 12:30-24:00]
  sat: [00:00-24:00]
  sun: [00:00-23:00]
counter_closed: [` + today + `, ` + tomorrow + `]`
	onSmallPanelWith(t, rigOptions{kiosk: hours, clock: clock}, func(t *testing.T, p panelRun) {
		p.r.be.set(func() {
			p.r.be.verify["123456789/"] = wire.VerifyResponse{Result: wire.VerifyDeviceLockedOut, RetryAfterS: 600}
		})
		p.r.pickup(engine.PickupRequest{PIN: "123456789", Lang: p.lang})
		p.m.check("closed-locked_out", "s-locked_out", expect{h1: "title.locked_out", msg: "state.locked_out", next: "next.closed", citizen: true, large: true})
		closedNoteFirst(t, p, "s-locked_out")
		if err := headerAtTheTextSize(p.cat, p.mt); err != nil {
			t.Fatal(err)
		}
		// The door that did not open, the most on one screen: its "Try
		// again" too, and the compartment in words with large text.
		p.r.be.set(func() { p.r.be.verify["K1.c7"] = okAt("doc-7", 6) })
		p.r.item(6, true)
		p.r.setOpenOnPulse(false)
		p.r.pickup(engine.PickupRequest{QR: "K1.c7", Lang: p.lang})
		p.m.check("closed-not_opened", "s-not_opened", expect{h1: "title.problem", msg: "state.not_opened", next: "next.closed", n: 7, citizen: true, large: true})
		closedNoteFirst(t, p, "s-not_opened")
		compartmentInWords(t, p, "s-not_opened", 7)
		p.wantButtons(t, "s-not_opened", p.text(t, "again"))
		// Try again (a real click) goes to the start screen.
		p.click(t, `#s-not_opened [data-act=again]`)
		p.m.check("closed-not_opened-again", "v-start", expect{h1: "start.title", msg: "state.idle", citizen: true})
	})
}

// closedNoteFirst: on the screen sec, the hours block says the closed
// dates and the next opening first, then the week's hours; with large
// text on the panel the note is at the large setting's size, and the week
// is left out for the eye (the note says when the counter opens again;
// the panel has no room for both) but still read by a screen reader;
// with normal text the week is shown.
func closedNoteFirst(t *testing.T, p panelRun, sec string) {
	t.Helper()
	got, err := eval[[]string](p.mt, `Array.prototype.map.call(document.querySelectorAll("#`+sec+` .hours > *"),
		function(e){ return e.className + ":" + e.textContent.trim(); })`)
	if err != nil {
		t.Fatal(err)
	}
	onceAndNoDrawing(t, p, sec)
	on := strings.SplitN(p.text(t, "closed.on.many"), "{a}", 2)[0]
	again := strings.SplitN(p.text(t, "closed.next"), "{a}", 2)[0]
	if len(got) != 3 || !strings.HasPrefix(got[0], "closed-note:"+on) || !strings.Contains(got[0], " "+again) ||
		got[1] != ":"+p.text(t, "hours.title") {
		t.Fatalf("%s: the hours block reads %q, want the closed dates (%q ... %q ...) above %q and the hours", sec, got, on, again, p.text(t, "hours.title"))
	}
	type look struct {
		Note, Root float64
		Week       []float64 // the title's and the lines' heights on screen
	}
	l, err := eval[look](p.mt, `(function(){ var h = document.querySelector("#`+sec+` .hours");
		return {note: parseFloat(getComputedStyle(h.querySelector(".closed-note")).fontSize),
			root: parseFloat(getComputedStyle(document.documentElement).fontSize),
			week: Array.prototype.map.call(h.querySelectorAll(":scope > :not(.closed-note)"), function(e){ return e.getBoundingClientRect().height; })}; })()`)
	if err != nil {
		t.Fatal(err)
	}
	shown := 0
	for _, h := range l.Week {
		if h > 1 {
			shown++
		}
	}
	if p.mt.large {
		if l.Note < l.Root-0.01 || shown > 0 {
			t.Fatalf("%s with large text: the closed dates at %.1f px (want the large size, %.1f px), %d parts of the week shown (want none)", sec, l.Note, l.Root, shown)
		}
		return
	}
	if shown != 2 {
		t.Fatalf("%s with normal text: %d parts of the week shown (%v), want its title and its lines", sec, shown, l.Week)
	}
}

// compartmentInWords: with large text on the panel, where the drawing
// (whose caption names the compartment) is not shown, the screen sec says
// the compartment n in words at the large setting's size, so that a
// citizen calling 1777 can say which one; with normal text the drawing's
// caption says it and the words are not there twice.
func compartmentInWords(t *testing.T, p panelRun, sec string, n int) {
	t.Helper()
	want := strings.ReplaceAll(p.text(t, "drawing.n"), "{n}", strconv.Itoa(n))
	got, err := eval[[]string](p.mt, `(function(){ var root = parseFloat(getComputedStyle(document.documentElement).fontSize);
		return Array.prototype.filter.call(document.querySelectorAll("#`+sec+` p"), function(e){
			var r = e.getBoundingClientRect();
			return e.offsetParent !== null && r.top >= 0 && r.bottom <= window.innerHeight && e.innerText.trim() === `+jsString(want)+` &&
				parseFloat(getComputedStyle(e).fontSize) >= root - 0.01;
		}).map(function(e){ return e.innerText.trim(); }); })()`)
	if err != nil {
		t.Fatal(err)
	}
	if p.mt.large && len(got) != 1 {
		t.Fatalf("%s with large text: the compartment is not said in words on the screen (want %q, at least the text size)", sec, want)
	}
	if !p.mt.large && len(got) != 0 {
		t.Fatalf("%s with normal text: %q said beside the drawing's caption", sec, got)
	}
}

// headerAtTheTextSize: with large text, the machine's name and the
// language links in the header are at the large setting's size (they were
// at 0.7 and 0.8 of it), each link showing its language's code and named
// by its language (its accessible name holds both), no label cut off.
func headerAtTheTextSize(cat *screen.Catalog, mt *mtab) error {
	if !mt.large {
		return nil
	}
	type link struct {
		Lang, Shown, Name string
		Px                float64
	}
	type head struct {
		Root, Place float64
		Links       []link
	}
	h, err := eval[head](mt, `(function(){ var px = function(e){ return parseFloat(getComputedStyle(e).fontSize); };
		return {root: px(document.documentElement), place: px(document.querySelector("header .place")),
			links: Array.prototype.map.call(document.querySelectorAll(".langs a"), function(a){
				var shown = Array.prototype.filter.call(a.children, function(c){ return c.getBoundingClientRect().width > 1; });
				return {lang: a.getAttribute("data-lang"), shown: shown.map(function(c){ return c.innerText.trim(); }).join(" "), name: a.textContent, px: px(a)}; })}; })()`)
	if err != nil {
		return err
	}
	var bad []string
	if h.Place < h.Root-0.01 {
		bad = append(bad, fmt.Sprintf("the machine's name at %.1f px, want the large size %.1f px", h.Place, h.Root))
	}
	for _, l := range h.Links {
		name, err := cat.Text("lang."+l.Lang, l.Lang)
		if err != nil {
			return err
		}
		short, err := cat.Text("lang.short."+l.Lang, l.Lang)
		if err != nil {
			return err
		}
		if l.Px < h.Root-0.01 || l.Shown != short || !strings.Contains(l.Name, name) {
			bad = append(bad, fmt.Sprintf("language link %s: %.1f px showing %q named %q; want %.1f px, %q, named %q", l.Lang, l.Px, l.Shown, l.Name, h.Root, short, name))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("header with large text: %s", strings.Join(bad, "; "))
	}
	return noClippedLabels(mt)
}

// onceAndNoDrawing: on the screen sec with the counter's hours, with
// large text at 800x480 the drawing is not shown and 1777 is said once
// (the footer's help line, not also "Is the counter closed? Call 1777."),
// so that the screen fits; with normal text the drawing (not_opened) and
// both lines stay.
func onceAndNoDrawing(t *testing.T, p panelRun, sec string) {
	t.Helper()
	got, err := eval[[]string](p.mt, `Array.prototype.filter.call(document.querySelectorAll("#`+sec+` p, footer p"),
		function(e){ return e.offsetParent !== null && e.innerText.indexOf("1777") >= 0; }).map(function(e){ return e.innerText.trim(); })`)
	if err != nil {
		t.Fatal(err)
	}
	fig, err := eval[bool](p.mt, `getComputedStyle(document.getElementById("drawing")).display !== "none" && !document.getElementById("drawing").hidden`)
	if err != nil {
		t.Fatal(err)
	}
	if p.mt.large {
		if len(got) != 1 || got[0] != p.text(t, "help") {
			t.Fatalf("%s with large text: the lines with 1777 are %q, want only the help line %q", sec, got, p.text(t, "help"))
		}
		if fig {
			t.Fatalf("%s with large text: the drawing is shown", sec)
		}
		return
	}
	if len(got) < 2 {
		t.Fatalf("%s with normal text: the lines with 1777 are %q, want the next step and the help line", sec, got)
	}
	if fig != (sec == "s-not_opened") {
		t.Fatalf("%s with normal text: drawing shown %t", sec, fig)
	}
}
