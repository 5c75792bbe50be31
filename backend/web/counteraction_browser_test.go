package web_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"

	"kluis/backend/auth"
	"kluis/backend/web"
	"kluis/deploy/dev/browsertest"
)

// An expired document taken out without the kiosk, recorded at the
// counter in headless Chromium, at desktop and phone widths: the page
// offers "back at the counter" and "handed over" with a hint, asks first
// (the focus on the confirmation's button), and Enter records it. Each
// state with zero axe-core WCAG 2.1 A/AA violations; screenshots under
// var/screenshots/console/.
func TestCounterRecordsAnExpiredDocumentInBrowser(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newConsoleEnv(t)
	b := browsertest.New(t, browsertest.Options{})
	base := e.b.URL("")
	for i, v := range []struct {
		name, number, action, lang, state string
		w, h                              int64
	}{
		{"desktop", "B00000721", "retrieve", "nl", "retrieved", 1280, 800},
		{"phone", "B00000722", "collect", "fr", "collected", 390, 844},
	} {
		id := e.expiredDoc(v.number)
		tab := b.NewTab(t, v.w, v.h)
		if i == 0 { // the tabs share the browser's cookies
			login(t, tab, base, e.users[auth.RoleStaff], password(auth.RoleStaff))
		}
		tab.Do(t, chromedp.Navigate(base+"/staff/documents/"+id+"?lang="+v.lang))
		tab.WaitFor(t, `!!document.querySelector("#a-counter")`, 20*time.Second)
		assert.Equal(t, web.Text(v.lang, "document.at_counter"), tab.Text(t, "#h-counter"))
		tab.CheckAxe(t, "counter actions "+v.name)
		noSideScroll(t, tab, "counter actions "+v.name)
		tab.Screenshot(t, "console/counter-actions-"+v.name)
		tab.Do(t, chromedp.Click(chromedp.CSS(`#a-counter form[action$="/`+v.action+`"] button`)))
		tab.WaitFor(t, `!!document.activeElement.closest("#counter-confirm button")`, 20*time.Second)
		tab.CheckAxe(t, "counter confirm "+v.name)
		noSideScroll(t, tab, "counter confirm "+v.name)
		tab.Screenshot(t, "console/counter-confirm-"+v.name)
		assert.Equal(t, "expired", e.document(id)["state"], "nothing before the confirmation")
		tab.Do(t, chromedp.KeyEvent("\r"))
		tab.WaitFor(t, `!!document.querySelector(".notice") && !document.querySelector("#counter-confirm")`, 20*time.Second)
		notice := map[string]string{"retrieve": "notice.retrieved", "collect": "notice.handed_over"}[v.action]
		assert.Contains(t, tab.Text(t, ".notice"), web.Text(v.lang, notice))
		assert.Equal(t, v.state, e.document(id)["state"])
		tab.Screenshot(t, "console/counter-done-"+v.name)
	}
}
