package web_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/web"
	"kluis/controller/wire"
	"kluis/deploy/dev/browsertest"
)

// What the walk-through of 2026-12-07 left (docs/api.md), in every
// language, with real clicks and keys on a 768 px tablet and a 390 px
// phone, axe-core on each page: the register form chooses no way of
// reaching the holder in advance and, sent without one, asks for one (not
// for an e-mail address); the notice after a form is shown once, not
// again on a reload, and the address holds none; "release the
// compartment" says under its own button that the document stays
// registered without a compartment, and so does its notice; the new-codes
// warning sits under the new-codes button, set apart from printing; an
// expired document's instruction names the device, compartment and site;
// the search results and the documents page's tables fit the tablet and
// the phone without scrolling sideways.
func TestCounterWalkThroughInBrowser(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newConsoleEnv(t)
	_, slipDoc, expired := e.consoleDocuments(t, 4)
	b := browsertest.New(t, browsertest.Options{})
	tablet := b.NewTab(t, 768, 1024)
	phone := b.NewTab(t, 390, 844)
	base := e.b.URL("")
	login(t, tablet, base, e.users[auth.RoleStaff], password(auth.RoleStaff)) // the phone tab shares the cookies
	for i, lang := range web.Languages {
		// Registering: nothing chosen for the contact; sent so, the form
		// asks for the choice, not for an e-mail address.
		tablet.Do(t, chromedp.Navigate(base+"/staff/documents/new?lang="+lang))
		tablet.WaitFor(t, `document.activeElement && document.activeElement.id === "f-number"`, 20*time.Second)
		assert.Equal(t, 0, evalInt(t, tablet, `document.querySelectorAll('input[name="contact"]:checked').length`), lang)
		assert.Equal(t, 3, evalInt(t, tablet, `document.querySelectorAll('input[name="contact"][required]').length`), lang)
		assert.Equal(t, web.Text(lang, "register.contact_hint"), tablet.Text(t, "#h-contact"))
		number := fmt.Sprintf("591-77700%d0-%d5", i, i)
		tablet.Do(t, chromedp.KeyEvent(number+"\tNora\tJanssens\t3\t9\t1979"),
			chromedp.Click(chromedp.CSS(`form button[type=submit].primary`)))
		tablet.WaitFor(t, `!!document.querySelector(".error-summary")`, 20*time.Second)
		assert.Equal(t, web.Text(lang, "register.invalid.contact"), tablet.Text(t, ".error-summary li"), lang)
		assert.Equal(t, 1, evalInt(t, tablet, `document.querySelectorAll(".error-summary li").length`), lang)
		assert.Equal(t, "", evalString(t, tablet, `document.getElementById("f-email").getAttribute("aria-invalid") || ""`), lang)
		tablet.CheckAxe(t, "register without a contact "+lang)
		tablet.Screenshot(t, "counterux/register-no-contact-"+lang)
		// The locker chosen by name: the automatic choice passes over it
		// while it holds consoleDocuments' forced-door alarm.
		tablet.Do(t, chromedp.Click(chromedp.CSS("#c-none")), chromedp.SetValue(chromedp.CSS("#f-device_id"), lockerID),
			chromedp.Click(chromedp.CSS(`form button[type=submit].primary`)))
		// Asked first, naming the device and its alarm; ticked, sent.
		tablet.WaitFor(t, `document.activeElement && document.activeElement.id === "f-confirm_unfit"`, 20*time.Second)
		assert.Equal(t, web.Text(lang, "reserve.unfit_confirm", "device", "Kluis inkomhal", "problems", web.Text(lang, "alarm.forced_door")),
			tablet.Text(t, "#unfit-confirm p"), lang)
		tablet.CheckAxe(t, "register at an unfit device "+lang)
		tablet.Screenshot(t, "counterux/register-unfit-confirm-"+lang)
		tablet.Do(t, chromedp.Click(chromedp.CSS("#f-confirm_unfit")), chromedp.Click(chromedp.CSS(`form button[type=submit].primary`)))
		tablet.WaitFor(t, `location.pathname.startsWith("/staff/documents/") && !!document.querySelector(".notice")`, 20*time.Second)
		id := strings.TrimPrefix(evalString(t, tablet, `location.pathname`), "/staff/documents/")
		assert.Equal(t, "", evalString(t, tablet, `location.search`), "%s: the address holds no notice", lang)
		assert.Contains(t, tablet.Text(t, ".notice"), "(Stadhuis Kortrijk)", lang)
		assert.Equal(t, "reserved", e.document(id)["state"])

		// Reloaded: the notice is gone.
		tablet.Do(t, chromedp.Reload())
		tablet.WaitFor(t, `document.readyState === "complete" && !!document.querySelector("#a-unreserve")`, 20*time.Second)
		assert.Equal(t, 0, evalInt(t, tablet, `document.querySelectorAll(".notice").length`), "%s: not again on a reload", lang)

		// Releasing the compartment says what becomes of the document,
		// under its own button.
		assert.Equal(t, web.Text(lang, "document.unreserve"), tablet.Text(t, "#a-unreserve button"))
		assert.Equal(t, web.Text(lang, "document.unreserve_hint"), tablet.Text(t, "#h-unreserve"))
		assert.Equal(t, "h-unreserve", evalString(t, tablet, `document.querySelector("#a-unreserve button").getAttribute("aria-describedby")`))
		assert.Equal(t, 1, evalInt(t, tablet, `(() => { const b = document.querySelector("#a-unreserve button").getBoundingClientRect(),
			h = document.getElementById("h-unreserve").getBoundingClientRect(), c = document.getElementById("a-cancel").getBoundingClientRect();
			return b.bottom <= h.top && h.bottom <= c.top ? 1 : 0 })()`), "%s: the hint under its button, before the next action", lang)
		tablet.CheckAxe(t, "document reserved "+lang)
		tablet.Screenshot(t, "counterux/document-reserved-"+lang)
		tablet.Do(t, chromedp.Click(chromedp.CSS("#a-unreserve button")))
		tablet.WaitFor(t, `!!document.querySelector(".notice") && !document.querySelector("#a-unreserve")`, 20*time.Second)
		assert.Equal(t, web.Text(lang, "notice.unreserved"), tablet.Text(t, ".notice"))
		assert.Equal(t, "registered", e.document(id)["state"], lang)
		tablet.Do(t, chromedp.Reload())
		tablet.WaitFor(t, `document.readyState === "complete" && !!document.querySelector("#a-cancel")`, 20*time.Second)
		assert.Equal(t, 0, evalInt(t, tablet, `document.querySelectorAll(".notice").length`), "%s: not again on a reload", lang)

		// New codes: the warning under the new-codes button, the slip's
		// button above, apart.
		tablet.Do(t, chromedp.Navigate(base+"/staff/documents/"+slipDoc+"?lang="+lang))
		tablet.WaitFor(t, `!!document.querySelector("#a-reissue button")`, 20*time.Second)
		assert.Equal(t, 1, evalInt(t, tablet, `(() => { const s = document.querySelector('a.button[href$="/slip"]').getBoundingClientRect(),
			f = document.getElementById("a-reissue").getBoundingClientRect(), b = document.querySelector("#a-reissue button").getBoundingClientRect(),
			h = document.getElementById("h-reissue").getBoundingClientRect();
			return s.bottom <= f.top && b.bottom <= h.top && h.bottom <= f.bottom ? 1 : 0 })()`), "%s: the warning belongs to the new codes", lang)
		assert.Equal(t, "1px", evalString(t, tablet, `getComputedStyle(document.getElementById("a-reissue")).borderTopWidth`), "%s: a line sets it apart", lang)
		tablet.CheckAxe(t, "document ready "+lang)
		tablet.Screenshot(t, "counterux/document-ready-"+lang)

		// Expired: where to fetch it.
		tablet.Do(t, chromedp.Navigate(base+"/staff/documents/"+expired+"?lang="+lang))
		tablet.WaitFor(t, `!!document.querySelector("#expired-hint")`, 20*time.Second)
		where := web.Text(lang, "document.in", "device", "Kluis inkomhal", "n", e.compartmentOf(expired))
		require.Contains(t, where, "Kluis inkomhal")
		assert.Equal(t, web.Text(lang, "document.expired_hint_at", "where", where, "site", "Stadhuis Kortrijk"), tablet.Text(t, "#expired-hint"))
		tablet.Screenshot(t, "counterux/document-expired-"+lang)

		// The search results and the lists fit the tablet and the phone.
		for _, v := range []struct {
			tab  *browsertest.Tab
			size string
		}{{tablet, "tablet"}, {phone, "phone"}} {
			for _, path := range []string{"/staff/documents?q=janssens&lang=" + lang, "/staff/documents?lang=" + lang} {
				v.tab.Do(t, chromedp.Navigate(base+path))
				v.tab.WaitFor(t, `document.readyState === "complete" && !!document.querySelector("#h-expired")`, 20*time.Second)
				name := path + " " + v.size
				noSideScroll(t, v.tab, name)
				assert.Equal(t, "", evalString(t, v.tab, `Array.from(document.querySelectorAll(".table-wrap")).filter(w => w.scrollWidth > w.clientWidth).
					map(w => w.getAttribute("aria-label") + " " + w.scrollWidth + ">" + w.clientWidth).join("; ")`), "%s: a table scrolls sideways", name)
				v.tab.CheckAxe(t, name)
			}
			v.tab.Screenshot(t, "counterux/documents-"+v.size+"-"+lang)
		}
		tablet.Do(t, chromedp.Navigate(base+"/staff/documents?q=janssens&lang="+lang))
		tablet.WaitFor(t, `!!document.querySelector("#h-results")`, 20*time.Second)
		assert.Contains(t, tablet.Text(t, "#h-results + .table-wrap"), number, lang)
		tablet.Screenshot(t, "counterux/search-tablet-"+lang)
	}
}

