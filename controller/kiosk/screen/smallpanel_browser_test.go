package screen_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"kluis/controller/kiosk/screen"
	"kluis/deploy/dev/browsertest"
)

// panelRun is one subtest of onSmallPanel: its own kiosk (r), already open
// in its one tab (mt, the matrix m's only tab, which checks that citizen
// screens fit without scrolling), in language lang.
type panelRun struct {
	r    *rig
	m    *matrix
	mt   *mtab
	lang string
	cat  *screen.Catalog
}

// text is the catalogue's text of key in the run's language.
func (p panelRun) text(t *testing.T, key string) string {
	t.Helper()
	s, err := p.cat.Text(key, p.lang)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// click clicks sel (a real mouse click).
func (p panelRun) click(t *testing.T, sel string) {
	t.Helper()
	if err := do(p.mt, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)); err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
}

// onSmallPanel runs fn in every language at 800x480, large text off and
// on: eight subtests in parallel, each with its own kiosk and tab of one
// browser; screenshots under var/screenshots/kiosk/800x480{,-large}/<lang>/.
func onSmallPanel(t *testing.T, fn func(t *testing.T, p panelRun)) {
	onSmallPanelWith(t, rigOptions{}, fn)
}

// onSmallPanelWith is onSmallPanel with kiosks made with o.
func onSmallPanelWith(t *testing.T, o rigOptions, fn func(t *testing.T, p panelRun)) {
	if testing.Short() {
		t.Skip("browser")
	}
	// Its own kiosks and browser: it runs beside the package's other
	// browser tests, its browser until the test binary's deadline (it may
	// wait its turn behind them).
	t.Parallel()
	b := browsertest.New(t, browsertest.Options{})
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
				r := newRig(t, o)
				m := newMatrix(t)
				m.checkFit = true
				m.tabs = []*mtab{{tab: b.NewTab(t, small.w, small.h), lay: small, lang: l, large: large, folder: folder, host: 0}}
				m.open(r)
				fn(t, panelRun{r: r, m: m, mt: m.tabs[0], lang: l, cat: cat})
			})
		}
	}
}

// wantButtons checks the visible buttons of the section sec and of the
// footer, by their text (want, in order): the first is the primary
// "Try again"; the help line says 1777; no label is cut off; and in French
// no line can start with a punctuation mark ("Aide\u00a0? Appelez le 1777.").
func (p panelRun) wantButtons(t *testing.T, sec string, want ...string) {
	t.Helper()
	got, err := eval[[]string](p.mt, `Array.prototype.filter.call(document.querySelectorAll("#`+sec+` button, footer button"),
		function(b){ return b.offsetParent !== null; }).map(function(b){ return b.textContent.trim(); })`)
	if err != nil || strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("buttons %q (%v), want %q", got, err, want)
	}
	primary, err := eval[string](p.mt, `document.querySelector("#`+sec+` .btn.primary").textContent.trim()`)
	if err != nil || primary != p.text(t, "again") {
		t.Fatalf("primary button %q (%v), want %q", primary, err, p.text(t, "again"))
	}
	help, err := eval[string](p.mt, `document.querySelector("footer .help").innerText.trim()`)
	if err != nil || help != p.text(t, "help") || !strings.Contains(help, "1777") {
		t.Fatalf("help line %q (%v), want %q", help, err, p.text(t, "help"))
	}
	if err := noClippedLabels(p.mt); err != nil {
		t.Fatal(err)
	}
	if p.lang == "fr" {
		body, err := eval[string](p.mt, `document.body.innerText`)
		if m := regexp.MustCompile(`.{0,20} [:?!;]`).FindString(body); err != nil || m != "" {
			t.Fatalf("a plain space before a French punctuation mark: %q (%v)", m, err)
		}
	}
}
