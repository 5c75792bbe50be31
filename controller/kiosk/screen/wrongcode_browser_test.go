package screen_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"kluis/controller/engine"
	"kluis/controller/kiosk/screen"
	"kluis/deploy/dev/browsertest"
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
	if testing.Short() {
		t.Skip("browser")
	}
	b := browsertest.New(t, browsertest.Options{Timeout: 10 * time.Minute})
	cat, err := screen.NewCatalog()
	if err != nil {
		t.Fatal(err)
	}
	for _, large := range []bool{false, true} {
		for _, l := range screen.Langs() {
			folder := small.name
			if large {
				folder += "-large"
			}
			t.Run(folder+"/"+l, func(t *testing.T) {
				t.Parallel() // its own rig and tab; go test runs -parallel at once
				r := newRig(t, rigOptions{})
				m := newMatrix(t)
				m.checkFit = true
				m.tabs = []*mtab{{tab: b.NewTab(t, small.w, small.h), lay: small, lang: l, large: large, folder: folder, host: 0}}
				mt := m.tabs[0]
				text := func(key string) string {
					s, err := cat.Text(key, l)
					if err != nil {
						t.Fatal(err)
					}
					return s
				}
				// buttons are the visible buttons of the wrong-code screen
				// and the footer, by their text.
				buttons := func() []string {
					t.Helper()
					got, err := eval[[]string](mt, `Array.prototype.filter.call(document.querySelectorAll("#s-wrong_code button, footer button"),
					function(b){ return b.offsetParent !== null; }).map(function(b){ return b.textContent.trim(); })`)
					if err != nil {
						t.Fatal(err)
					}
					return got
				}
				wantButtons := func(want ...string) {
					t.Helper()
					if got := buttons(); strings.Join(got, "|") != strings.Join(want, "|") {
						t.Fatalf("buttons %q, want %q", got, want)
					}
					primary, err := eval[string](mt, `document.querySelector("#s-wrong_code .btn.primary").textContent.trim()`)
					if err != nil || primary != text("again") {
						t.Fatalf("primary button %q (%v), want %q", primary, err, text("again"))
					}
					help, err := eval[string](mt, `document.querySelector("footer .help").innerText.trim()`)
					if err != nil || help != text("help") || !strings.Contains(help, "1777") {
						t.Fatalf("help line %q (%v), want %q", help, err, text("help"))
					}
					scroll, err := eval[int](mt, `document.scrollingElement.scrollHeight - window.innerHeight`)
					if err != nil || scroll > 0 {
						t.Fatalf("the wrong-code screen scrolls by %d px (%v)", scroll, err)
					}
					if err := noClippedLabels(mt); err != nil {
						t.Fatal(err)
					}
				}
				click := func(sel string) {
					t.Helper()
					if err := do(mt, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)); err != nil {
						t.Fatalf("click %s: %v", sel, err)
					}
				}
				m.open(r)

				// A QR code the backend does not know.
				r.pickup(engine.PickupRequest{QR: "K1.unknown", Lang: l})
				m.check("wrong_code-qr", "s-wrong_code", expect{h1: "title.wrong_code", msg: "state.wrong_code", citizen: true})
				wantButtons(text("again"), text("start.pin"))
				click(`#s-wrong_code [data-act=again]`)
				m.check("wrong_code-qr-again", "v-start", expect{h1: "start.title", msg: "state.idle", citizen: true})

				r.pickup(engine.PickupRequest{QR: "K1.unknown2", Lang: l})
				m.check("wrong_code-qr", "s-wrong_code", expect{h1: "title.wrong_code", msg: "state.wrong_code", citizen: true})
				click(`#s-wrong_code [data-act=pin]`)
				m.check("wrong_code-qr-pin", "v-pin", expect{h1: "pin.title", citizen: true})

				// A PIN typed with the keypad, refused.
				for _, k := range strings.Split("11122233", "") {
					click(`#v-pin [data-key="` + k + `"]`)
				}
				click(`#v-pin [data-key=ok]`)
				m.check("wrong_code-pin", "s-wrong_code", expect{h1: "title.wrong_code", msg: "state.wrong_code", citizen: true})
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
	}
}