// A document registered when no device could take it (here: the locker
// offline, the automaton never connected) is registered without a
// compartment. On a 768 px tablet, in Dutch and in French: the notice
// after the form reads as a warning (orange, not the green of a success),
// and the documents page lists the document under "No compartment yet"
// with a link to it, so that it is not forgotten until someone searches
// for it; reserved once the locker is back, it leaves the list.
func TestRegisteredWithoutCompartmentStaysInSightInBrowser(t *testing.T) {
	t.Parallel() // its own backend and database
	e, tab, base := staffOnTablet(t)
	for i, lang := range []string{"nl", "fr"} {
		e.goOffline()
		tab.Do(t, chromedp.Navigate(base+"/staff/documents/new?lang="+lang))
		tab.WaitFor(t, `document.activeElement && document.activeElement.id === "f-number"`, 20*time.Second)
		number := fmt.Sprintf("591-4440%d00-1%d", i, i)
		// Typed, the contact chosen with the arrow keys.
		tab.Do(t, chromedp.KeyEvent(number+"\rLies\tDe Smet\t2\t5\t1966\t\t"+kb.ArrowDown+kb.ArrowDown),
			chromedp.Click(chromedp.CSS(`form button[type=submit].primary`)))
		// Complete: the stylesheet applied.
		tab.WaitFor(t, `location.pathname.startsWith("/staff/documents/") && !!document.querySelector(".notice") && document.readyState === "complete"`, 20*time.Second)
		id := strings.TrimPrefix(evalString(t, tab, `location.pathname`), "/staff/documents/")
		require.Equal(t, "registered", e.document(id)["state"], lang)
		assert.Equal(t, web.Text(lang, "notice.no_online_device"), tab.Text(t, ".notice"), lang)
		assert.Equal(t, "rgb(138, 75, 0)", evalString(t, tab, `getComputedStyle(document.querySelector(".notice")).borderLeftColor`),
			"%s: a registration without a compartment is not drawn as a success", lang)
		tab.CheckAxe(t, "registered without a compartment "+lang)
		tab.Screenshot(t, "counterux/registered-no-compartment-"+lang)

		// Later: the documents page lists it, linked.
		tab.Do(t, chromedp.Click(chromedp.CSS(`nav.main-nav a[href="/staff/documents"]`)))
		tab.WaitFor(t, `location.pathname === "/staff/documents" && !!document.querySelector("#h-unplaced")`, 20*time.Second)
		assert.Equal(t, web.Text(lang, "documents.unplaced"), tab.Text(t, "#h-unplaced"), lang)
		assert.Equal(t, 1, evalInt(t, tab, `document.querySelectorAll('section[aria-labelledby="h-unplaced"] tbody tr').length`), lang)
		assert.Contains(t, tab.Text(t, `section[aria-labelledby="h-unplaced"] tbody`), number, lang)
		assert.Contains(t, tab.Text(t, `section[aria-labelledby="h-unplaced"] tbody`), web.Text(lang, "document.nowhere"), lang)
		noSideScroll(t, tab, "documents with one unplaced "+lang)
		tab.CheckAxe(t, "documents with one unplaced "+lang)
		tab.Screenshot(t, "counterux/documents-unplaced-"+lang)
		tab.Do(t, chromedp.Click(chromedp.CSS(`section[aria-labelledby="h-unplaced"] tbody a`)))
		tab.WaitFor(t, `location.pathname === "/staff/documents/`+id+`" && !!document.querySelector("#a-device")`, 20*time.Second)

		// The locker is back: reserved, it leaves the list.
		e.dev.publish(wire.KindPresence, &wire.Presence{V: 1, State: wire.Online, Software: "kluisd 1.4.2"})
		e.dev.heartbeat(nil)
		e.waitPresence(wire.Online)
		tab.Do(t, chromedp.Click(chromedp.CSS(`form[action$="/reserve"] button.primary`)))
		tab.WaitFor(t, `!!document.querySelector(".notice") && !!document.querySelector("#a-unreserve")`, 20*time.Second)
		assert.Equal(t, "reserved", e.document(id)["state"], lang)
		assert.Equal(t, "", evalString(t, tab, `document.querySelector(".notice").className.replace("notice", "").trim()`), "%s: a success is a success", lang)
		tab.Do(t, chromedp.Navigate(base+"/staff/documents?lang="+lang))
		tab.WaitFor(t, `document.readyState === "complete" && !!document.querySelector("#h-reserved")`, 20*time.Second)
		assert.Zero(t, evalInt(t, tab, `document.querySelectorAll("#h-unplaced").length`), "%s: nothing waits for a compartment", lang)
		assert.Contains(t, tab.Text(t, `section[aria-labelledby="h-reserved"]`), number, lang)
	}
}

