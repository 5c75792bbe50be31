package screen_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"kluis/controller/wire"
)

// TestDiagnosticsScrollInTheirRegionOnTheSmallPanel: on the 800x480
// panel, with normal text as with large text, the technician's test and
// diagnostics (twelve compartments, a board, the alarms) are taller than
// the panel: they scroll in their own region, the page does not (the
// heading, Refresh and the footer with its help line stay on the
// screen), and under the region "More below: swipe up." says there is
// more, until the region is scrolled to its end. Before, with normal text
// the page was taller than 480 px with no region, and with large text the
// region gave no cue that it scrolls. Four languages, both sizes, axe-core
// clean; screenshots var/screenshots/kiosk/800x480{,-large}/<lang>/tech-scroll*.png.
func TestDiagnosticsScrollInTheirRegionOnTheSmallPanel(t *testing.T) {
	onSmallPanel(t, func(t *testing.T, p panelRun) {
		exp := time.Now().Add(time.Hour)
		p.r.be.set(func() {
			p.r.be.staff["login:BADGE-T"] = wire.StaffResponse{Result: wire.StaffOK, Session: "s1", StaffID: "17", StaffName: "Tom", Expires: &exp, Role: wire.RoleTechnician}
		})
		if _, err := p.r.e.StaffLogin(context.Background(), "BADGE-T", "", p.lang); err != nil {
			t.Fatal(err)
		}
		p.m.check("tech-menu", "v-staff-menu", expect{h1: "staff.menu.title"})
		p.click(t, `#v-staff-menu [data-act=tech]`)
		if err := waitJS(p.mt, `!!document.querySelector("[data-act=test-open][data-comp='12']")`); err != nil {
			t.Fatalf("diagnostics: %v", err)
		}
		p.m.check("tech-scroll", "v-tech", expect{h1: "tech.title"})
		type layout struct {
			Scroll, Inner, RegionScroll, RegionClient int
			More                                      bool
			MoreText                                  string
			HelpBottom, RefreshBottom                 float64
		}
		read := func() layout {
			t.Helper()
			l, err := eval[layout](p.mt, `(function(){ var b = document.querySelector("[data-tech-body]"), m = document.querySelector("[data-tech-more]");
				return {scroll: document.scrollingElement.scrollHeight, inner: window.innerHeight, regionScroll: b.scrollHeight, regionClient: b.clientHeight,
					more: !m.hidden && m.offsetParent !== null, moreText: m.textContent.trim(),
					helpBottom: document.querySelector("footer .help").getBoundingClientRect().bottom,
					refreshBottom: document.querySelector("#v-tech [data-act=tech-refresh]").getBoundingClientRect().bottom}; })()`)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
		l := read()
		var bad []string
		if l.Scroll > l.Inner {
			bad = append(bad, fmt.Sprintf("the page is %d px taller than the %d px screen", l.Scroll-l.Inner, l.Inner))
		}
		if l.RegionScroll <= l.RegionClient {
			bad = append(bad, fmt.Sprintf("the region does not scroll (%d of %d px)", l.RegionClient, l.RegionScroll))
		}
		if !l.More || l.MoreText != p.text(t, "tech.more") {
			bad = append(bad, fmt.Sprintf("more below shown %t %q, want %q", l.More, l.MoreText, p.text(t, "tech.more")))
		}
		if l.HelpBottom > float64(l.Inner) || l.RefreshBottom > float64(l.Inner) {
			bad = append(bad, fmt.Sprintf("help line (%.0f px) or Refresh (%.0f px) below the %d px screen", l.HelpBottom, l.RefreshBottom, l.Inner))
		}
		if len(bad) > 0 {
			t.Fatalf("%v", bad)
		}
		// Scrolled to the end (as a finger would): nothing more below.
		if _, err := eval[bool](p.mt, `(function(){ var b = document.querySelector("[data-tech-body]"); b.scrollTop = b.scrollHeight; return true; })()`); err != nil {
			t.Fatal(err)
		}
		if err := waitJS(p.mt, `document.querySelector("[data-tech-more]").hidden`); err != nil {
			t.Fatalf("more below still shown at the region's end: %v", err)
		}
		p.m.check("tech-scroll-end", "v-tech", expect{h1: "tech.title"})
	})
}
