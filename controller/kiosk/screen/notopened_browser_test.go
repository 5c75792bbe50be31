package screen_test

import (
	"strings"
	"testing"

	"kluis/controller/engine"
)

// TestDoorNotOpenedOffersTryAgain drives the "door did not open" screen
// with real clicks in every language at 800x480, large text off and on.
// Its message tells the citizen to try again (the code was not used), so
// the screen itself offers "Try again" as its one primary button, with the
// help line 1777 and no second "Start again" beside it; the label fits its
// button. "Try again" goes to the start screen (the engine tells the way
// the code was given on wrong_code only): the QR code scanned again opens
// the door; after a PIN the keypad opens empty. Screenshots under
// var/screenshots/kiosk/800x480{,-large}/<lang>/not_opened-*.png.
func TestDoorNotOpenedOffersTryAgain(t *testing.T) {
	onSmallPanel(t, func(t *testing.T, p panelRun) {
		m, r, l := p.m, p.r, p.lang
		r.be.set(func() {
			r.be.verify["K1.c7"] = okAt("doc-7", 6)
			r.be.verify["24681357/"] = okAt("doc-5", 4)
		})

		// A QR code; the door stays shut.
		r.item(6, true)
		r.setOpenOnPulse(false)
		r.pickup(engine.PickupRequest{QR: "K1.c7", Lang: l})
		m.check("not_opened-qr", "s-not_opened", expect{h1: "title.problem", msg: "state.not_opened", next: "next.closed", n: 7, citizen: true})
		p.wantButtons(t, "s-not_opened", p.text(t, "again"))
		p.click(t, `#s-not_opened [data-act=again]`)
		m.check("not_opened-qr-again", "v-start", expect{h1: "start.title", msg: "state.idle", citizen: true})
		// Scanned again, the door opens this time.
		r.setOpenOnPulse(true)
		o := r.opens(6)
		r.pickup(engine.PickupRequest{QR: "K1.c7", Lang: l})
		r.waitOpened(6, o)
		m.check("not_opened-qr-open", "s-open", expect{h1: "title.open", msg: "state.open", n: 7, citizen: true})
		r.close(6, false)
		m.check("not_opened-qr-done", "s-done", expect{h1: "title.done", msg: "state.done", citizen: true})

		// A PIN typed on the keypad; the door stays shut.
		r.item(4, true)
		r.setOpenOnPulse(false)
		// "Start again" from the done screen (unless the page went back to
		// the start on its own already).
		if onStart, err := eval[bool](p.mt, `!document.getElementById("v-start").hidden`); err != nil || !onStart {
			p.click(t, `footer [data-act=restart]`)
		}
		p.click(t, `#v-start [data-act=pin]`)
		for _, k := range strings.Split("24681357", "") {
			p.click(t, `#v-pin [data-key="`+k+`"]`)
		}
		p.click(t, `#v-pin [data-key=ok]`)
		m.check("not_opened-pin", "s-not_opened", expect{h1: "title.problem", msg: "state.not_opened", next: "next.closed", n: 5, citizen: true})
		p.wantButtons(t, "s-not_opened", p.text(t, "again"))
		p.click(t, `#s-not_opened [data-act=again]`)
		m.check("not_opened-pin-again", "v-start", expect{h1: "start.title", msg: "state.idle", citizen: true})
		// The PIN typed before is gone from the keypad.
		p.click(t, `#v-start [data-act=pin]`)
		m.check("not_opened-pin-keypad", "v-pin", expect{h1: "pin.title", citizen: true})
		if typed, err := eval[string](p.mt, `document.querySelector("[data-out=pin]").textContent`); err != nil || typed != "" {
			t.Fatalf("the PIN keypad shows %q (%v) after try again, want it empty", typed, err)
		}
	})
}
