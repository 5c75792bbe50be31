package screen_test

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestWarnedBeforeTheLastPINTry: with kluisd allowing 3 wrong PINs, the
// first wrong PIN typed on the keypad shows no warning, the second says
// that one more locks the keypad for lockout.duration (15 minutes), the
// third locks PIN entry; in every language at 800x480, fitting and
// passing axe. The warning counts the device's wrong PINs only: the same
// for any code.
func TestWarnedBeforeTheLastPINTry(t *testing.T) {
	onSmallPanelWith(t, rigOptions{lockout: "max_failures: 3, window: 10m, duration: 15m"}, func(t *testing.T, p panelRun) {
		wrongPIN := func(pin string) {
			t.Helper()
			for _, k := range strings.Split(pin, "") {
				p.click(t, `#v-pin [data-key="`+k+`"]`)
			}
			p.click(t, `#v-pin [data-key=ok]`)
		}
		lastTry := func() string {
			t.Helper()
			s, err := eval[string](p.mt, `(function(){var e=document.querySelector("#s-wrong_code [data-last-try]");return e.hidden?"":e.innerText.trim()})()`)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		p.click(t, `#v-start [data-act=pin]`)
		wrongPIN("11122233")
		p.m.check("last_try-first", "s-wrong_code", expect{h1: "title.wrong_code", msg: "state.wrong_code", next: "next.wrong_code", citizen: true})
		if s := lastTry(); s != "" {
			t.Fatalf("after the first of 3 wrong PINs the screen warns %q", s)
		}
		p.click(t, `#s-wrong_code [data-act=again]`)
		wrongPIN("44455566")
		p.m.check("last_try", "s-wrong_code", expect{h1: "title.wrong_code", msg: "state.wrong_code", next: "next.wrong_code", citizen: true})
		if want := strings.ReplaceAll(p.text(t, "pin.last_try.many"), "{m}", "15"); lastTry() != want {
			t.Fatalf("after the second of 3 wrong PINs the screen warns %q, want %q", lastTry(), want)
		}
		p.click(t, `#s-wrong_code [data-act=again]`)
		wrongPIN("77788899")
		p.m.check("last_try-locked", "s-locked_out", expect{h1: "title.locked_out", msg: "state.locked_out", next: "next.closed", citizen: true})
	})
}

// TestWarnedBeforeTheIdleReturn: a citizen who stops halfway through a
// PIN is warned before the screen goes back to the start
// (timeouts.session, here 40 s: the warning comes 10 s before), with
// the seconds left; "I am still here" keeps the keypad and the digits
// typed. In every language at 800x480, passing axe.
func TestWarnedBeforeTheIdleReturn(t *testing.T) {
	onSmallPanelWith(t, rigOptions{session: "40s"}, func(t *testing.T, p panelRun) {
		// The tab's first check loads axe-core into the page (the keypad
		// comes without a reload): the check of the warning, which is
		// shown 10 s only, then only runs it.
		p.mt.tab.CheckAxe(t, "start")
		p.click(t, `#v-start [data-act=pin]`)
		p.click(t, `#v-pin [data-key="1"]`)
		p.click(t, `#v-pin [data-key="2"]`)
		// The warning is due 30 s after the last touch: wait up to a minute.
		if err := waitJSWithin(p.mt, `!document.getElementById("idle-warn").hidden`, time.Minute); err != nil {
			t.Fatalf("no warning before the idle return: %v", err)
		}
		got, err := eval[[]string](p.mt, `[document.querySelector("#idle-warn [data-idle-shown]").innerText.trim(),
			document.querySelector("#idle-warn [data-idle-said]").textContent,
			document.querySelector("#idle-warn [data-act=stay]").hidden ? "" : document.querySelector("#idle-warn [data-act=stay]").innerText.trim(),
			document.querySelector("main .view:not([hidden])").id]`)
		if err != nil {
			t.Fatal(err)
		}
		tpl := regexp.QuoteMeta(p.text(t, "idle.warn"))
		// "In 1 second" has a text of its own.
		re := regexp.MustCompile("^(" + strings.Replace(tpl, `\{n\}`, `([2-9]|10)`, 1) + "|" + regexp.QuoteMeta(p.text(t, "idle.warn.one")) + ")$")
		if !re.MatchString(got[0]) || !re.MatchString(got[1]) || got[2] != p.text(t, "idle.stay") || got[3] != "v-pin" {
			t.Fatalf("warning %q, said %q, button %q on %s: want %q with 1-10 seconds and %q on the PIN keypad",
				got[0], got[1], got[2], got[3], p.text(t, "idle.warn"), p.text(t, "idle.stay"))
		}
		p.mt.tab.CheckAxe(t, "idle warning")
		if err := shot(p.mt, "idle-warn"); err != nil {
			t.Fatal(err)
		}
		p.click(t, `#idle-warn [data-act=stay]`)
		kept, err := eval[string](p.mt, `(function(){var w=document.getElementById("idle-warn");
			return w.hidden + " " + document.querySelector("main .view:not([hidden])").id + " " + document.querySelector("[data-out=pin]").textContent.length})()`)
		if err != nil || kept != "true v-pin 2" {
			t.Fatalf("after %q: warning hidden, view, digits typed: %q (%v), want the keypad with its 2 digits", p.text(t, "idle.stay"), kept, err)
		}
	})
}