// A card scanned twice in a batch (the second time with spaces instead of
// dashes): the form says the number is already being handled, keeps what
// was typed, and its error summary links to the document already
// registered; with the keyboard only (Tab, Tab, Enter from the summary,
// which has the focus) its page opens. In Dutch and in French, on a
// tablet.
func TestDuplicateNumberLeadsToTheDocumentInBrowser(t *testing.T) {
	t.Parallel() // its own backend and database
	_, tab, base := staffOnTablet(t)
	for i, lang := range []string{"nl", "fr"} {
		first := ""
		for try, number := range []string{fmt.Sprintf("591-5550%d00-2%d", i, i), fmt.Sprintf("591 5550%d00 2%d", i, i)} {
			tab.Do(t, chromedp.Navigate(base+"/staff/documents/new?lang="+lang))
			tab.WaitFor(t, `document.activeElement && document.activeElement.id === "f-number"`, 20*time.Second)
			tab.Do(t, chromedp.KeyEvent(number+"\rBram\tWouters\t9\t9\t1999\t\t"+kb.ArrowDown+kb.ArrowDown),
				chromedp.Click(chromedp.CSS(`form button[type=submit].primary`)))
			if try == 0 {
				tab.WaitFor(t, `location.pathname.startsWith("/staff/documents/") && !!document.querySelector(".notice")`, 20*time.Second)
				first = strings.TrimPrefix(evalString(t, tab, `location.pathname`), "/staff/documents/")
				continue
			}
			tab.WaitFor(t, `!!document.querySelector(".error-summary") && document.activeElement.id === "errors"`, 20*time.Second)
			assert.Equal(t, web.Text(lang, "register.duplicate"), tab.Text(t, "#e-number"), lang)
			assert.Equal(t, "Wouters", evalString(t, tab, `document.getElementById("f-holder_last_name").value`), "%s: what was typed stays", lang)
			assert.Equal(t, web.Text(lang, "register.duplicate_open"), tab.Text(t, "#duplicate-link"), lang)
			tab.CheckAxe(t, "register a duplicate "+lang)
			tab.Screenshot(t, "counterux/register-duplicate-"+lang)
			tab.Do(t, chromedp.KeyEvent("\t\t"))
			require.Equal(t, "duplicate-link", evalString(t, tab, `document.activeElement.id`), lang)
			tab.Do(t, chromedp.KeyEvent("\r"))
			tab.WaitFor(t, `location.pathname === "/staff/documents/`+first+`"`, 20*time.Second)
			assert.Contains(t, tab.Text(t, "h1"), fmt.Sprintf("591-5550%d00-2%d", i, i), lang)
		}
	}
}

