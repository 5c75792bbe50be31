package web_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
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

// The staff PIN forms in Chromium, with real clicks and keys: a staff
// member whose PIN is short follows the notice's link (Dutch, phone
// width), types a PIN of 7 digits (refused on the PIN field, with the
// catalogue's words, the field pointing at its error), then a wrong
// password (refused on the password field), then sets one of 8 digits; the
// notice goes. An admin (English) finds the technician's name in the
// notice, follows it, types two different PINs, then sets one. Every step
// is axe-core clean and fits a phone; no PIN is written into a page, the
// audit trail or the server's log (at debug level).
func TestKioskPINForms(t *testing.T) {
	t.Parallel() // its own backend and database
	logs := &servertest.SyncBuffer{}
	e := newEnv(t, server.Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx := context.Background()
	staffID, techID := e.ids[auth.RoleStaff], e.ids[auth.RoleTechnician]
	_, err := e.pool().Exec(ctx, `UPDATE auth_users SET kiosk_pin_digest = '\x01', kiosk_pin_digits = 6 WHERE id = $1`, staffID)
	require.NoError(t, err)
	_, err = e.pool().Exec(ctx, `UPDATE auth_users SET kiosk_pin_digest = '\x02', kiosk_pin_digits = 7 WHERE id = $1`, techID)
	require.NoError(t, err)

	b := browsertest.New(t, browsertest.Options{})
	tab := b.NewTab(t, 360, 740)
	base := e.b.URL("")
	pageHTML := func() string { return evalString(t, tab, `document.documentElement.outerHTML`) }
	f := formTab{t: t, tab: tab}
	check, submit, describedErr, emptyFields := f.check, f.submit, f.describedErr, f.emptyFields
	typeInto := func(css, text string) {
		t.Helper()
		tab.Do(t, chromedp.Click(chromedp.CSS(css)), chromedp.KeyEvent(text))
	}

	// The holder, in Dutch, at phone width.
	login(t, tab, base, e.users[auth.RoleStaff], password(auth.RoleStaff))
	tab.Do(t, chromedp.Navigate(base+"/staff/documents?lang=nl"))
	tab.WaitFor(t, `!!document.querySelector(".pin-notice a")`, 10*time.Second)
	assert.Equal(t, "/staff/account/kiosk-pin", evalString(t, tab, `document.querySelector(".pin-notice a").getAttribute("href")`))
	tab.Do(t, chromedp.Click(chromedp.CSS(".pin-notice a")))
	tab.WaitFor(t, `location.pathname === "/staff/account/kiosk-pin" && !!document.querySelector("#kiosk_pin")`, 10*time.Second)
	assert.Equal(t, "Uw personeelspincode", tab.Text(t, "h1"))
	for _, id := range []string{"current_password", "kiosk_pin", "kiosk_pin_again"} {
		attrs := evalString(t, tab, `(function(){var f=document.getElementById("`+id+`");
			return [f.type, f.autocomplete, f.inputMode, document.querySelector("label[for=`+id+`]")?"label":"no label"].join(" ")})()`)
		want := "password new-password numeric label"
		if id == "current_password" {
			want = "password current-password  label"
		}
		assert.Equal(t, want, attrs, id)
	}
	check("kiosk PIN form nl")
	typeInto("#current_password", password(auth.RoleStaff))
	typeInto("#kiosk_pin", "4829163")
	typeInto("#kiosk_pin_again", "4829163")
	submit()
	assert.Equal(t, "Een personeelspincode heeft 8 tot 12 cijfers, en niets anders.", describedErr("kiosk_pin"))
	assert.Contains(t, evalString(t, tab, `document.getElementById("kiosk_pin").getAttribute("aria-describedby")`), "h-kiosk_pin", "the hint stays described")
	emptyFields("refused PIN")
	assert.NotContains(t, pageHTML(), "4829163")
	check("kiosk PIN form refused nl")
	tab.Screenshot(t, "console/nl/kiosk-pin-refused-phone")

	typeInto("#current_password", "not my password")
	typeInto("#kiosk_pin", "48291637")
	typeInto("#kiosk_pin_again", "48291637")
	submit()
	assert.Equal(t, "Dat is niet uw huidige wachtwoord (foute poging 1 van 3; na 3 wordt u afgemeld).", describedErr("current_password"))
	emptyFields("wrong password")
	assert.NotContains(t, pageHTML(), "48291637")

	typeInto("#current_password", password(auth.RoleStaff))
	typeInto("#kiosk_pin", "48291637")
	typeInto("#kiosk_pin_again", "48291637")
	submit()
	tab.WaitText(t, "main .notice", "De nieuwe personeelspincode is ingesteld.", 10*time.Second)
	assert.Equal(t, 0, evalInt(t, tab, `document.querySelectorAll(".pin-notice").length`), "the PIN is not short any more")
	assert.NotContains(t, pageHTML(), "48291637")
	check("kiosk PIN set nl")
	tab.Screenshot(t, "console/nl/kiosk-pin-set-phone")

	// An admin, in English, at phone width.
	tab.Do(t, chromedp.Click(chromedp.CSS(".who form button")))
	tab.WaitFor(t, `location.pathname === "/staff/login"`, 10*time.Second)
	login(t, tab, base, e.users[auth.RoleAdmin], password(auth.RoleAdmin))
	tab.Do(t, chromedp.Navigate(base+"/staff/devices?lang=en"))
	tab.WaitFor(t, `!!document.querySelector(".pin-holders a")`, 10*time.Second)
	assert.Contains(t, tab.Text(t, ".pin-notice"), "Users whose staff PIN has fewer than 8 digits: 1.")
	assert.Equal(t, e.users[auth.RoleTechnician], tab.Text(t, ".pin-holders a"), "the holder is named")
	assert.NotContains(t, tab.Text(t, ".pin-notice"), e.users[auth.RoleStaff], "whose PIN is long now")
	check("short PIN holders en")
	tab.Screenshot(t, "console/en/pin-holders-phone")
	tab.Do(t, chromedp.Click(chromedp.CSS(".pin-holders a")))
	want := fmt.Sprintf("/staff/users/%d/kiosk-pin", techID)
	tab.WaitFor(t, `location.pathname === "`+want+`" && !!document.querySelector("#kiosk_pin")`, 10*time.Second)
	assert.Equal(t, "Staff PIN of "+e.users[auth.RoleTechnician], tab.Text(t, "h1"))
	assert.Equal(t, 0, evalInt(t, tab, `document.querySelectorAll("#current_password").length`), "an admin sets another's without a password")
	typeInto("#kiosk_pin", "51739264")
	typeInto("#kiosk_pin_again", "51739246")
	submit()
	assert.Equal(t, "The two PINs differ. Type the same one twice.", describedErr("kiosk_pin_again"))
	emptyFields("mismatch")
	check("kiosk PIN mismatch en")
	tab.Screenshot(t, "console/en/kiosk-pin-mismatch-phone")
	typeInto("#kiosk_pin", "48291637")
	typeInto("#kiosk_pin_again", "48291637")
	submit()
	assert.Equal(t, "This PIN is already in use. Choose another.", describedErr("kiosk_pin"), "the staff member's")
	typeInto("#kiosk_pin", "51739264")
	typeInto("#kiosk_pin_again", "51739264")
	submit()
	tab.WaitText(t, "main .notice", "The new staff PIN is set.", 10*time.Second)
	assert.Equal(t, 0, evalInt(t, tab, `document.querySelectorAll(".pin-notice").length`), "nobody has a short PIN now")
	check("kiosk PIN set en")

	var u struct {
		KioskPINShort bool `json:"kiosk_pin_short"`
	}
	for _, id := range []int64{staffID, techID} {
		require.NoError(t, e.b.Call(ctx, http.MethodGet, fmt.Sprintf("/api/v1/users/%d", id), nil, &u))
		assert.False(t, u.KioskPINShort)
	}
	trail := e.audit(fmt.Sprintf("user:%d", staffID)) + e.audit(fmt.Sprintf("user:%d", techID))
	assert.Contains(t, trail, `"own":true`)
	assert.Contains(t, trail, `"via":"console"`)
	assert.Contains(t, trail, `"kiosk_pin":"changed"`)
	for _, pin := range []string{"4829163", "48291637", "51739264", "51739246"} {
		assert.NotContains(t, trail, pin, "no PIN in the audit trail")
		assert.NotContains(t, logs.String(), pin, "no PIN in the log")
	}
}

// The forms without a browser: each role's own form; another user's only
// for admins (the API's PATCH /api/v1/users/{id}); a post without the
// session's CSRF token refused; and the rule is the API's, worded per
// language.
func TestKioskPINFormRules(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	for _, r := range auth.Roles() {
		c := e.client()
		c.login(r)
		p := c.get("/staff/account/kiosk-pin?lang=en")
		assert.Equal(t, 200, p.status, "%s: own form", r)
		assert.Contains(t, p.body, `href="/staff/account/kiosk-pin"`, "%s: the header links to it", r)
		p = c.get(fmt.Sprintf("/staff/users/%d/kiosk-pin", e.ids[auth.RoleStaff]))
		if r == auth.RoleAdmin {
			assert.Equal(t, 200, p.status)
		} else {
			assert.Equal(t, 403, p.status, "%s: another user's form", r)
			p = c.post(fmt.Sprintf("/staff/users/%d/kiosk-pin", e.ids[auth.RoleStaff]), url.Values{"kiosk_pin": {"48291637"}, "kiosk_pin_again": {"48291637"}})
			assert.Equal(t, 403, p.status, "%s: another user's post", r)
		}
	}
	admin := e.client()
	admin.login(auth.RoleAdmin)
	assert.Equal(t, 404, admin.get("/staff/users/999999/kiosk-pin").status)
	form := url.Values{"kiosk_pin": {"48291637"}, "kiosk_pin_again": {"48291637"}, "csrf": {"not-the-token"}}
	p := admin.post(fmt.Sprintf("/staff/users/%d/kiosk-pin", e.ids[auth.RoleStaff]), form)
	assert.Equal(t, 403, p.status, "no CSRF token, no change")
	for lang, want := range map[string]string{
		"nl": "Een personeelspincode heeft 8 tot 12 cijfers, en niets anders.",
		"fr": "Un code PIN du personnel compte de 8 à 12 chiffres, rien d&#39;autre.",
		"en": "A staff PIN has 8 to 12 digits and nothing else.",
		"de": "Eine Personal-PIN hat 8 bis 12 Ziffern und sonst nichts.",
	} {
		admin.get("/staff/devices?lang=" + lang)
		for _, pin := range []string{"1234567", "1234567890123", "1234 5678", "abcdefgh"} {
			p = admin.post(fmt.Sprintf("/staff/users/%d/kiosk-pin", e.ids[auth.RoleStaff]), url.Values{"kiosk_pin": {pin}, "kiosk_pin_again": {pin}})
			assert.Equal(t, 400, p.status, "%s %q", lang, pin)
			assert.Contains(t, p.body, want, "%s %q", lang, pin)
			assert.NotContains(t, p.body, `value="`+pin, "not echoed")
			assert.False(t, strings.Contains(p.body, pin), "%s %q: not in the page", lang, pin)
		}
	}
	p = admin.post(fmt.Sprintf("/staff/users/%d/kiosk-pin", e.ids[auth.RoleStaff]), url.Values{"kiosk_pin": {"482916370123"}, "kiosk_pin_again": {"482916370123"}})
	assert.Equal(t, http.StatusSeeOther, p.status, "12 digits: %s", p.body)
	assert.Equal(t, "notice.kiosk_pin_set", p.notice())
}

// formTab drives a console form in Chromium (the staff PIN and password
// forms' browser tests).
type formTab struct {
	t   *testing.T
	tab *browsertest.Tab
}

// check runs axe-core on the page and checks it fits the tab's width.
func (f formTab) check(name string) {
	f.t.Helper()
	f.tab.CheckAxe(f.t, name)
	noSideScroll(f.t, f.tab, name)
}

// submit clicks the form's submit button and waits for the next page.
func (f formTab) submit() {
	f.t.Helper()
	before := evalString(f.t, f.tab, `String(performance.timeOrigin)`)
	f.tab.Do(f.t, chromedp.Click(chromedp.CSS("main form button[type=submit]")))
	f.tab.WaitFor(f.t, `String(performance.timeOrigin) !== `+fmt.Sprintf("%q", before)+` && document.readyState === "complete"`, 10*time.Second)
}

// describedErr is the error text field is described by ("not invalid"
// when it is not marked invalid).
func (f formTab) describedErr(field string) string {
	f.t.Helper()
	return evalString(f.t, f.tab, `(function(){var f=document.getElementById(`+fmt.Sprintf("%q", field)+`);
			if(f.getAttribute("aria-invalid")!=="true")return "not invalid";
			var ids=(f.getAttribute("aria-describedby")||"").split(" ");
			for(var i=0;i<ids.length;i++){var e=document.getElementById(ids[i]);if(e&&e.classList.contains("field-error"))return e.innerText}
			return "no error described"})()`)
}

// emptyFields checks that no secret was written back into the form.
func (f formTab) emptyFields(name string) {
	f.t.Helper()
	assert.Equal(f.t, "", evalString(f.t, f.tab, `Array.from(document.querySelectorAll("main input[type=password]")).map(function(i){return i.value}).join("")`),
		"%s: the secrets are not written back into the form", name)
}
