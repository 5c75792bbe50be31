package web_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/notify"
	"kluis/controller/wire"
	"kluis/deploy/dev/browsertest"
)

// The console and the dashboard in headless Chromium against the real
// backend: every page at desktop (1280x800) and phone (360x740) widths
// with zero axe-core WCAG 2.1 A/AA violations and nothing scrolling
// sideways, a screenshot of each under var/screenshots/console/ (the
// pages TestConsoleInEveryLanguage/nl checks in the same state, with the
// same checks and more, are left to it: the login page, not found, a
// device that never connected, the open, compartment and device service
// forms); a
// scanner typing the document number and Enter into the register form
// (the next field opens, nothing is sent), the form sent with real clicks
// and keys (the date of birth typed day, month, year, and stored as
// typed); the fleet table sorted and filtered with clicks; a
// door-left-open alarm on the fleet page without a reload; a language link;
// a document's page with its own messages that did not reach the holder.
//
// Once the documents are set up, the server's clock is held (heldClock)
// and k1 beats after that moment: the fleet's "heartbeat late: 0" holds
// however long the test takes (before, on the real clock, a run past
// service.LateAfter on a loaded machine saw k1 late: 1 at 207 s).
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel() // its own backend and database
	clock := &heldClock{}
	e := newConsoleEnvOn(t, clock.Now)
	ctx := context.Background()
	reserved, slipDoc, expired := e.consoleDocuments(t, 1)
	e.beatSince(clock.Hold())

	b := browsertest.New(t, browsertest.Options{})
	desktop := b.NewTab(t, 1280, 800)
	phone := b.NewTab(t, 360, 740)
	base := e.b.URL("")
	check := func(path, name string, wait string) {
		t.Helper()
		checkBoth(t, desktop, phone, base+path, name, wait)
	}

	// Signed out: the login page is TestConsoleInEveryLanguage's.
	login(t, desktop, base, e.users[auth.RoleStaff], password(auth.RoleStaff))
	desktop.WaitFor(t, `location.pathname === "/staff/documents"`, 10*time.Second)

	// A scanner types the number and Enter: the next field opens, nothing is sent.
	desktop.Do(t, chromedp.Navigate(base+"/staff/documents/new"))
	desktop.WaitFor(t, `document.activeElement && document.activeElement.id === "f-number"`, 10*time.Second)
	desktop.Do(t, chromedp.Evaluate[chromedp.Void](`window.sameDocument = true`))
	desktop.Do(t, chromedp.KeyEvent("591-7654321-98\r"))
	desktop.WaitFor(t, `document.activeElement.id === "f-holder_first_name"`, 5*time.Second)
	require.Equal(t, "/staff/documents/new", evalString(t, desktop, `location.pathname`))
	require.Equal(t, "true", evalString(t, desktop, `String(window.sameDocument === true)`))
	require.Equal(t, "591-7654321-98", evalString(t, desktop, `document.getElementById("f-number").value`))
	desktop.Do(t, chromedp.KeyEvent("Lotte"), chromedp.SendKeys(chromedp.CSS("#f-holder_last_name"), "Claes"))
	// The date of birth in three fields, day first as Dutch writes it, in
	// an English browser: typed, Tab between the fields.
	desktop.Do(t, chromedp.Click(chromedp.CSS("#f-holder_birth_date")), chromedp.KeyEvent("15\t6\t1988"))
	require.Equal(t, "f-holder_birth_date-year", evalString(t, desktop, `document.activeElement.id`))
	desktop.Do(t, chromedp.Click(chromedp.CSS("#c-mobile")), chromedp.SendKeys(chromedp.CSS("#f-mobile"), "0470 12 34 56"))
	desktop.Do(t, chromedp.SetValue(chromedp.CSS("#f-device_id"), lockerID), chromedp.Click(chromedp.CSS("#f-wants_low")))
	desktop.Do(t, chromedp.Click(chromedp.CSS(`form button[type=submit].primary`)))
	// The locker holds a forced door: asked first, what was typed kept,
	// the focus on the confirmation; ticked with the keyboard.
	desktop.WaitFor(t, `document.activeElement && document.activeElement.id === "f-confirm_unfit"`, 10*time.Second)
	require.Equal(t, "591-7654321-98", evalString(t, desktop, `document.getElementById("f-number").value`))
	desktop.CheckAxe(t, "register at an unfit device")
	desktop.Screenshot(t, "console/register-unfit-confirm-desktop")
	desktop.Do(t, chromedp.KeyEvent(" "), chromedp.Click(chromedp.CSS(`form button[type=submit].primary`)))
	desktop.WaitFor(t, `location.pathname.startsWith("/staff/documents/") && !!document.querySelector(".notice")`, 10*time.Second)
	assert.Contains(t, desktop.Text(t, ".state-line"), "Gereserveerd")
	assert.Contains(t, desktop.Text(t, ".state-line"), "Kluis inkomhal, vak")
	registered := strings.TrimPrefix(evalString(t, desktop, `location.pathname`), "/staff/documents/")
	assert.Equal(t, "1988-06-15T00:00:00Z", e.document(registered)["holder_birth_date"])
	assert.Contains(t, desktop.Text(t, "dl.details"), "15-06-1988")

	// Messages that did not reach their holder: the slip document's ready
	// message given up, a reminder waiting for its next try.
	// The reminder's stored error carries what a server might echo: an
	// address and a PIN; the document's page shows neither.
	_, err := e.pool().Exec(ctx, `INSERT INTO notify_outbox (document_id, kind, state, attempts, next_at, created_at, last_error, gave_up_at)
		VALUES ($1, 'loaded', 'gave_up', 12, now(), now() - interval '1 hour', 'no slip printer', now()),
		($2, 'reminder', 'pending', 2, now() + interval '1 hour', now() - interval '1 hour',
			'smtp: 451 4.3.0 <a@example.org> try later (message: PIN 123 456 789)', NULL)`, slipDoc, expired)
	require.NoError(t, err)
	_, err = e.pool().Exec(ctx, `INSERT INTO notifications (document_id, kind, channel, status, error, created_at)
		VALUES ($1, 'loaded', 'slip', 'failed', 'no slip printer', now()), ($2, 'reminder', 'email', 'failed', 'smtp: 451', now())`, slipDoc, expired)
	require.NoError(t, err)

	// Every page of counter staff.
	check("/staff/documents", "documents", `!!document.querySelector("#h-undelivered")`)
	assert.Equal(t, 2, evalInt(t, phone, `document.querySelectorAll("table.undelivered tbody tr").length`))
	assert.Contains(t, phone.Text(t, "table.undelivered tr[data-gave-up]"), "EP0000011")
	assert.Contains(t, phone.Text(t, "table.undelivered tr[data-gave-up]"), "Opgegeven (pogingen: 12)")
	assert.Contains(t, phone.Text(t, "table.undelivered tbody tr:not([data-gave-up])"), "Nieuwe poging")
	check("/staff/documents?q=dubois", "documents-search", `!!document.querySelector("#h-results")`)
	check("/staff/documents/new", "register", `!!document.querySelector("#f-number")`)
	for _, v := range []*browsertest.Tab{desktop, phone} {
		// The form sent empty: the error summary and the fields.
		v.Do(t, chromedp.Navigate(base+"/staff/documents/new"))
		v.WaitFor(t, `!!document.querySelector("#f-number")`, 10*time.Second)
		v.Do(t, chromedp.Click(chromedp.CSS(`form button[type=submit].primary`)))
		v.WaitFor(t, `!!document.querySelector(".error-summary")`, 10*time.Second)
	}
	desktop.CheckAxe(t, "register-errors desktop")
	desktop.Screenshot(t, "console/register-errors-desktop")
	phone.CheckAxe(t, "register-errors phone")
	noSideScroll(t, phone, "register-errors phone")
	phone.Screenshot(t, "console/register-errors-phone")
	check("/staff/documents/"+registered, "document-reserved", `!!document.querySelector(".timeline")`)
	check("/staff/documents/"+slipDoc, "document-ready", `!!document.querySelector(".timeline")`)
	assert.Contains(t, phone.Text(t, "table.undelivered tr[data-gave-up]"), "afhaalbewijs")
	assert.Contains(t, phone.Text(t, "table.undelivered tr[data-gave-up]"), "geef het afhaalbewijs af")
	// The deadline as the holder's messages word it (midnight: the end of the day before).
	deadline, err := time.Parse(time.RFC3339, fmt.Sprint(e.document(slipDoc)["deadline"]))
	require.NoError(t, err)
	assert.Equal(t, notify.FormatDeadline("nl", deadline, clock.Now()), phone.Text(t, "dl.details time"))
	assert.Contains(t, phone.Text(t, "dl.details time"), "(tot middernacht)")
	check("/staff/documents/"+expired, "document-expired", `!!document.querySelector(".timeline")`)
	// Its own message that did not reach the holder: the channel, the
	// attempts, the last error without address or PIN.
	for _, v := range []*browsertest.Tab{desktop, phone} {
		undelivered := v.Text(t, "table.undelivered tbody")
		assert.Contains(t, undelivered, "Herinnering")
		assert.Contains(t, undelivered, "e-mail")
		assert.Contains(t, undelivered, "mislukte pogingen: 2")
		assert.Contains(t, undelivered, "smtp: 451 4.3.0 <[address]> try later (message: PIN [number])")
		assert.NotContains(t, undelivered, "a@example.org")
		assert.NotContains(t, undelivered, "123 456 789")
	}
	assert.Equal(t, 1, evalInt(t, phone, `document.querySelectorAll("table.undelivered tbody tr").length`))
	check("/staff/documents/"+slipDoc+"/slip", "slip-a4", `!!document.querySelector("article.slip img")`)
	check("/staff/documents/"+slipDoc+"/slip?paper=80mm", "slip-80mm", `!!document.querySelector("article.slip img")`)
	// Printed, only the slip shows. The print stylesheet (media="print")
	// loads after the page is shown: wait for it first.
	desktop.WaitFor(t, `[...document.styleSheets].some(s => (s.href || "").endsWith("/print-80mm.css"))`, 15*time.Second)
	_, err = chromedp.Call(desktop.Ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"})
	require.NoError(t, err)
	require.Equal(t, "none", evalString(t, desktop, `getComputedStyle(document.querySelector("header.top")).display`))
	require.Equal(t, "none", evalString(t, desktop, `getComputedStyle(document.querySelector(".no-print")).display`))
	assert.Regexp(t, `\d{3} \d{3} \d{3}`, desktop.Text(t, "article.slip .slip-pin"), "the PIN is on the slip")
	assert.Equal(t, "fr", evalString(t, desktop, `document.querySelector("article.slip").lang`), "in the holder's language")
	desktop.Screenshot(t, "console/slip-80mm-printed")
	pdf, err := chromedp.Run(desktop.Ctx, chromedp.PrintToPDF(chromedp.PDFPreferCSSPageSize()))
	require.NoError(t, err)
	require.True(t, len(pdf) > 1000 && string(pdf[:4]) == "%PDF")
	_, err = chromedp.Call(desktop.Ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: ""})
	require.NoError(t, err)
	check("/staff/devices", "devices-staff", `!!document.querySelector("#fleet-rows tr")`)
	// A violation on a console page fails the check (axe-core came with
	// the page, loaded once per tab).
	desktop.Do(t, chromedp.Evaluate[chromedp.Void](`document.querySelector("main").appendChild(document.createElement("img")).src = "/nowhere.png"`))
	ft := &errorsT{TB: t}
	desktop.CheckAxe(ft, "devices-staff with an image without text")
	if len(ft.errs) != 1 || !strings.Contains(ft.errs[0], "axe: image-alt ") {
		t.Errorf("an image without alternative text on the fleet page: CheckAxe reported %q, want one image-alt", ft.errs)
	}
	check("/staff/devices/"+lockerID+"?c=2", "device-staff", `!!document.querySelector("svg.map")`)
	assert.Zero(t, evalInt(t, desktop, `document.querySelectorAll('a[href*="/open"]').length`), "no remote open for staff")

	// A language link, with a real click.
	desktop.Do(t, chromedp.Navigate(base+"/staff/documents/"+reserved))
	desktop.WaitFor(t, `document.documentElement.lang === "nl"`, 10*time.Second)
	desktop.Do(t, chromedp.Click(chromedp.CSS(`nav.langs a[hreflang="fr"]`)))
	desktop.WaitFor(t, `document.documentElement.lang === "fr"`, 10*time.Second)
	assert.Contains(t, desktop.Text(t, ".state-line"), "Réservé")
	desktop.CheckAxe(t, "document fr")
	desktop.Do(t, chromedp.Click(chromedp.CSS(`nav.langs a[hreflang="nl"]`)))
	desktop.WaitFor(t, `document.documentElement.lang === "nl"`, 10*time.Second)

	// A technician.
	desktop.Do(t, chromedp.Navigate(base+"/staff/devices"))
	desktop.WaitFor(t, `!!document.querySelector("header form button")`, 10*time.Second)
	desktop.Do(t, chromedp.Click(chromedp.CSS(`header form button`)))
	desktop.WaitFor(t, `location.pathname === "/staff/login"`, 10*time.Second)
	login(t, desktop, base, e.users[auth.RoleTechnician], password(auth.RoleTechnician))
	desktop.WaitFor(t, `location.pathname === "/staff/devices"`, 10*time.Second)
	check("/staff/devices", "devices", `!!document.querySelector("#fleet-rows tr")`)
	check("/staff/devices/"+lockerID, "device", `!!document.querySelector("svg.map")`)
	// Board 0 on the wire is board 1 for people, as on the kiosk's screen.
	assert.Equal(t, "1", desktop.Text(t, "table.boards tbody th"), "boards counted from 1")
	desktop.Do(t, chromedp.Navigate(base+"/staff/devices/"+autoID))
	desktop.WaitFor(t, `!!document.querySelector("svg.map")`, 10*time.Second)
	// A device that never connected offers no remote open and says why.
	assert.Zero(t, evalInt(t, desktop, `document.querySelectorAll('a[href*="/open"]').length`), "no remote open before the device connected")
	assert.Contains(t, desktop.Text(t, "#open-never"), "alleen verlopen")
	desktop.Screenshot(t, "console/device-never-connected-no-open-desktop")
	for _, v := range []*browsertest.Tab{desktop, phone} {
		v.Do(t, chromedp.Navigate(base+"/staff/devices/"+lockerID+"/compartments/3/open"))
		v.WaitFor(t, `!!document.querySelector("#reason")`, 10*time.Second)
		v.Do(t, chromedp.SendKeys(chromedp.CSS("#reason"), "ticket 881"), chromedp.Click(chromedp.CSS("button.primary")))
		v.WaitFor(t, `!!document.querySelector(".confirm")`, 10*time.Second)
	}
	desktop.CheckAxe(t, "open-confirm desktop")
	desktop.Screenshot(t, "console/open-confirm-desktop")
	phone.CheckAxe(t, "open-confirm phone")
	noSideScroll(t, phone, "open-confirm phone")
	phone.Screenshot(t, "console/open-confirm-phone")
	require.Zero(t, e.dev.openCount(), "nothing opens before the confirmation")

	// Sort and filter the fleet with clicks. By default what needs a
	// technician comes first: the locker with its forced-door alarm
	// before Automaat (never connected), though A sorts before K by name.
	first := `document.querySelector("#fleet-rows tr[data-status]:not([hidden]) a").getAttribute("href").split("/").pop()`
	desktop.Do(t, chromedp.Navigate(base+"/staff/devices"))
	desktop.WaitFor(t, `document.querySelectorAll("#fleet-rows tr[data-status]").length === 2`, 10*time.Second)
	assert.Equal(t, "attention", evalString(t, desktop, `document.getElementById("sort").value`))
	assert.Zero(t, evalInt(t, desktop, `document.querySelectorAll("th[aria-sort]").length`), "sorted by no single column")
	assert.Contains(t, desktop.Text(t, "#sort-note"), "ernstigste eerst")
	assert.Equal(t, lockerID, evalString(t, desktop, first), "the alarm first")
	assert.Contains(t, desktop.Text(t, "#fleet-summary"), "Online: 1 · hartslag te laat: 0 · offline: 0 · nooit verbonden: 1", "never connected is not offline")
	desktop.CheckAxe(t, "devices attention first")
	desktop.Screenshot(t, "console/devices-attention-first-desktop")
	desktop.Do(t, chromedp.Click(chromedp.CSS(`button[data-sort="0"]`)))
	assert.Equal(t, "ascending", evalString(t, desktop, `document.querySelector("th[aria-sort]").getAttribute("aria-sort")`))
	assert.Equal(t, "0", evalString(t, desktop, `document.getElementById("sort").value`))
	assert.Equal(t, autoID, evalString(t, desktop, first), "Automaat before Kluis inkomhal by name")
	desktop.Do(t, chromedp.Click(chromedp.CSS(`button[data-sort="0"]`)))
	assert.Equal(t, "descending", evalString(t, desktop, `document.querySelector("th[aria-sort]").getAttribute("aria-sort")`))
	assert.Equal(t, lockerID, evalString(t, desktop, first), "Kluis inkomhal before Automaat, descending")
	desktop.Do(t, chromedp.SetValue(chromedp.CSS("#sort"), "attention"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("sort").dispatchEvent(new Event("change"))`))
	assert.Zero(t, evalInt(t, desktop, `document.querySelectorAll("th[aria-sort]").length`))
	assert.Equal(t, lockerID, evalString(t, desktop, first), "back to what needs attention first")
	desktop.Do(t, chromedp.SetValue(chromedp.CSS("#show"), "never"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("show").dispatchEvent(new Event("change"))`))
	assert.Equal(t, 1, evalInt(t, desktop, `document.querySelectorAll("#fleet-rows tr[data-status]:not([hidden])").length`))
	assert.Equal(t, autoID, evalString(t, desktop, first), "never connected")
	desktop.Do(t, chromedp.SetValue(chromedp.CSS("#show"), "offline"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("show").dispatchEvent(new Event("change"))`))
	assert.Zero(t, evalInt(t, desktop, `document.querySelectorAll("#fleet-rows tr[data-status]:not([hidden])").length`), "never connected is not offline")
	desktop.Do(t, chromedp.SetValue(chromedp.CSS("#show"), "alarms"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("show").dispatchEvent(new Event("change"))`))
	assert.Equal(t, 1, evalInt(t, desktop, `document.querySelectorAll("#fleet-rows tr[data-status]:not([hidden])").length`))
	desktop.Do(t, chromedp.SetValue(chromedp.CSS("#show"), "all"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("show").dispatchEvent(new Event("change"))`))
	desktop.Do(t, chromedp.Click(chromedp.CSS("#filter")), chromedp.KeyEvent("automaat"))
	desktop.WaitFor(t, `document.querySelectorAll("#fleet-rows tr[data-status]:not([hidden])").length === 1`, 5*time.Second)
	assert.Contains(t, desktop.Text(t, ".shown"), "1 van 2")
	desktop.Do(t, chromedp.Navigate(base+"/staff/devices"))
	desktop.WaitFor(t, `document.querySelectorAll("#fleet-rows tr[data-status]").length === 2`, 10*time.Second)

	// A door left open appears without a reload.
	desktop.Do(t, chromedp.Evaluate[chromedp.Void](`window.sameDocument = true`))
	// The stream is open and has had its first poll: a fresh stream's
	// first update comes with it.
	desktop.WaitFor(t, `document.body.hasAttribute("data-live-updates")`, 10*time.Second)
	e.dev.event(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmDoorLeftOpen, Addr: &wire.Address{Board: 0, Channel: 5}})
	desktop.WaitText(t, "#fleet-rows", "Deur bleef open, vak 6", 10*time.Second)
	require.Equal(t, "true", evalString(t, desktop, `String(window.sameDocument === true)`), "no reload")
	assert.Contains(t, desktop.Text(t, "#fleet-summary"), "actieve alarmen")
	desktop.CheckAxe(t, "devices after a live update")
	desktop.Screenshot(t, "console/devices-live-alarm-desktop")
	phone.Do(t, chromedp.Navigate(base+"/staff/devices/"+lockerID))
	phone.WaitFor(t, `!!document.querySelector("svg.map .alarmed")`, 10*time.Second)
	phone.Screenshot(t, "console/device-alarm-phone")
}

func (e *env) registerWith(body map[string]any) string {
	e.t.Helper()
	var d struct {
		ID string `json:"id"`
	}
	require.NoError(e.t, e.b.Call(context.Background(), "POST", "/api/v1/documents", body, &d))
	require.NoError(e.t, e.b.Call(context.Background(), "POST", "/api/v1/documents/"+d.ID+"/reserve", map[string]string{"device_id": lockerID}, nil))
	return d.ID
}

// login signs in through the form, with key presses and a click.
func login(t *testing.T, tab *browsertest.Tab, base, user, pass string) {
	t.Helper()
	tab.Do(t, chromedp.Navigate(base+"/staff/login"))
	tab.WaitFor(t, `!!document.querySelector("#username")`, 10*time.Second)
	tab.Do(t, chromedp.Click(chromedp.CSS("#username")), chromedp.KeyEvent(user),
		chromedp.Click(chromedp.CSS("#password")), chromedp.KeyEvent(pass), chromedp.Click(chromedp.CSS("form button[type=submit]")))
	tab.WaitFor(t, `location.pathname !== "/staff/login"`, 10*time.Second)
}

func evalString(t *testing.T, tab *browsertest.Tab, expr string) string {
	t.Helper()
	s, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[string](expr))
	require.NoError(t, err, expr)
	return s
}

func evalInt(t *testing.T, tab *browsertest.Tab, expr string) int {
	t.Helper()
	n, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[int](expr))
	require.NoError(t, err, expr)
	return n
}

// checkBoth opens url on the desktop and the phone tab, waits for wait,
// checks axe-core and that nothing scrolls sideways, and saves
// var/screenshots/console/<name>-desktop.png and -phone.png.
func checkBoth(t *testing.T, desktop, phone *browsertest.Tab, url, name, wait string) {
	t.Helper()
	for _, v := range []struct {
		tab  *browsertest.Tab
		size string
	}{{desktop, "desktop"}, {phone, "phone"}} {
		v.tab.Do(t, chromedp.Navigate(url))
		v.tab.WaitFor(t, wait, 10*time.Second)
		v.tab.CheckAxe(t, name+" "+v.size)
		noSideScroll(t, v.tab, name+" "+v.size)
		v.tab.Screenshot(t, "console/"+name+"-"+v.size)
	}
}

// errorsT records Errorf instead of failing the test.
type errorsT struct {
	testing.TB
	errs []string
}

func (f *errorsT) Helper()                        {}
func (f *errorsT) Errorf(format string, a ...any) { f.errs = append(f.errs, fmt.Sprintf(format, a...)) }

func noSideScroll(t *testing.T, tab *browsertest.Tab, name string) {
	t.Helper()
	w := evalString(t, tab, `document.documentElement.scrollWidth + " " + document.documentElement.clientWidth`)
	var scroll, client int
	_, err := fmt.Sscan(w, &scroll, &client)
	require.NoError(t, err)
	assert.LessOrEqual(t, scroll, client, "%s scrolls sideways (%s)", name, w)
}
