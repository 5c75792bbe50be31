package screen_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"kluis/controller/engine"
	"kluis/controller/kiosk/screen"
	"kluis/deploy/dev/browsertest"
)

// TestLargeStartFitsTheSmallPanel opens the start screen at 800x480 in
// every language with normal text, taps "Large text" (a real click) and
// checks the first screen a citizen then sees: it fits without
// scrolling, the footer's help line (1777) is on the screen, the text is
// at the large size, axe-core is clean; screenshots under
// var/screenshots/kiosk/800x480-large/<lang>/start-large.png.
func TestLargeStartFitsTheSmallPanel(t *testing.T) {
	_, m := onSmallPanelLarge(t, false)
	m.tapLarge()
	m.check("start-large", "v-start", expect{h1: "start.title", citizen: true, large: true})
	m.each("the start screen with large text", func(mt *mtab) error {
		return fitsLarge(m.cat, mt, "#v-start h1, #v-start .lead, #v-start .scan p, #v-start button")
	})
}

// fitsLarge checks a screen shown with large text at 800x480: nothing
// scrolls, the footer's help line (1777) is on the screen as the
// catalogue says it, the texts (a CSS selector list, with the footer's
// help line and buttons) are at least at the large size, the header is
// at the large size and no label is cut off.
func fitsLarge(cat *screen.Catalog, mt *mtab, texts string) error {
	type sized struct {
		What string
		Px   float64
	}
	type page struct {
		Scroll, Inner int
		Root          float64
		Help          string
		HelpTop       float64
		HelpBottom    float64
		Texts         []sized
	}
	p, err := eval[page](mt, `(function(){ var px = function(e){ return parseFloat(getComputedStyle(e).fontSize); };
		var help = document.querySelector("footer .help"), hr = help.getBoundingClientRect();
		var texts = Array.prototype.map.call(document.querySelectorAll(`+jsString(texts+", footer .help, footer button:not([hidden])")+`),
			function(e){ return {what: (e.getAttribute("data-act") || e.className || e.tagName) + " " + JSON.stringify(e.innerText.trim().slice(0, 30)), px: px(e)}; });
		return {scroll: document.scrollingElement.scrollHeight, inner: window.innerHeight, root: px(document.documentElement),
			help: help.innerText.trim(), helpTop: hr.top, helpBottom: hr.bottom, texts: texts}; })()`)
	if err != nil {
		return err
	}
	var bad []string
	if p.Scroll > p.Inner {
		bad = append(bad, fmt.Sprintf("%d px taller than the %d px screen", p.Scroll-p.Inner, p.Inner))
	}
	want, err := cat.Text("help", mt.lang)
	if err != nil {
		return err
	}
	if p.Help != want || !strings.Contains(p.Help, "1777") || p.HelpTop < 0 || p.HelpBottom > float64(p.Inner) {
		bad = append(bad, fmt.Sprintf("help line %q at %.0f-%.0f px in a %d px screen, want %q on it", p.Help, p.HelpTop, p.HelpBottom, p.Inner, want))
	}
	for _, s := range p.Texts {
		if s.Px < p.Root-0.01 {
			bad = append(bad, fmt.Sprintf("%s at %.1f px, under the large size %.1f px", s.What, s.Px, p.Root))
		}
	}
	if p.Root < 26 {
		bad = append(bad, fmt.Sprintf("root at %.1f px, not the large size", p.Root))
	}
	if err := headerAtTheTextSize(cat, mt); err != nil {
		bad = append(bad, err.Error())
	}
	if err := noClippedLabels(mt); err != nil {
		bad = append(bad, err.Error())
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return nil
}

// TestLargeNotCollectedFitsTheSmallPanel: with large text at 800x480 in
// every language, "Your document is still there" (the door closed on
// the document) fits without scrolling, with the footer's help line
// (1777) on the screen and its texts at the large size; axe-core clean;
// screenshots var/screenshots/kiosk/800x480-large/<lang>/not_collected-large.png.
func TestLargeNotCollectedFitsTheSmallPanel(t *testing.T) {
	r, m := onSmallPanelLarge(t, true)
	r.be.set(func() { r.be.verify["K1.c5"] = okAt("doc-5", 4) })
	r.item(4, true)
	o := r.opens(4)
	r.pickup(engine.PickupRequest{QR: "K1.c5", Lang: "en"})
	r.waitOpened(4, o)
	r.close(4, true)
	m.check("not_collected-large", "s-not_collected", expect{h1: "title.not_collected", msg: "state.not_collected", next: "next.not_collected", n: 5, citizen: true, large: true})
	m.each("not_collected with large text", func(mt *mtab) error {
		return fitsLarge(m.cat, mt, "#s-not_collected h1, #s-not_collected .msg, #s-not_collected .next, #s-not_collected button")
	})
}

// TestLargeCitizenScreensFitTheSmallPanel: with large text at 800x480
// in every language, the citizen's other screens fit without scrolling,
// with the footer's help line (1777) on the screen, their texts at the
// large size, axe-core clean: "one moment, we are checking your code"
// (verifying), the wrong code with the warning before the last PIN try,
// the door left open and the machine out of order; screenshots
// var/screenshots/kiosk/800x480-large/<lang>/<screen>-large.png.
func TestLargeCitizenScreensFitTheSmallPanel(t *testing.T) {
	r, m := onSmallPanelLargeWith(t, true, rigOptions{lockout: "max_failures: 3, window: 10m, duration: 15m"})
	fits := func(name, id string, e expect) {
		t.Helper()
		e.citizen, e.large = true, true
		m.check(name+"-large", id, e)
		m.each(name+" with large text", func(mt *mtab) error {
			return fitsLarge(m.cat, mt, "#"+id+" h1, #"+id+" .msg, #"+id+" .next, #"+id+" [data-last-try]:not([hidden]), #"+id+" button:not([hidden])")
		})
	}

	hold := make(chan struct{})
	r.be.set(func() { r.be.hold["K1.hold"] = hold })
	go func() { _, _ = r.e.Pickup(context.Background(), engine.PickupRequest{QR: "K1.hold", Lang: "en"}) }()
	r.waitState(engine.StateVerifying)
	fits("verifying", "s-verifying", expect{h1: "title.wait", msg: "state.verifying"})
	close(hold) // the backend does not know the code
	r.waitState(engine.StateWrongCode)

	// Two wrong PINs of 3: the second warns before the last try.
	r.pickup(engine.PickupRequest{PIN: "11122233", Lang: "en"})
	r.pickup(engine.PickupRequest{PIN: "44455566", Lang: "en"})
	m.each("the last-try warning", func(mt *mtab) error {
		return waitJS(mt, `!document.querySelector("#s-wrong_code [data-last-try]").hidden`)
	})
	fits("wrong_code-last_try", "s-wrong_code", expect{h1: "title.wrong_code", msg: "state.wrong_code", next: "next.wrong_code"})

	lo := newRig(t, rigOptions{leftOpen: "1s"})
	m.open(lo)
	lo.be.set(func() { lo.be.verify["K1.lo"] = okAt("doc-lo", 1) })
	lo.item(1, true)
	o := lo.opens(1)
	lo.pickup(engine.PickupRequest{QR: "K1.lo", Lang: "en"})
	lo.waitOpened(1, o)
	fits("left_open", "s-left_open", expect{h1: "title.left_open", msg: "left_open.msg", n: 2})
	lo.close(1, false)

	full := newRig(t, rigOptions{diskFull: true})
	m.open(full)
	full.be.set(func() { full.be.verify["K1.full"] = okAt("doc-full", 1) })
	full.pickup(engine.PickupRequest{QR: "K1.full", Lang: "en"})
	fits("device_out_of_order", "s-device_out_of_order", expect{h1: "title.out_of_order", msg: "state.device_out_of_order"})
}

// onSmallPanelLarge opens a kiosk (its own, with its own browser) at
// 800x480 in every language, one tab each, with large text on if large;
// the tabs' screenshots go under 800x480-large either way (a test that
// opens with normal text taps "Large text" itself). It skips under -short.
func onSmallPanelLarge(t *testing.T, large bool) (*rig, *matrix) {
	return onSmallPanelLargeWith(t, large, rigOptions{})
}

// onSmallPanelLargeWith is onSmallPanelLarge with the kiosk's options o.
func onSmallPanelLargeWith(t *testing.T, large bool, o rigOptions) (*rig, *matrix) {
	if testing.Short() {
		t.Skip("browser")
	}
	t.Parallel() // its own kiosk and browser
	r := newRig(t, o)
	b := browsertest.New(t, browsertest.Options{})
	m := newMatrix(t)
	m.checkFit = true
	for i, l := range screen.Langs() {
		m.tabs = append(m.tabs, &mtab{tab: b.NewTab(t, small.w, small.h), lay: small, lang: l, large: large, folder: small.name + "-large", host: i})
	}
	m.open(r)
	return r, m
}

// tapLarge taps "Large text" on the start screen of every tab (a real
// click) and waits until each page is at the large size.
func (m *matrix) tapLarge() {
	m.t.Helper()
	m.click(`#v-start [data-act=large]`)
	m.each("large text on", func(mt *mtab) error {
		mt.large = true
		return waitJS(mt, `document.documentElement.classList.contains("large") && document.readyState === "complete"`)
	})
}
