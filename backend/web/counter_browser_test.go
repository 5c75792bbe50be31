package web_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/web"
	"kluis/deploy/dev/browsertest"
)

// A counter employee registers a card with real keys and clicks, in Dutch
// and in French: the notice says which device, compartment and site the
// document goes to. "Make new codes" (the old QR code and PIN stop
// working) first asks, naming the holder and reminding staff to check
// the holder's date of birth first: "No" changes nothing, "Yes"
// makes the codes, and the holder without e-mail or phone is to get a new
// slip. axe-core passes on the confirmation. The documents page puts the
// focus in its search field. A mistyped
// password at the login leaves the focus in the password field.
func TestCounterRegisterAndReissueInBrowser(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	b := browsertest.New(t, browsertest.Options{})
	base := e.b.URL("")
	for i, v := range []struct {
		lang, first, where, confirm, done, slip string
		w, h                                    int64
	}{
		{"nl", "Lotte", "Kluis inkomhal, vak ", "Nieuwe QR-code en pincode maken voor Lotte Peeters?", "nieuwe codes gemaakt", "Druk het nieuwe afhaalbewijs af", 1366, 768},
		{"fr", "Léa", "Kluis inkomhal, casier ", "Créer un nouveau code QR et un nouveau code PIN pour Léa Peeters\u00a0?", "nouveaux codes sont créés", "Imprimez le nouveau bon de retrait", 768, 1024},
	} {
		tab := b.NewTab(t, v.w, v.h)
		// A mistyped password: the focus waits in the password field, the
		// user name kept, so the right one is typed straight away.
		tab.Do(t, chromedp.Navigate(base+"/staff/login?lang="+v.lang))
		tab.WaitFor(t, `document.activeElement && document.activeElement.id === "username"`, 20*time.Second)
		tab.Do(t, chromedp.KeyEvent(e.users[auth.RoleStaff]+"\tmistyped\r"))
		tab.WaitFor(t, `!!document.querySelector(".error-summary") && document.activeElement.id === "password"`, 20*time.Second)
		tab.Do(t, chromedp.KeyEvent(password(auth.RoleStaff)+"\r"))
		tab.WaitFor(t, `location.pathname === "/staff/documents"`, 20*time.Second)
		tab.Do(t, chromedp.Navigate(base+"/staff/documents/new?lang="+v.lang))
		tab.WaitFor(t, `document.activeElement && document.activeElement.id === "f-number"`, 10*time.Second)
		tab.Do(t, chromedp.KeyEvent(fmt.Sprintf("591-765432%d-98", i)+"\t"+v.first+"\tPeeters\t15\t6\t1988"),
			chromedp.Click(chromedp.CSS("#c-none")), chromedp.Click(chromedp.CSS(`form button[type=submit].primary`)))
		tab.WaitFor(t, `location.pathname.startsWith("/staff/documents/") && !!document.querySelector(".notice")`, 10*time.Second)
		id := strings.TrimPrefix(evalString(t, tab, `location.pathname`), "/staff/documents/")
		notice := tab.Text(t, ".notice")
		assert.Contains(t, notice, fmt.Sprintf("%s%d (Stadhuis Kortrijk)", v.where, e.compartmentOf(id)), "where the document goes")

		// Loaded at the kiosk; the holder at the counter lost the PIN.
		require.NoError(t, e.b.Call(t.Context(), "POST", "/api/v1/documents/"+id+"/load", nil, nil))
		tab.Do(t, chromedp.Navigate(base+"/staff/documents/"+id))
		tab.WaitFor(t, `!!document.querySelector('form[action$="/reissue"] button')`, 10*time.Second)
		tab.Do(t, chromedp.Click(chromedp.CSS(`form[action$="/reissue"] button`)))
		tab.WaitFor(t, `!!document.querySelector("#reissue-confirm")`, 10*time.Second)
		assert.Equal(t, v.confirm, tab.Text(t, "#reissue-confirm p"))
		// A citizen phoning about a lost PIN: staff are reminded to check
		// it is the holder, with the date of birth to compare.
		birth := time.Date(1988, 6, 15, 0, 0, 0, 0, time.UTC).Format(web.Text(v.lang, "fmt.date"))
		assert.Contains(t, tab.Text(t, "#reissue-identity"), web.Text(v.lang, "document.reissue_identity", "birth", birth))
		// The focus on the confirmation's button.
		tab.WaitFor(t, `!!document.activeElement.closest("#reissue-confirm button")`, 10*time.Second)
		tab.CheckAxe(t, "reissue confirm "+v.lang)
		tab.Screenshot(t, "console/reissue-confirm-"+v.lang)
		assert.NotContains(t, e.audit("document:"+id), "reissue", "nothing before the confirmation")
		assert.GreaterOrEqual(t, evalInt(t, tab, `Math.round(document.querySelector("#reissue-confirm a").getBoundingClientRect().height)`), 44, "the No link is a target a finger hits")
		// No: back to the document, nothing changed.
		tab.Do(t, chromedp.Click(chromedp.CSS(`#reissue-confirm a`)))
		tab.WaitFor(t, `!document.querySelector("#reissue-confirm") && !!document.querySelector('form[action$="/reissue"] button')`, 10*time.Second)
		assert.NotContains(t, e.audit("document:"+id), "reissue")
		// Yes, with the keyboard: the focused button and Enter.
		tab.Do(t, chromedp.Click(chromedp.CSS(`form[action$="/reissue"] button`)))
		tab.WaitFor(t, `!!document.activeElement.closest("#reissue-confirm button")`, 10*time.Second)
		tab.Do(t, chromedp.KeyEvent("\r"))
		tab.WaitFor(t, `!!document.querySelector(".notice") && !document.querySelector("#reissue-confirm")`, 10*time.Second)
		assert.Contains(t, tab.Text(t, ".notice"), v.done)
		assert.Contains(t, tab.Text(t, ".notice"), v.slip, "no e-mail or phone: the new codes are on a new slip")
		assert.Contains(t, e.audit("document:"+id), "reissue")
		// The next citizen asks for their card by name: the search field
		// has the focus, ready for typing or a scanner.
		tab.Do(t, chromedp.Click(chromedp.CSS(`nav.main-nav a[href="/staff/documents"]`)))
		tab.WaitFor(t, `location.pathname === "/staff/documents" && document.activeElement.id === "q"`, 20*time.Second)
		tab.Do(t, chromedp.KeyEvent(v.first+" peeters\r"))
		tab.WaitFor(t, `!!document.querySelector("#h-results")`, 20*time.Second)
		assert.Contains(t, tab.Text(t, "main"), fmt.Sprintf("591-765432%d-98", i))
		// The day ends: log out (the tabs share the browser's cookies).
		tab.Do(t, chromedp.Click(chromedp.CSS(`header form button`)))
		tab.WaitFor(t, `location.pathname === "/staff/login" && !!document.querySelector(".notice")`, 20*time.Second)
	}
}

