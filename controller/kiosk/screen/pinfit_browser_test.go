package screen_test

import (
	"fmt"
	"testing"
	"time"

	"kluis/controller/engine"
	"kluis/controller/kiosk/screen"
	"kluis/controller/wire"
	"kluis/deploy/dev/browsertest"
)

// small is the kiosk's small panel.
var small = layout{name: "800x480", w: 800, h: 480}

// TestPINScreenFitsTheSmallPanel opens the PIN keypad at 800x480 in every
// language, with large text off and on, and checks that nothing scrolls:
// with the longest PIN typed, and with the "at least 4 digits" error
// shown. axe-core runs on each; screenshots under
// var/screenshots/kiosk/800x480{,-large}/<lang>/pin*.png.
func TestPINScreenFitsTheSmallPanel(t *testing.T) {
	if testing.Short() {
		t.Skip("browser")
	}
	r := newRig(t, rigOptions{})
	b := browsertest.New(t, browsertest.Options{Timeout: 10 * time.Minute})
	m := newMatrix(t)
	i := 0
	for _, large := range []bool{false, true} {
		for _, l := range screen.Langs() {
			folder := small.name
			if large {
				folder += "-large"
			}
			m.tabs = append(m.tabs, &mtab{tab: b.NewTab(t, small.w, small.h), lay: small, lang: l, large: large, folder: folder, host: i})
			i++
		}
	}
	m.open(r)
	m.click(`[data-act=pin]`)
	m.keys("123456789012") // the longest PIN the keypad takes
	m.check("pin", "v-pin", expect{h1: "pin.title", citizen: true})
	fits := func(what string) {
		m.t.Helper()
		m.each(what+" fits", func(mt *mtab) error {
			got, err := eval[[]int](mt, `[document.scrollingElement.scrollHeight, window.innerHeight, document.scrollingElement.scrollWidth, window.innerWidth]`)
			if err != nil {
				return err
			}
			if got[0] > got[1] || got[2] > got[3] {
				return fmt.Errorf("page %dx%d in a %dx%d window: it scrolls", got[2], got[0], got[3], got[1])
			}
			return noClippedLabels(mt)
		})
	}
	fits("the PIN")
	// Masked by default: dots, the digits nowhere in the page (the
	// screenshot pin.png shows dots); the toggle (a real click) shows
	// them, fitting the panel too, and masks them again.
	dots := "••• ••• ••• •••"
	m.typed("the PIN masked", "pin", dots, "false", "123456789012", "123 456 789 012", "123 456")
	m.click(`#v-pin [data-act=reveal]`)
	m.typed("the PIN shown", "pin", "123 456 789 012", "true")
	m.check("pin-shown", "v-pin", expect{h1: "pin.title", citizen: true})
	m.each("the toggle's name", func(mt *mtab) error {
		want, _ := m.cat.Text("pin.show", mt.lang)
		got, err := eval[string](mt, `document.querySelector("#v-pin [data-act=reveal]").textContent.trim()`)
		if err == nil && got != want {
			err = fmt.Errorf("toggle %q, want %q", got, want)
		}
		return err
	})
	fits("the PIN shown")
	m.click(`#v-pin [data-act=reveal]`)
	m.typed("the PIN masked again", "pin", dots, "false", "123456789012", "123 456 789 012", "123 456")
	// Too short: the error shows, and still nothing scrolls.
	m.clicks(`#v-pin [data-key=del]`, 12)
	m.each("the PIN deleted", func(mt *mtab) error {
		return waitJS(mt, `document.querySelector("[data-out=pin]").textContent === ""`)
	})
	m.keys("12")
	m.click(`#v-pin [data-key=ok]`)
	m.each("the short-PIN error", func(mt *mtab) error {
		return waitJS(mt, `!document.querySelector("#v-pin [data-err=short]").hidden`)
	})
	m.check("pin-short", "v-pin", expect{h1: "pin.title", citizen: true})
	fits("the short-PIN error")

	// The date of birth the backend asks for next, a whole date typed,
	// then one that does not exist (its error shown).
	r.be.set(func() { r.be.verify["11223344/"] = wire.VerifyResponse{Result: wire.VerifySecondFactorRequired} })
	r.pickup(engine.PickupRequest{PIN: "11223344", Lang: "en"})
	m.keys("24121961")
	m.check("birth", "v-birth", expect{h1: "birth.title", msg: "state.need_birth_date", citizen: true})
	fits("the date of birth")
	m.clicks(`#v-birth [data-key=del]`, 8)
	m.keys("31021990") // 31 February
	m.click(`#v-birth [data-key=ok]`)
	m.each("the invalid-date error", func(mt *mtab) error {
		return waitJS(mt, `!document.querySelector("#v-birth [data-err=invalid]").hidden`)
	})
	m.check("birth-invalid", "v-birth", expect{h1: "birth.title", msg: "state.need_birth_date", citizen: true})
	fits("the invalid-date error")
}

// noClippedLabels fails when a visible button's or link's text is wider
// than the control (a label cut off at its edges).
func noClippedLabels(mt *mtab) error {
	clipped, err := eval[[]string](mt, `(function(){
		var out = [];
		document.querySelectorAll("button, a").forEach(function(b){
			if (b.offsetParent === null) { return; }
			var r = document.createRange();
			r.selectNodeContents(b);
			var t = r.getBoundingClientRect(), o = b.getBoundingClientRect();
			var left = o.left + b.clientLeft, right = left + b.clientWidth;
			if (t.left < left - 0.5 || t.right > right + 0.5) {
				out.push((b.getAttribute("data-key") || b.textContent.trim()) + ": text " + Math.round(t.width) + " px in " + b.clientWidth);
			}
		});
		return out;
	})()`)
	if err == nil && len(clipped) > 0 {
		err = fmt.Errorf("labels wider than their buttons: %q", clipped)
	}
	return err
}
