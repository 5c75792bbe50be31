package web_test

import (
	"fmt"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/server/servertest"
	"kluis/deploy/dev/browsertest"
)

// People change their own password in the console (before, nobody could:
// only an admin's reset). In Chromium, French at phone width: a
// technician follows the header's link, types a new password too short
// (refused on that field), a wrong current password (refused, saying how
// many tries end the session), two different new ones, then changes it;
// the page says so, the technician's other console session has
// ended, this one goes on. Then, in German, three wrong current passwords
// end the session: the login page says it ended. Every step is axe-core
// clean and fits a phone; no password is written into a page, the audit
// trail or the server's log (at debug level).
func TestOwnPasswordForm(t *testing.T) {
	t.Parallel() // its own backend and database
	logs := &servertest.SyncBuffer{}
	e := newEnv(t, server.Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	other := e.client()
	other.login(auth.RoleTechnician)

	b := browsertest.New(t, browsertest.Options{})
	tab := b.NewTab(t, 360, 740)
	base := e.b.URL("")
	pageHTML := func() string { return evalString(t, tab, `document.documentElement.outerHTML`) }
	ft := formTab{t: t, tab: tab}
	check, submit, describedErr, emptyFields := ft.check, ft.submit, ft.describedErr, ft.emptyFields
	fill := func(current, pw, again string) {
		t.Helper()
		tab.Do(t, chromedp.Click(chromedp.CSS("#current_password")), chromedp.KeyEvent(current),
			chromedp.Click(chromedp.CSS("#new_password")), chromedp.KeyEvent(pw),
			chromedp.Click(chromedp.CSS("#new_password_again")), chromedp.KeyEvent(again))
		submit()
	}
	const newPW = "une phrase de passe toute neuve"
	old := password(auth.RoleTechnician)

	login(t, tab, base, e.users[auth.RoleTechnician], old)
	tab.Do(t, chromedp.Navigate(base+"/staff/devices?lang=fr"))
	tab.WaitFor(t, `!!document.querySelector(".who a[href='/staff/account/password']")`, 10*time.Second)
	assert.Equal(t, "Changer le mot de passe", tab.Text(t, ".who a[href='/staff/account/password']"))
	tab.Do(t, chromedp.Click(chromedp.CSS(".who a[href='/staff/account/password']")))
	tab.WaitFor(t, `location.pathname === "/staff/account/password" && !!document.querySelector("#new_password")`, 10*time.Second)
	assert.Equal(t, "Changer votre mot de passe", tab.Text(t, "h1"))
	for id, want := range map[string]string{"current_password": "password current-password label", "new_password": "password new-password label",
		"new_password_again": "password new-password label"} {
		assert.Equal(t, want, evalString(t, tab, `(function(){var f=document.getElementById("`+id+`");
			return [f.type, f.autocomplete, document.querySelector("label[for=`+id+`]")?"label":"no label"].join(" ")})()`), id)
	}
	check("password form fr")
	tab.Screenshot(t, "console/fr/password-phone")

	fill(old, "court", "court")
	assert.Equal(t, "Un mot de passe compte de 10 à 256 caractères.", describedErr("new_password"))
	emptyFields("too short")
	check("password refused fr")
	fill("pas mon mot de passe", newPW, newPW)
	assert.Equal(t, "Ce n'est pas votre mot de passe actuel (essai erroné 1 sur 3\u00a0; après 3, vous êtes déconnecté).", describedErr("current_password"))
	emptyFields("wrong password")
	assert.NotContains(t, pageHTML(), newPW)
	check("password wrong fr")
	tab.Screenshot(t, "console/fr/password-wrong-phone")
	fill(old, newPW, newPW+"!")
	assert.Equal(t, "Les deux nouveaux mots de passe diffèrent. Tapez deux fois le même.", describedErr("new_password_again"))
	fill(old, newPW, newPW)
	tab.WaitText(t, "main .notice", "Votre mot de passe est changé. Vos autres connexions ont pris fin.", 10*time.Second)
	assert.Equal(t, "/staff/account/password", evalString(t, tab, `location.pathname`))
	check("password changed fr")
	tab.Screenshot(t, "console/fr/password-changed-phone")
	p := other.get("/staff/")
	assert.Equal(t, 303, p.status, "the other console session ended")
	tab.Do(t, chromedp.Navigate(base+"/staff/account/password?lang=de"))
	tab.WaitFor(t, `!!document.querySelector("#new_password")`, 10*time.Second)
	assert.Equal(t, "Ihr Passwort ändern", tab.Text(t, "h1"), "this session goes on")
	check("password form de")

	// Three wrong current passwords end the session.
	for i := 1; i < auth.MaxStepUpFailures; i++ {
		fill("falsch "+fmt.Sprint(i), "ein ganz neues Passwort", "ein ganz neues Passwort")
		assert.Equal(t, fmt.Sprintf("Das ist nicht Ihr aktuelles Passwort (Fehlversuch %d von 3; nach 3 werden Sie abgemeldet).", i), describedErr("current_password"))
	}
	fill("falsch 3", "ein ganz neues Passwort", "ein ganz neues Passwort")
	tab.WaitFor(t, `location.pathname === "/staff/login"`, 10*time.Second)
	assert.Equal(t, "Ihre Sitzung ist abgelaufen. Melden Sie sich erneut an.", tab.Text(t, "main .notice"))
	check("session ended de")
	tab.Screenshot(t, "console/de/password-session-ended-phone")
	login(t, tab, base, e.users[auth.RoleTechnician], newPW) // the account is not locked

	trail := e.audit(fmt.Sprintf("user:%d", e.ids[auth.RoleTechnician]))
	assert.Contains(t, trail, `"own":true`)
	assert.Contains(t, trail, `"via":"console"`)
	assert.Contains(t, trail, `"password":"changed"`)
	assert.Contains(t, trail, `"session_ended":true`)
	for _, pw := range []string{old, newPW, "pas mon mot de passe", "ein ganz neues Passwort", "falsch 3"} {
		assert.NotContains(t, trail, pw, "no password in the audit trail")
		assert.NotContains(t, logs.String(), url.QueryEscape(pw), "no password in the log")
		assert.NotContains(t, logs.String(), pw, "no password in the log")
	}
	require.NotEmpty(t, trail)
}
