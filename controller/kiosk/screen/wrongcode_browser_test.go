package screen_test

import (
	"strings"
	"testing"

	"kluis/controller/engine"
)

// TestWrongCodeOffersOneWayOn drives the wrong-code screen with real
// clicks in every language at 800x480: one primary "Try again", no second
// "Start again" beside it, and the help line 1777. After a refused QR code
// "Try again" goes to the start screen (to scan again) and "Type your PIN"
// opens the PIN keypad; after a PIN typed on the keypad and refused, "Try
// again" opens an empty PIN keypad and there is no PIN button (it would be
// the same thing). The eight subtests run in parallel, each with its own
// kiosk and tab of the one browser.
func TestWrongCodeOffersOneWayOn(t *testing.T) {
	onSmallPanel(t, func(t *testing.T, p panelRun) {
		m, mt, r, l := p.m, p.mt, p.r, p.lang
		text := func(key string) string { return p.text(t, key) }
		click := func(sel string) { t.Helper(); p.click(t, sel) }
		// wantButtons: the buttons of the wrong-code screen and the
		// footer, and the screen fits without scrolling.
		wantButtons := func(want ...string) {
			t.Helper()
			p.wantButtons(t, "s-wrong_code", want...)
			scroll, err := eval[int](mt, `document.scrollingElement.scrollHeight - window.innerHeight`)
			if err != nil || scroll > 0 {
				t.Fatalf("the wrong-code screen scrolls by %d px (%v)", scroll, err)
			}
		}

		// A QR code the backend does not know.
		r.pickup(engine.PickupRequest{QR: "K1.unknown", Lang: l})
		m.check("wrong_code-qr", "s-wrong_code", expect{h1: "title.wrong_code", msg: "state.wrong_code", next: "next.wrong_code", citizen: true})
		wantButtons(text("again"), text("start.pin"))
		click(`#s-wrong_code [data-act=again]`)
		m.check("wrong_code-qr-again", "v-start", expect{h1: "start.title", msg: "state.idle", citizen: true})

		r.pickup(engine.PickupRequest{QR: "K1.unknown2", Lang: l})
		m.check("wrong_code-qr", "s-wrong_code", expect{h1: "title.wrong_code", msg: "state.wrong_code", next: "next.wrong_code", citizen: true})
		click(`#s-wrong_code [data-act=pin]`)
		m.check("wrong_code-qr-pin", "v-pin", expect{h1: "pin.title", citizen: true})

		// A PIN typed with the keypad, refused.
		for _, k := range strings.Split("11122233", "") {
			click(`#v-pin [data-key="` + k + `"]`)
		}
		click(`#v-pin [data-key=ok]`)
		m.check("wrong_code-pin", "s-wrong_code", expect{h1: "title.wrong_code", msg: "state.wrong_code", next: "next.wrong_code", citizen: true})
		wantButtons(text("again"))
		click(`#s-wrong_code [data-act=again]`)
		m.check("wrong_code-pin-again", "v-pin", expect{h1: "pin.title", citizen: true})
		typed, err := eval[string](mt, `document.querySelector("[data-out=pin]").textContent`)
		if err != nil || typed != "" {
			t.Fatalf("the PIN keypad shows %q (%v) after try again, want it empty", typed, err)
		}
		// The footer's "Start again" is back on the keypad.
		click(`footer [data-act=restart]`)
		m.check("wrong_code-pin-restart", "v-start", expect{h1: "start.title", msg: "state.idle", citizen: true})
	})
}