// When documents of several kinds share the number typed, the duplicate's
// link is the search for that number (it cannot say which one is meant);
// a number no other kind shares links to its document.
func TestDuplicateNumberOfSeveralKindsLinksTheSearch(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	eid := e.registerOnly("EP7654321", false)
	staff := e.client()
	staff.login(auth.RoleStaff)
	form := url.Values{"kind": {"eid"}, "number": {"ep 7654321"}, "holder_first_name": {"Jan"}, "holder_last_name": {"Peeters"},
		"holder_birth_date_day": {"12"}, "holder_birth_date_month": {"4"}, "holder_birth_date_year": {"1980"}, "language": {"nl"},
		"contact": {"none"}, "site_id": {siteID}}
	p := staff.post("/staff/documents", form)
	require.Equal(t, http.StatusConflict, p.status, snippet(p.body))
	assert.True(t, strings.Contains(p.body, `href="/staff/documents/`+eid+`" id="duplicate-link"`), "the link to the eid: %s", snippet(p.body))
	// A passport with the same number, then the eid again: two kinds share it.
	pass := form
	pass.Set("kind", "passport")
	p = staff.post("/staff/documents", pass)
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	form.Set("kind", "eid")
	p = staff.post("/staff/documents", form)
	require.Equal(t, http.StatusConflict, p.status, snippet(p.body))
	assert.True(t, strings.Contains(p.body, `href="/staff/documents?q=ep&#43;7654321" id="duplicate-link"`), "the link to the search: %s", snippet(p.body))
}

