package screen_test

import (
	"strings"
	"testing"

	"kluis/controller/engine"
)

// TestScreenNamesItsMachine: a citizen whose letter says "Stadhuis
// Kortrijk, automaat 2" reads that name on the screen they stand at
// (kiosk.display_name), on the start screen, the PIN keypad and a
// result, in every language at 800x480, each screen fitting without
// scrolling and passing axe.
func TestScreenNamesItsMachine(t *testing.T) {
	const name = "Stadhuis Kortrijk, automaat 2"
	onSmallPanelWith(t, rigOptions{kiosk: `display_name: "` + name + `"`}, func(t *testing.T, p panelRun) {
		want := strings.ReplaceAll(p.text(t, "place"), "{name}", name)
		named := func(where string) {
			t.Helper()
			got, err := eval[string](p.mt, `document.querySelector("header .place").innerText.trim()`)
			if err != nil || got != want {
				t.Fatalf("%s: the machine is named %q (%v), want %q", where, got, err, want)
			}
		}
		p.m.check("place-start", "v-start", expect{h1: "start.title", msg: "state.idle", citizen: true})
		named("start")
		p.click(t, `#v-start [data-act=pin]`)
		p.m.check("place-pin", "v-pin", expect{h1: "pin.title", citizen: true})
		named("PIN keypad")
		p.r.pickup(engine.PickupRequest{QR: "K1.unknown", Lang: p.lang})
		p.m.check("place-wrong_code", "s-wrong_code", expect{h1: "title.wrong_code", msg: "state.wrong_code", next: "next.wrong_code", citizen: true})
		named("wrong code")
	})
}