// "Afhalen annuleren" cannot be undone: it first asks, naming the holder,
// and keeps the reason typed; "Nee" changes nothing, "Ja" (focused, Enter)
// cancels with that reason.
func TestCounterCancelAsksFirstInBrowser(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	id := e.register("591-0000077-70", false)
	b := browsertest.New(t, browsertest.Options{})
	tab := b.NewTab(t, 1366, 768)
	base := e.b.URL("")
	login(t, tab, base, e.users[auth.RoleStaff], password(auth.RoleStaff))
	ask := func() {
		tab.Do(t, chromedp.Navigate(base+"/staff/documents/"+id))
		tab.WaitFor(t, `!!document.querySelector("#a-reason")`, 20*time.Second)
		tab.Do(t, chromedp.Click(chromedp.CSS("#a-reason")), chromedp.KeyEvent("holder moved abroad"),
			chromedp.Click(chromedp.CSS(`form[action$="/cancel"] button.danger`)))
		tab.WaitFor(t, `!!document.activeElement.closest("#cancel-confirm button")`, 20*time.Second)
	}
	ask()
	assert.Equal(t, "Het afhalen annuleren voor Jan Peeters?", tab.Text(t, "#cancel-confirm p"))
	tab.CheckAxe(t, "cancel confirm")
	tab.Screenshot(t, "console/cancel-confirm-desktop")
	assert.Equal(t, "reserved", e.document(id)["state"], "nothing before the confirmation")
	tab.Do(t, chromedp.Click(chromedp.CSS("#cancel-confirm a")))
	tab.WaitFor(t, `!document.querySelector("#cancel-confirm") && !!document.querySelector("#a-reason")`, 20*time.Second)
	assert.Equal(t, "reserved", e.document(id)["state"])
	ask()
	tab.Do(t, chromedp.KeyEvent("\r"))
	tab.WaitFor(t, `!!document.querySelector(".notice") && !document.querySelector("#cancel-confirm")`, 20*time.Second)
	assert.Contains(t, tab.Text(t, ".notice"), "geannuleerd")
	assert.Equal(t, "cancelled", e.document(id)["state"])
	var note string
	require.NoError(t, e.pool().QueryRow(context.Background(), `SELECT note FROM document_transitions
		WHERE document_id = $1 AND action = 'cancel'`, id).Scan(&note))
	assert.Equal(t, "holder moved abroad", note, "the reason typed before the confirmation, in the history")
	assert.NotContains(t, e.audit("document:"+id), "holder moved abroad", "the chained audit record only refers to it")
	assert.Contains(t, e.audit("document:"+id), `"note_transition"`)
}