// A document handed over at the counter, or taken back there, is no
// longer in its compartment: its page no longer names the compartment as
// where it is (no link to it beside the state, "no longer in a
// compartment (was: ...)" in the details), nor do the search results, so
// that nobody sends a citizen to an empty compartment. With real clicks
// and Enter on the confirmation, on a tablet, in Dutch and in French.
func TestDocumentThatLeftItsCompartmentSaysSoInBrowser(t *testing.T) {
	t.Parallel() // its own backend and database
	e, tab, base := staffOnTablet(t)
	for i, lang := range []string{"nl", "fr"} {
		for j, action := range []string{"collect", "retrieve"} {
			number := fmt.Sprintf("591-6660%d0%d-30", i, j)
			id := e.register(number, false)
			require.NoError(t, e.b.Call(t.Context(), "POST", "/api/v1/documents/"+id+"/load", nil, nil))
			where := web.Text(lang, "document.in", "device", "Kluis inkomhal", "n", e.compartmentOf(id))
			tab.Do(t, chromedp.Navigate(base+"/staff/documents/"+id+"?lang="+lang))
			tab.WaitFor(t, `!!document.querySelector('#a-counter form[action$="/`+action+`"] button')`, 20*time.Second)
			assert.Equal(t, where, tab.Text(t, "#d-where"), "%s: in its compartment", lang)
			assert.Equal(t, 1, evalInt(t, tab, `document.querySelectorAll('.state-line a[href^="/staff/devices/"]').length`), lang)
			tab.Do(t, chromedp.Click(chromedp.CSS(`#a-counter form[action$="/`+action+`"] button`)))
			tab.WaitFor(t, `!!document.activeElement.closest("#counter-confirm button")`, 20*time.Second)
			tab.Do(t, chromedp.KeyEvent("\r"))
			tab.WaitFor(t, `!!document.querySelector(".notice") && !document.querySelector("#counter-confirm")`, 20*time.Second)
			state := map[string]string{"collect": "collected", "retrieve": "retrieved"}[action]
			require.Equal(t, state, e.document(id)["state"], lang)
			was := web.Text(lang, "document.was_in", "where", where)
			assert.Equal(t, was, tab.Text(t, "#d-where"), "%s %s: no longer there", lang, action)
			assert.Zero(t, evalInt(t, tab, `document.querySelectorAll('.state-line a[href^="/staff/devices/"]').length`),
				"%s %s: the state names no compartment", lang, action)
			tab.CheckAxe(t, "document "+state+" "+lang)
			tab.Screenshot(t, "counterux/document-"+state+"-"+lang)
			tab.Do(t, chromedp.Navigate(base+"/staff/documents?lang="+lang+"&q="+url.QueryEscape(number)))
			tab.WaitFor(t, `!!document.querySelector("#h-results")`, 20*time.Second)
			assert.Contains(t, tab.Text(t, `section[aria-labelledby="h-results"] tbody`), was, "%s %s: nor in the results", lang, action)
			noSideScroll(t, tab, "search "+state+" "+lang)
		}
	}
	tab.Screenshot(t, "counterux/search-retrieved-fr")
}

