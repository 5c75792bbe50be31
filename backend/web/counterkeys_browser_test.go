package web_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/web"
	"kluis/deploy/dev/browsertest"
)

// A document taken back at the counter by keyboard alone, in each of the
// four languages: Tab to "back at the counter", Enter, Enter on the
// confirmation. The outcome's notice, in the page when it loads, gets the
// focus, so a screen reader reads it out (a live region present at load is
// not announced by every reader; the focus was on the page's body). axe-core
// checks the page with the focused notice; screenshots under
// var/screenshots/console/.
func TestCounterByKeyboardFocusesItsOutcome(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newConsoleEnv(t)
	b := browsertest.New(t, browsertest.Options{})
	base := e.b.URL("")
	for i, lang := range []string{"nl", "fr", "en", "de"} {
		id := e.expiredDoc(fmt.Sprintf("B0000083%d", i))
		tab := b.NewTab(t, 1280, 800)
		if i == 0 { // the tabs share the browser's cookies
			login(t, tab, base, e.users[auth.RoleStaff], password(auth.RoleStaff))
		}
		tab.Do(t, chromedp.Navigate(base+"/staff/documents/"+id+"?lang="+lang))
		tab.WaitFor(t, `!!document.querySelector("#a-counter")`, 20*time.Second)
		const button = `#a-counter form[action$="/retrieve"] button`
		reached := false
		for n := 0; n < 60 && !reached; n++ { // bounded: the page has fewer stops
			tab.Do(t, chromedp.KeyEvent("\t"))
			reached = evalString(t, tab, `String(document.activeElement === document.querySelector('`+button+`'))`) == "true"
		}
		require.True(t, reached, "%s: Tab never reached %q", lang, button)
		tab.Do(t, chromedp.KeyEvent("\r"))
		tab.WaitFor(t, `!!document.activeElement.closest("#counter-confirm button")`, 20*time.Second)
		tab.Do(t, chromedp.KeyEvent("\r"))
		tab.WaitFor(t, `!!document.querySelector(".notice") && !document.querySelector("#counter-confirm")`, 20*time.Second)
		assert.Contains(t, tab.Text(t, ".notice"), web.Text(lang, "notice.retrieved"), lang)
		assert.Equal(t, "retrieved", e.document(id)["state"], lang)
		tab.WaitFor(t, `document.activeElement === document.getElementById("notice")`, 20*time.Second)
		assert.Equal(t, "status", evalString(t, tab, `document.activeElement.getAttribute("role")`), lang)
		tab.CheckAxe(t, "counter done by keyboard "+lang)
		tab.Screenshot(t, "console/counter-keyboard-done-"+lang)
	}
}
