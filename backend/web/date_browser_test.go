package web_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/deploy/dev/browsertest"
)

// The date of birth typed with real key presses into its three fields
// (day, month, year, in that order in every language) in an English
// browser (browsertest starts Chromium with --lang=en-US) on French and
// German pages: Tab goes day, month, year; an impossible date (31-02)
// comes back with the page's language's message, what was typed kept,
// only the day marked, axe-core clean; the summary's link leads to the
// day; corrected, the document registers with that date of birth.
func TestBirthDateTypedInBrowser(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	b := browsertest.New(t, browsertest.Options{})
	desktop := b.NewTab(t, 1280, 800)
	phone := b.NewTab(t, 360, 740)
	base := e.b.URL("")
	login(t, desktop, base, e.users[auth.RoleStaff], password(auth.RoleStaff)) // the tabs share the session
	n := 0
	active := `document.activeElement ? document.activeElement.id : ""`

	for _, c := range []struct {
		lang, notReal, legend string
	}{
		{"fr", "Cette date n'existe pas\u00a0: vérifiez le jour et le mois.", "Date de naissance"},
		{"de", "Dieses Datum gibt es nicht: Prüfen Sie Tag und Monat.", "Geburtsdatum"},
	} {
		for _, v := range []struct {
			tab  *browsertest.Tab
			size string
		}{{desktop, "desktop"}, {phone, "phone"}} {
			what := c.lang + " " + v.size
			tab := v.tab
			tab.Do(t, chromedp.Navigate(base+"/staff/documents/new?lang="+c.lang))
			tab.WaitFor(t, `document.activeElement && document.activeElement.id === "f-number"`, 10*time.Second)
			require.Equal(t, c.lang, evalString(t, tab, `document.documentElement.lang`))
			assert.Equal(t, c.legend, tab.Text(t, "fieldset.date legend"), what)
			assert.Equal(t, "numeric numeric numeric", evalString(t, tab,
				`Array.from(document.querySelectorAll("fieldset.date input")).map(function(i){ return i.inputMode; }).join(" ")`), what)
			assert.Zero(t, evalInt(t, tab, `document.querySelectorAll('input[type="date"]').length`), what)
			n++
			tab.Do(t, chromedp.KeyEvent(fmt.Sprintf("591-10000%02d-11\r", n)))
			tab.WaitFor(t, `document.activeElement.id === "f-holder_first_name"`, 5*time.Second)
			tab.Do(t, chromedp.KeyEvent("Lotte\tClaes\t"))
			require.Equal(t, "f-holder_birth_date", evalString(t, tab, active), "%s: Tab from the last name goes to the day", what)
			tab.Do(t, chromedp.KeyEvent("31\t"))
			require.Equal(t, "f-holder_birth_date-month", evalString(t, tab, active), "%s: then the month", what)
			tab.Do(t, chromedp.KeyEvent("2\t"))
			require.Equal(t, "f-holder_birth_date-year", evalString(t, tab, active), "%s: then the year", what)
			tab.Do(t, chromedp.KeyEvent("1988"))
			tab.Do(t, chromedp.Click(chromedp.CSS("#c-none")), chromedp.Click(chromedp.CSS(`form button[type=submit].primary`)))
			tab.WaitFor(t, `!!document.querySelector(".error-summary")`, 10*time.Second)

			assert.Equal(t, c.notReal, tab.Text(t, "#e-holder_birth_date"), what)
			assert.Equal(t, c.notReal, tab.Text(t, `.error-summary a[href="#f-holder_birth_date"]`), what)
			assert.Equal(t, "31 2 1988", evalString(t, tab, `["f-holder_birth_date", "f-holder_birth_date-month", "f-holder_birth_date-year"]`+
				`.map(function(id){ return document.getElementById(id).value; }).join(" ")`), "%s: what was typed stays", what)
			assert.Equal(t, "f-holder_birth_date", evalString(t, tab,
				`Array.from(document.querySelectorAll('[aria-invalid="true"]')).map(function(i){ return i.id; }).join(" ")`), "%s: only the day is marked", what)
			assert.Equal(t, "Lotte Claes", evalString(t, tab,
				`document.getElementById("f-holder_first_name").value + " " + document.getElementById("f-holder_last_name").value`), what)
			tab.CheckAxe(t, what+" register birth date error")
			noSideScroll(t, tab, what+" register birth date error")
			tab.Screenshot(t, "console/"+c.lang+"/register-birth-date-error-"+v.size)

			// The summary's link leads to the day; corrected there, the document registers.
			tab.Do(t, chromedp.Click(chromedp.CSS(`.error-summary a[href="#f-holder_birth_date"]`)))
			tab.WaitFor(t, `document.activeElement.id === "f-holder_birth_date"`, 5*time.Second)
			// The caret is at the start of the field: End, two backspaces, 28.
			tab.Do(t, chromedp.KeyEvent(kb.End+"\b\b28"))
			require.Equal(t, "28", evalString(t, tab, `document.getElementById("f-holder_birth_date").value`), what)
			tab.Do(t, chromedp.Click(chromedp.CSS(`form button[type=submit].primary`)))
			tab.WaitFor(t, `location.pathname.startsWith("/staff/documents/") && !!document.querySelector(".notice")`, 10*time.Second)
			id := evalString(t, tab, `location.pathname.split("/").pop()`)
			assert.Equal(t, "1988-02-28T00:00:00Z", e.document(id)["holder_birth_date"], what)
		}
	}
}