// "Yesterday's documents": the documents page links to the documents
// registered today, yesterday and on each day of the week before; with
// the keyboard (from the search field: Tab to the search button, to
// today, to yesterday, Enter) the results list yesterday's batch and only
// it, the link marked as the current one; a day that is not a date is
// refused (400). In Dutch and in French, on a tablet.
//
// The server's clock stands still at the last moment of a day in
// Brussels, and the batch's day and the expected texts are read from it:
// which day "today" is cannot change while the test runs (before, the
// server, PostgreSQL's now() and the test each read the real time, and a
// run crossing midnight Brussels time put the batch two days back or
// today's document in yesterday's list).
func TestYesterdaysDocumentsInBrowser(t *testing.T) {
	t.Parallel() // its own backend and database
	brussels, err := time.LoadLocation("Europe/Brussels")
	require.NoError(t, err)
	wall := time.Now().In(brussels)
	clock := &fakeClock{t: time.Date(wall.Year(), wall.Month(), wall.Day(), 23, 59, 59, 999e6, brussels)}
	e, tab, base := staffOnTabletWith(t, server.Options{Clock: clock.Now})
	batch := []string{e.register("591-7770001-40", false), e.registerOnly("591-7770002-40", false)}
	e.register("591-7770003-40", false) // today
	// The batch was registered yesterday at noon, Brussels time.
	today := clock.Now().In(brussels)
	yesterday := time.Date(today.Year(), today.Month(), today.Day()-1, 12, 0, 0, 0, brussels)
	_, err = e.pool().Exec(t.Context(), `UPDATE documents SET created_at = $2 WHERE id = ANY($1::uuid[])`, batch, yesterday)
	require.NoError(t, err)
	for _, lang := range []string{"nl", "fr"} {
		tab.Do(t, chromedp.Navigate(base+"/staff/documents?lang="+lang))
		tab.WaitFor(t, `document.activeElement && document.activeElement.id === "q"`, 20*time.Second)
		tab.Do(t, chromedp.KeyEvent("\t\t\t"))
		require.Equal(t, web.Text(lang, "documents.day_yesterday"), evalString(t, tab, `document.activeElement.textContent`), lang)
		tab.Do(t, chromedp.KeyEvent("\r"))
		tab.WaitFor(t, `location.search.startsWith("?day=") && !!document.querySelector("#h-results")`, 20*time.Second)
		assert.Equal(t, web.Text(lang, "documents.day_results", "date", yesterday.Format(web.Text(lang, "fmt.date")), "n", 2), tab.Text(t, "#h-results"), lang)
		results := tab.Text(t, `section[aria-labelledby="h-results"] tbody`)
		assert.Contains(t, results, "591-7770001-40", lang)
		assert.Contains(t, results, "591-7770002-40", lang)
		assert.NotContains(t, results, "591-7770003-40", "%s: today's is not yesterday's", lang)
		assert.Equal(t, web.Text(lang, "documents.day_yesterday"), tab.Text(t, `nav.days a[aria-current]`), lang)
		noSideScroll(t, tab, "yesterday's documents "+lang)
		tab.CheckAxe(t, "yesterday's documents "+lang)
		tab.Screenshot(t, "counterux/documents-yesterday-"+lang)
	}
	c := e.client()
	c.login(auth.RoleStaff)
	assert.Equal(t, http.StatusBadRequest, c.get("/staff/documents?day=gisteren").status)
	assert.Equal(t, http.StatusBadRequest, c.get("/staff/documents?day=2026-02-31").status)
}

// staffOnTablet is a backend of its own (newEnv) and a 768 px tablet's
// tab signed in as counter staff, with the backend's address.
func staffOnTablet(t *testing.T) (*env, *browsertest.Tab, string) {
	t.Helper()
	return staffOnTabletWith(t, server.Options{})
}

