package screen_test

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"

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
	t.Parallel() // its own kiosks and browser: beside the package's other browser tests, which it may wait for
	r := newRig(t, rigOptions{})
	b := browsertest.New(t, browsertest.Options{}) // until the test binary's deadline
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
			if err := headerAtTheTextSize(m.cat, mt); err != nil {
				return err
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

	// Another language chosen on the PIN keypad (a real click on its
	// link) keeps the PIN keypad, now in that language and empty (the
	// digits typed are not carried over the page load); the chosen
	// language's link, tapped on the keypad, does nothing. Then back.
	m.each("a language chosen on the PIN keypad", func(mt *mtab) error {
		langs := screen.Langs()
		other := langs[0]
		for i, l := range langs {
			if l == mt.lang {
				other = langs[(i+1)%len(langs)]
			}
		}
		if err := do(mt, chromedp.Click(chromedp.CSS(`#v-pin [data-key="7"]`), chromedp.NodeVisible)); err != nil {
			return err
		}
		before, err := eval[string](mt, `document.querySelector("[data-out=pin]").textContent`)
		if err != nil {
			return err
		}
		if err := do(mt, chromedp.Click(chromedp.CSS(`.langs a[aria-current]`), chromedp.NodeVisible)); err != nil {
			return err
		}
		if got, err := eval[string](mt, `document.querySelector("[data-out=pin]").textContent`); err != nil || got != before || before == "" {
			return fmt.Errorf("after tapping the language already chosen the PIN shows %q (%v), want %q", got, err, before)
		}
		for _, l := range []string{other, mt.lang} {
			if err := do(mt, chromedp.Click(chromedp.CSS(`.langs a[data-lang=`+l+`]`), chromedp.NodeVisible)); err != nil {
				return err
			}
			if err := waitJS(mt, `document.readyState === "complete" && document.documentElement.lang === `+jsString(l)); err != nil {
				return err
			}
			title, _ := m.cat.Text("pin.title", l)
			if err := waitJS(mt, `!document.getElementById("v-pin").hidden && document.querySelectorAll("main .view:not([hidden])").length === 1 && document.activeElement === document.getElementById("h-pin")`); err != nil {
				st, _ := eval[pageState](mt, readState)
				return fmt.Errorf("after choosing %s: %w; shows %q", l, err, st.Shown)
			}
			got, err := eval[[]string](mt, `[document.getElementById("h-pin").textContent.trim(), document.querySelector("[data-out=pin]").textContent, location.hash]`)
			if err != nil {
				return err
			}
			if got[0] != title || got[1] != "" || got[2] != "" {
				return fmt.Errorf("after choosing %s: heading %q, PIN %q, hash %q; want %q, empty, none", l, got[0], got[1], got[2], title)
			}
			vs, err := runAxe(mt, mt.folder+"/"+mt.lang+" PIN after choosing "+l)
			if err != nil {
				return err
			}
			if len(vs) > 0 {
				return fmt.Errorf("axe after choosing %s: %v", l, vs)
			}
			if l == other {
				if err := shot(mt, "pin-lang-"+l); err != nil {
					return err
				}
			}
		}
		return nil
	})

	// The date of birth the backend asks for next, a whole date typed,
	// then one that does not exist (its error shown).
	r.be.set(func() { r.be.verify["11223344/"] = wire.VerifyResponse{Result: wire.VerifySecondFactorRequired} })
	r.pickup(engine.PickupRequest{PIN: "11223344", Lang: "en"})
	m.shown("v-birth") // the screenshot once showed 41/21/961, the first 2 lost
	m.keys("24121961")
	m.each("the date as typed", func(mt *mtab) error {
		if err := waitJS(mt, `document.querySelector("#v-birth [data-val=y]").textContent === "1961"`); err != nil {
			return err
		}
		got, err := eval[[]string](mt, `["d", "m", "y"].map(function(f){ return document.querySelector("#v-birth [data-val=" + f + "]").textContent; })`)
		if err == nil && (got[0] != "24" || got[1] != "12" || got[2] != "1961") {
			err = fmt.Errorf("day %q, month %q, year %q; want 24, 12, 1961", got[0], got[1], got[2])
		}
		return err
	})
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
			// The text on screen: not a part only for screen readers
			// (the sr-only pattern, 1 px wide, clipped).
			var t = {left: Infinity, right: -Infinity};
			var w = document.createTreeWalker(b, NodeFilter.SHOW_TEXT);
			for (var n = w.nextNode(); n; n = w.nextNode()) {
				if (!n.textContent.trim() || n.parentElement.getBoundingClientRect().width <= 1) { continue; }
				var r = document.createRange();
				r.selectNodeContents(n);
				var nr = r.getBoundingClientRect();
				if (nr.width === 0) { continue; }
				t.left = Math.min(t.left, nr.left);
				t.right = Math.max(t.right, nr.right);
			}
			if (t.right < t.left) { return; }
			var o = b.getBoundingClientRect();
			var left = o.left + b.clientLeft, right = left + b.clientWidth;
			if (t.left < left - 0.5 || t.right > right + 0.5) {
				out.push((b.getAttribute("data-key") || b.textContent.trim()) + ": text " + Math.round(t.right - t.left) + " px in " + b.clientWidth);
			}
		});
		return out;
	})()`)
	if err == nil && len(clipped) > 0 {
		err = fmt.Errorf("labels wider than their buttons: %q", clipped)
	}
	return err
}
