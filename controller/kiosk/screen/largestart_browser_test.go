package screen_test

import (
	"fmt"
	"strings"
	"testing"

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
	if testing.Short() {
		t.Skip("browser")
	}
	t.Parallel() // its own kiosk and browser
	r := newRig(t, rigOptions{})
	b := browsertest.New(t, browsertest.Options{})
	m := newMatrix(t)
	m.checkFit = true
	for i, l := range screen.Langs() {
		m.tabs = append(m.tabs, &mtab{tab: b.NewTab(t, small.w, small.h), lay: small, lang: l, folder: small.name + "-large", host: i})
	}
	m.open(r)
	m.click(`#v-start [data-act=large]`)
	m.each("large text on", func(mt *mtab) error {
		mt.large = true
		return waitJS(mt, `document.documentElement.classList.contains("large") && document.readyState === "complete"`)
	})
	m.check("start-large", "v-start", expect{h1: "start.title", citizen: true, large: true})
	m.each("the start screen with large text", func(mt *mtab) error {
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
			var texts = Array.prototype.map.call(document.querySelectorAll("#v-start h1, #v-start .lead, #v-start .scan p, #v-start button, footer .help, footer button:not([hidden])"),
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
		want, err := m.cat.Text("help", mt.lang)
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
		if err := headerAtTheTextSize(m.cat, mt); err != nil {
			bad = append(bad, err.Error())
		}
		if err := noClippedLabels(mt); err != nil {
			bad = append(bad, err.Error())
		}
		if len(bad) > 0 {
			return fmt.Errorf("%s", strings.Join(bad, "; "))
		}
		return nil
	})
}