// staffOnTabletWith is staffOnTablet with a backend started with o.
func staffOnTabletWith(t *testing.T, o server.Options) (*env, *browsertest.Tab, string) {
	t.Helper()
	e := newEnv(t, o)
	tab := browsertest.New(t, browsertest.Options{}).NewTab(t, 768, 1024)
	base := e.b.URL("")
	login(t, tab, base, e.users[auth.RoleStaff], password(auth.RoleStaff))
	return e, tab, base
}

// A batch for one device: after each registration the notice is followed
// by "register the next document", which has the focus; Enter opens the
// register form with the same site and device chosen (the locker, chosen
// once by hand) and the focus in the number field, ready for the scanner. "Let Kluis choose"
// stays so. In Dutch and in French, on a tablet, with the keyboard.
func TestRegisterTheNextOfABatchInBrowser(t *testing.T) {
	t.Parallel() // its own backend and database
	e, tab, base := staffOnTablet(t)
	for i, lang := range []string{"nl", "fr"} {
		tab.Do(t, chromedp.Navigate(base+"/staff/documents/new?lang="+lang))
		for j := 0; j < 2; j++ { // six compartments: two and one in each language
			tab.WaitFor(t, `document.activeElement && document.activeElement.id === "f-number"`, 20*time.Second)
			if j > 0 {
				assert.Equal(t, lockerID, evalString(t, tab, `document.getElementById("f-device_id").value`), "%s %d: the device kept", lang, j)
				assert.Equal(t, siteID, evalString(t, tab, `document.getElementById("f-site_id").value`), lang)
				assert.Equal(t, "", evalString(t, tab, `document.getElementById("f-holder_last_name").value`), "%s: nothing of the holder before", lang)
			}
			tab.Do(t, chromedp.KeyEvent(fmt.Sprintf("591-8880%d0%d-50", i, j)+"\rAn\tMaes\t1\t1\t2001\t\t"+kb.ArrowDown+kb.ArrowDown))
			if j == 0 {
				tab.Do(t, chromedp.SetValue(chromedp.CSS("#f-device_id"), lockerID))
			}
			tab.Do(t, chromedp.Click(chromedp.CSS(`form button[type=submit].primary`)))
			tab.WaitFor(t, `location.pathname.startsWith("/staff/documents/") && document.readyState === "complete" && !!document.querySelector(".notice")`, 20*time.Second)
			id := strings.TrimPrefix(evalString(t, tab, `location.pathname`), "/staff/documents/")
			assert.Equal(t, lockerID, e.document(id)["device_id"], "%s %d: on the locker", lang, j)
			assert.Equal(t, "register-next", evalString(t, tab, `document.activeElement.id`), "%s %d: the next one has the focus", lang, j)
			assert.Equal(t, web.Text(lang, "notice.register_next"), tab.Text(t, "#register-next"), lang)
			if j == 0 {
				tab.CheckAxe(t, "registered, the next one offered "+lang)
				tab.Screenshot(t, "counterux/register-next-"+lang)
			}
			tab.Do(t, chromedp.KeyEvent("\r"))
		}
		// Let Kluis choose: the next one lets it choose too.
		tab.WaitFor(t, `document.activeElement && document.activeElement.id === "f-number"`, 20*time.Second)
		tab.Do(t, chromedp.KeyEvent(fmt.Sprintf("591-8880%d09-50", i)+"\rAn\tMaes\t1\t1\t2001\t\t"+kb.ArrowDown+kb.ArrowDown),
			chromedp.SetValue(chromedp.CSS("#f-device_id"), ""), chromedp.Click(chromedp.CSS(`form button[type=submit].primary`)))
		tab.WaitFor(t, `document.activeElement && document.activeElement.id === "register-next"`, 20*time.Second)
		tab.Do(t, chromedp.KeyEvent("\r"))
		tab.WaitFor(t, `document.activeElement && document.activeElement.id === "f-number"`, 20*time.Second)
		assert.Equal(t, "", evalString(t, tab, `document.getElementById("f-device_id").value`), lang)
	}
	// Reloaded, the document's page offers no next one (the notice is gone).
	tab.Do(t, chromedp.Navigate(base+"/staff/documents"))
	tab.WaitFor(t, `document.readyState === "complete"`, 20*time.Second)
	assert.Zero(t, evalInt(t, tab, `document.querySelectorAll("#register-next").length`))
}
