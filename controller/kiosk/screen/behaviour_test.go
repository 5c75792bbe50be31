package screen_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"kluis/controller/engine"
	"kluis/controller/wire"
	"kluis/deploy/dev/browsertest"
)

// TestScreenBehaviour drives the page in headless Chromium as people do:
// large text and 200% zoom, the keyboard alone, the idle timeout and a
// kluisd restart. One browser for all; each subtest has its own kiosk and
// tabs, and all but the idle one (its 3 s timeout wants no company) run in
// parallel after it.
func TestScreenBehaviour(t *testing.T) {
	if testing.Short() {
		t.Skip("browser")
	}
	// Its own kiosks and browser: it runs beside the package's other
	// browser tests, its browser until the test binary's deadline (it may
	// wait its turn behind them).
	t.Parallel()
	b := browsertest.New(t, browsertest.Options{})

	t.Run("large text and 200% zoom", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, rigOptions{})
		m := newMatrix(t)
		for i, lay := range layouts {
			lt := &mtab{tab: b.NewTab(t, lay.w, lay.h), lay: lay, lang: "fr", folder: lay.name + "-large", host: i}
			zoom := layout{name: lay.name, w: lay.w / 2, h: lay.h / 2, scale: 2}
			zt := &mtab{tab: b.NewTab(t, zoom.w, zoom.h), lay: zoom, lang: "de", folder: lay.name + "-zoom200", host: i}
			if err := do(zt, chromedp.EmulateViewport(zoom.w, zoom.h, chromedp.EmulateScale(zoom.scale))); err != nil {
				t.Fatal(err)
			}
			m.tabs = append(m.tabs, lt, zt)
		}
		m.open(r)
		m.check("start", "v-start", expect{h1: "start.title", msg: "state.idle"})
		// The large-text button on the start screen switches the mode.
		m.each("large text button", func(mt *mtab) error {
			if mt.lay.scale != 0 {
				return nil
			}
			if err := do(mt, chromedp.Click(chromedp.CSS(`#v-start [data-act=large]`), chromedp.NodeVisible)); err != nil {
				return err
			}
			mt.large = true
			if err := waitJS(mt, `document.documentElement.classList.contains("large") && document.readyState === "complete"`); err != nil {
				return err
			}
			pressed, err := eval[string](mt, `document.querySelector("#v-start [data-act=large]").getAttribute("aria-pressed")`)
			if err == nil && pressed != "true" {
				err = fmt.Errorf("aria-pressed %q after switching on", pressed)
			}
			if err != nil {
				return err
			}
			// Its own colours: black background, light text.
			bg, err := eval[string](mt, `getComputedStyle(document.body).backgroundColor`)
			if err == nil && bg != "rgb(0, 0, 0)" {
				err = fmt.Errorf("large mode background %s", bg)
			}
			return err
		})
		m.check("start", "v-start", expect{h1: "start.title", msg: "state.idle"})
		m.click(`[data-act=pin]`)
		m.keys("987654")
		m.check("pin", "v-pin", expect{h1: "pin.title"})
		r.be.set(func() {
			r.be.verify["K1.c4"] = okAt("doc-4", 3)
			r.be.verify["K1.lock"] = wire.VerifyResponse{Result: wire.VerifyDeviceLockedOut, RetryAfterS: 300}
		})
		r.item(3, true)
		o := r.opens(3)
		r.pickup(engine.PickupRequest{QR: "K1.c4"})
		r.waitOpened(3, o)
		m.check("open", "s-open", expect{h1: "title.open", msg: "state.open", n: 4})
		r.close(3, false)
		m.check("done", "s-done", expect{h1: "title.done", msg: "state.done"})
		r.pickup(engine.PickupRequest{QR: "K1.lock"})
		m.check("locked_out", "s-locked_out", expect{h1: "title.locked_out", msg: "state.locked_out", next: "next.closed"})
	})

	t.Run("keyboard alone: PIN and date of birth", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, rigOptions{})
		r.be.set(func() {
			r.be.verify["246813579/"] = wire.VerifyResponse{Result: wire.VerifySecondFactorRequired}
			r.be.verify["246813579/1961-12-24"] = okAt("doc-kb", 0)
		})
		r.item(0, true)
		tab := b.NewTab(t, 800, 480)
		tab.Do(t, chromedp.Navigate(r.base+"/?lang=en"))
		tab.WaitFor(t, `document.readyState === "complete"`, 20*time.Second)
		// Tab through the language switch to "Type your PIN".
		for i := 0; i < 10; i++ {
			tab.Do(t, chromedp.KeyEvent("\t"))
			if tab.Text(t, `:focus`) == "Type your PIN" {
				break
			}
		}
		if got := tab.Text(t, `:focus`); got != "Type your PIN" {
			t.Fatalf("Tab reached %q, not the PIN button", got)
		}
		// The focus is visible: a thick outline.
		outline, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[string](`getComputedStyle(document.activeElement).outlineStyle + " " + getComputedStyle(document.activeElement).outlineWidth`))
		if err != nil || outline != "solid 4px" {
			t.Fatalf("focus outline %q (%v)", outline, err)
		}
		tab.Do(t, chromedp.KeyEvent("\r"))
		tab.WaitFor(t, `!document.getElementById("v-pin").hidden`, 20*time.Second)
		tab.Do(t, chromedp.KeyEvent("2468135799"))
		tab.Do(t, chromedp.KeyEvent("\b"))                                                                            // one digit too many: deleted
		tab.WaitText(t, `[data-out=pin]`, "\u2022\u2022\u2022 \u2022\u2022\u2022 \u2022\u2022\u2022", 10*time.Second) // masked: 9 digits
		tab.Do(t, chromedp.KeyEvent("\r"))
		tab.WaitFor(t, `!document.getElementById("v-birth").hidden`, 20*time.Second)
		tab.Do(t, chromedp.KeyEvent("24121961\r"))
		tab.WaitFor(t, `!document.getElementById("s-open").hidden`, 20*time.Second)
		tab.WaitText(t, `#s-open .msg`, "Compartment\u00a01 is open", 10*time.Second)
		// The screen turns to "open" as the engine sends the pulse: the
		// fake board may record it a moment later.
		for deadline := time.Now().Add(5 * time.Second); len(r.f.Pulses()) == 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if n := len(r.f.Pulses()); n != 1 {
			t.Fatalf("%d pulses, want 1", n)
		}
		tab.CheckAxe(t, "keyboard: open")
	})

	t.Run("keyboard-wedge scanner without focus, and a wrong date", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, rigOptions{})
		r.be.set(func() { r.be.verify["K1.Scanned-Token_9"] = okAt("doc-scan", 1) })
		r.item(1, true)
		tab := b.NewTab(t, 1080, 1920)
		tab.Do(t, chromedp.Navigate(r.base+"/?lang=nl"))
		tab.WaitFor(t, `document.readyState === "complete" && document.activeElement === document.body || document.activeElement.tagName === "H1"`, 20*time.Second)
		o := r.opens(1)
		tab.Do(t, browsertest.Scan("K1.Scanned-Token_9\r"))
		tab.WaitFor(t, `!document.getElementById("s-open").hidden`, 20*time.Second)
		tab.WaitText(t, `#s-open .msg`, "Vak\u00a02 is open", 10*time.Second)
		tab.WaitText(t, `#drawing figcaption`, "Vak\u00a02", 10*time.Second)

		// A date that does not exist is refused on the page.
		r.be.set(func() { r.be.verify["13572468/"] = wire.VerifyResponse{Result: wire.VerifySecondFactorRequired} })
		// The screen says "open" as the engine journals the pulse: the
		// door is shut only after the engine has taken its opening (a
		// close before it would leave the engine waiting for the door).
		r.waitOpened(1, o)
		r.close(1, false)
		tab.WaitFor(t, `!document.getElementById("s-done").hidden`, 20*time.Second)
		tab.Do(t, chromedp.Click(chromedp.CSS(`footer [data-act=restart]`), chromedp.NodeVisible))
		tab.Do(t, chromedp.Click(chromedp.CSS(`[data-act=pin]`), chromedp.NodeVisible))
		for _, k := range "13572468" {
			tab.Do(t, chromedp.Click(chromedp.CSS(`#v-pin [data-key="`+string(k)+`"]`), chromedp.NodeVisible))
		}
		tab.Do(t, chromedp.Click(chromedp.CSS(`#v-pin [data-key=ok]`), chromedp.NodeVisible))
		tab.WaitFor(t, `!document.getElementById("v-birth").hidden`, 20*time.Second)
		for _, k := range "31021990" {
			tab.Do(t, chromedp.Click(chromedp.CSS(`#v-birth [data-key="`+string(k)+`"]`), chromedp.NodeVisible))
		}
		tab.Do(t, chromedp.Click(chromedp.CSS(`#v-birth [data-key=ok]`), chromedp.NodeVisible))
		tab.WaitFor(t, `!document.querySelector("#v-birth [data-err=invalid]").hidden`, 10*time.Second)
		tab.Screenshot(t, "kiosk/behaviour/invalid-date")
		tab.CheckAxe(t, "invalid date")
	})

	t.Run("idle: back to the start screen and the default language", func(t *testing.T) {
		r := newRig(t, rigOptions{session: "3s"})
		tab := b.NewTab(t, 800, 480)
		tab.Do(t, chromedp.Navigate(r.base+"/?lang=nl"))
		tab.WaitFor(t, `document.readyState === "complete"`, 20*time.Second)
		// A citizen switches to French, starts typing a PIN, walks away.
		// (On a slow machine the page may already have gone back: the
		// end is what counts.)
		tab.Do(t, chromedp.Click(chromedp.CSS(`a[data-lang=fr]`), chromedp.NodeVisible))
		tab.WaitFor(t, `document.documentElement.lang === "fr" && document.readyState === "complete"`, 20*time.Second)
		tab.Do(t, chromedp.Click(chromedp.CSS(`[data-act=pin]`), chromedp.NodeVisible))
		tab.Do(t, chromedp.KeyEvent("1234"))
		tab.WaitFor(t, `document.documentElement.lang === "nl" && document.readyState === "complete" && !document.getElementById("v-start").hidden`, 30*time.Second)
		if got := tab.Text(t, `[data-out=pin]`); got != "" {
			t.Fatalf("the PIN %q is still on the page", got)
		}
		tab.Screenshot(t, "kiosk/behaviour/idle-back-to-start")
		// A result screen goes back too (kluisd's timer, pushed to the page).
		r.pickup(engine.PickupRequest{QR: "K1.wrong", Lang: "de"})
		tab.WaitFor(t, `!document.getElementById("s-wrong_code").hidden`, 20*time.Second)
		tab.WaitFor(t, `!document.getElementById("v-start").hidden`, 30*time.Second)
		tab.Screenshot(t, "kiosk/behaviour/idle-result-back-to-start")
		if s := r.e.Screen(); s.State != engine.StateIdle || s.Lang != "nl" {
			t.Fatalf("engine %s in %s after the idle timeout", s.State, s.Lang)
		}
	})

	t.Run("each role sees its own buttons on the staff menu", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, rigOptions{})
		exp := time.Now().Add(time.Hour)
		r.be.set(func() {
			r.be.staff["login:4711"] = wire.StaffResponse{Result: wire.StaffOK, Session: "s1", StaffID: "u1",
				StaffName: "Clerk", Expires: &exp, Role: wire.RoleStaff}
			r.be.staff["login:8800"] = wire.StaffResponse{Result: wire.StaffOK, Session: "s2", StaffID: "u2",
				StaffName: "Tech", Expires: &exp, Role: wire.RoleTechnician}
		})
		tab := b.NewTab(t, 800, 480)
		tab.Do(t, chromedp.Navigate(r.base+"/?lang=en"))
		tab.WaitFor(t, `document.readyState === "complete"`, 20*time.Second)
		visible := `(function(){var o={};document.querySelectorAll("#v-staff-menu [data-act]").forEach(function(b){o[b.getAttribute("data-act")]=!b.hidden;});return JSON.stringify(o);})()`
		login := func(pin string) {
			tab.Do(t, chromedp.Click(`footer [data-act=staff-login]`, chromedp.NodeVisible))
			tab.WaitFor(t, `!document.getElementById("v-staff-login").hidden`, 20*time.Second)
			tab.Do(t, chromedp.KeyEvent(pin+"\r"))
			tab.WaitFor(t, `!document.getElementById("v-staff-menu").hidden`, 20*time.Second)
		}
		logout := func() {
			tab.Do(t, chromedp.Click(`footer [data-act=logout]`, chromedp.NodeVisible))
			tab.WaitFor(t, `!document.getElementById("v-start").hidden`, 20*time.Second)
		}

		login("4711")
		if got, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[string](visible)); err != nil || got != `{"load":true,"retrieve":true,"unlock":true,"tech":false}` {
			t.Fatalf("counter staff see %s (%v)", got, err)
		}
		tab.CheckAxe(t, "staff menu: counter staff")
		logout()

		login("8800")
		if got, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[string](visible)); err != nil || got != `{"load":false,"retrieve":false,"unlock":true,"tech":true}` {
			t.Fatalf("a technician sees %s (%v)", got, err)
		}
		tab.Do(t, chromedp.Click(`#v-staff-menu [data-act=tech]`, chromedp.NodeVisible))
		tab.WaitFor(t, `!document.getElementById("v-tech").hidden && document.querySelector("[data-tech-body]").children.length > 0`, 20*time.Second)
		tab.CheckAxe(t, "technician diagnostics")
		tab.Screenshot(t, "kiosk/behaviour/tech-menu")
		logout()
		// Logged out, the diagnostics are refused.
		if code, _, _ := r.get("/screen/tech"); code != http.StatusForbidden {
			t.Fatalf("/screen/tech without a technician: %d", code)
		}
	})

	t.Run("kluisd restarts: the page waits and comes back", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, rigOptions{})
		tab := b.NewTab(t, 800, 480)
		tab.Do(t, chromedp.Navigate(r.base+"/?lang=en"))
		tab.WaitFor(t, `document.readyState === "complete"`, 20*time.Second)
		tab.Do(t, chromedp.Evaluate[chromedp.Void](`window.sameDocument = true`))
		r.pickup(engine.PickupRequest{QR: "K1.wrong"})
		tab.WaitFor(t, `!document.getElementById("s-wrong_code").hidden`, 20*time.Second)
		addr := strings.TrimPrefix(r.base, "http://")
		r.stopServer()
		tab.WaitFor(t, `!document.getElementById("v-offline").hidden`, 20*time.Second)
		tab.Screenshot(t, "kiosk/behaviour/offline")

		// A new kluisd on the same address: its seq starts again at 1.
		r2 := newRig(t, rigOptions{listen: addr})
		if r2.e.Screen().Seq >= r.e.Screen().Seq {
			t.Fatalf("the new engine's seq %d is not below the old one's %d", r2.e.Screen().Seq, r.e.Screen().Seq)
		}
		tab.WaitFor(t, `!document.getElementById("v-start").hidden`, 30*time.Second)
		tab.WaitFor(t, `window.sameDocument === true`, time.Second) // no reload: same build
		r2.be.set(func() { r2.be.verify["K1.after"] = okAt("doc-after", 4) })
		r2.item(4, true)
		r2.pickup(engine.PickupRequest{QR: "K1.after"})
		tab.WaitText(t, `#s-open .msg`, "Compartment\u00a05 is open", 20*time.Second)
		r2.stopServer()

		// Another build: the page reloads itself (once the server answers).
		r3 := newRig(t, rigOptions{})
		var told atomic.Bool
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path == "/kiosk/v1/events" && told.CompareAndSwap(false, true) {
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, "retry: 1000\nevent: hello\ndata: {\"build\":\"another-build\"}\n\n")
				return
			}
			r3.ks.Handler().ServeHTTP(w, req)
		}), ReadHeaderTimeout: 5 * time.Second}
		l := listen(t, addr)
		go srv.Serve(l)
		t.Cleanup(func() { r3.ks.CloseStreams(); srv.Close() })
		tab.WaitFor(t, `window.sameDocument === undefined && document.readyState === "complete"`, 30*time.Second)
		tab.WaitFor(t, `!document.getElementById("v-start").hidden`, 20*time.Second)
	})
}
