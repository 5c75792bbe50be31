package screen_test

import (
	"strings"
	"testing"
	"time"

	"kluis/controller/engine"
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
func TestClosedDatesOnTheSmallPanel(t *testing.T) {
	now := time.Now()
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
	onSmallPanelWith(t, rigOptions{kiosk: hours}, func(t *testing.T, p panelRun) {
		p.r.be.set(func() {
			p.r.be.verify["123456789/"] = wire.VerifyResponse{Result: wire.VerifyDeviceLockedOut, RetryAfterS: 600}
		})
		p.r.pickup(engine.PickupRequest{PIN: "123456789", Lang: p.lang})
		p.m.check("closed-locked_out", "s-locked_out", expect{h1: "title.locked_out", msg: "state.locked_out", next: "next.closed", citizen: true, large: true})
		got, err := eval[[]string](p.mt, `Array.prototype.map.call(document.querySelectorAll("#s-locked_out .hours > *"),
			function(e){ return e.className + ":" + e.textContent.trim(); })`)
		if err != nil {
			t.Fatal(err)
		}
		onceAndNoDrawing(t, p, "s-locked_out")
		on := strings.SplitN(p.text(t, "closed.on.many"), "{a}", 2)[0]
		again := strings.SplitN(p.text(t, "closed.next"), "{a}", 2)[0]
		if len(got) != 3 || !strings.HasPrefix(got[0], "closed-note:"+on) || !strings.Contains(got[0], " "+again) ||
			got[1] != ":"+p.text(t, "hours.title") {
			t.Fatalf("the hours block reads %q, want the closed dates (%q ... %q ...) above %q and the hours", got, on, again, p.text(t, "hours.title"))
		}
	})
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
