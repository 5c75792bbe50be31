package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/web"
	"kluis/controller/wire"
	"kluis/deploy/dev/browsertest"
	"kluis/deploy/dev/testenv"
)

// boardDown has the device report its one board unreachable: a heartbeat
// without doors (kluisd cannot read them), as kluisd sends it; it waits
// until the backend stored it.
func (e *env) boardDown() {
	e.t.Helper()
	e.dev.publish(wire.KindHeartbeat, &wire.Heartbeat{V: 1, At: time.Now().UTC(), UptimeS: 3600,
		Boards: []wire.BoardHealth{{Address: 0, Online: false, Errors: 9}}, Software: "kluisd 1.4.2"})
	pool := e.pool()
	testenv.Eventually(e.t, "the heartbeat with the board offline", func() bool {
		var n int
		_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM device_diagnostics
			WHERE device_id = $1 AND heartbeat->'boards'->0->>'online' = 'false'`, lockerID).Scan(&n)
		return n == 1
	})
}

// lookAt checks the tab's current page as every page of these tests is
// checked: zero axe-core violations, nothing scrolling sideways, a
// screenshot var/screenshots/console/night-<name>.png.
func lookAt(t *testing.T, tab *browsertest.Tab, name string) {
	t.Helper()
	tab.CheckAxe(t, name)
	noSideScroll(t, tab, name)
	tab.Screenshot(t, "console/night-"+name)
}

// techPhone starts a browser with a phone tab (390x844) signed in as the
// technician.
func techPhone(t *testing.T, e *env) (*browsertest.Browser, *browsertest.Tab) {
	t.Helper()
	b := browsertest.New(t, browsertest.Options{})
	phone := b.NewTab(t, 390, 844)
	login(t, phone, e.b.URL(""), e.users[auth.RoleTechnician], password(auth.RoleTechnician))
	return b, phone
}

// fleetToDevice goes from the fleet page to k1's page with a click, and
// waits for ready (a selector) on it.
func fleetToDevice(t *testing.T, tab *browsertest.Tab, base, ready string) {
	t.Helper()
	link := `#fleet-rows a[href="/staff/devices/` + lockerID + `"]`
	tab.Do(t, chromedp.Navigate(base+"/staff/devices"))
	// After the live stream's first update, which replaces the rows.
	tab.WaitFor(t, `document.body.hasAttribute("data-live-updates") && !!document.querySelector('`+link+`')`, 10*time.Second)
	tab.Do(t, chromedp.Click(chromedp.CSS(link)))
	tab.WaitFor(t, `location.pathname === "/staff/devices/`+lockerID+`" && !!document.querySelector("`+ready+`")`, 10*time.Second)
}

// TestTechnicianAtNightSeesWhatIsKnown: a technician on call, on a phone
// (390x844) and a laptop (1366x768), in Dutch then French, with real
// clicks from the fleet page to the device. A door is forced (compartment
// 2), then the lock board stops answering: its doors are "unknown", not
// "shut" (the heartbeat of an unreachable board lists no doors, which
// the pages read as every door closed). Then the network goes: the fleet
// row says offline since when, the device page gives the doors as last
// reported, with the time, not as they are now, and so its backlog and
// its start, and so its lock boards; above the open buttons, that a
// remote open will likely not reach it. Every page with zero
// axe-core WCAG 2.1 A/AA violations, nothing scrolling sideways;
// screenshots under var/screenshots/console/night-*.
func TestTechnicianAtNightSeesWhatIsKnown(t *testing.T) {
	t.Parallel() // its own backend and database
	clock := &heldClock{}
	e := newEnv(t, server.Options{Clock: clock.Now})
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, Addr: &wire.Address{Board: 0, Channel: 1}})
	e.boardDown()

	b, phone := techPhone(t, e)
	laptop := b.NewTab(t, 1366, 768) // shares the phone's session
	base := e.b.URL("")
	look := func(tab *browsertest.Tab, name string) { t.Helper(); lookAt(t, tab, name) }
	toDevice := func(tab *browsertest.Tab) { t.Helper(); fleetToDevice(t, tab, base, "#c-2") }
	doorCell := func(tab *browsertest.Tab, n string) string {
		t.Helper()
		return strings.TrimSpace(evalString(t, tab, `document.querySelector("#c-`+n+` td:nth-of-type(3)").innerText`))
	}

	// The board does not answer: its doors are unknown.
	toDevice(phone)
	look(phone, "board-offline-device-phone")
	assert.Equal(t, web.Text("nl", "unknown"), doorCell(phone, "4"), "a door of the unreachable board is not shut")
	assert.NotEqual(t, web.Text("nl", "comp.closed"), doorCell(phone, "2"))
	assert.Equal(t, "0 · "+web.Text("nl", "devices.doors_board_offline"), phone.Text(t, "#doors-open"))

	// The network goes; the server's clock is held from here (the day the
	// pages write times against stays one).
	now := clock.Hold()
	e.goOffline()
	since, sinceFr := e.presenceSince("nl", now), e.presenceSince("fr", now)
	sinceText := web.Text("nl", "device.since", "time", since)
	for _, v := range []struct {
		tab  *browsertest.Tab
		size string
	}{{phone, "phone"}, {laptop, "laptop"}} {
		v.tab.Do(t, chromedp.Navigate(base+"/staff/devices"))
		v.tab.WaitFor(t, `!!document.querySelector("#fleet-rows tr[data-status~=offline]")`, 10*time.Second)
		look(v.tab, "offline-fleet-"+v.size)
		status := v.tab.Text(t, `#fleet-rows tr[data-status~=offline] td:nth-of-type(2)`)
		assert.Contains(t, status, web.Text("nl", "status.offline"))
		assert.Contains(t, status, sinceText, "since when it is offline, on the fleet page")
		toDevice(v.tab)
		look(v.tab, "offline-device-"+v.size)
		lastReported := strings.SplitN(web.Text("nl", "devices.doors_last"), "{n}", 2)[0]
		assert.True(t, strings.HasPrefix(v.tab.Text(t, "#doors-open"), lastReported), "the doors as last reported: %q", v.tab.Text(t, "#doors-open"))
		assert.Equal(t, web.Text("nl", "unknown"), doorCell(v.tab, "4"))
		// The backlog and the start are the last heartbeat's too, and say so.
		reportedAt := strings.SplitN(web.Text("nl", "devices.reported_at"), "{time}", 2)[0]
		assert.Contains(t, v.tab.Text(t, "#backlog"), reportedAt)
		assert.Contains(t, v.tab.Text(t, "#up-since"), reportedAt)
		// The lock boards too, and the open buttons say why they are there.
		assert.True(t, strings.HasPrefix(v.tab.Text(t, "#boards-reported"), strings.SplitN(web.Text("nl", "device.boards_reported"), "{time}", 2)[0]))
		assert.Equal(t, web.Text("nl", "device.open_offline", "time", since), v.tab.Text(t, "#open-warn"))
	}

	// In French, with a click on the language.
	phone.Do(t, chromedp.Click(chromedp.CSS(`nav.langs a[hreflang="fr"]`)))
	phone.WaitFor(t, `document.documentElement.lang === "fr" && !!document.querySelector("#c-4")`, 10*time.Second)
	look(phone, "offline-device-phone-fr")
	assert.Equal(t, web.Text("fr", "unknown"), doorCell(phone, "4"))
	assert.Contains(t, phone.Text(t, "#doors-open"), "inconnu (dernier signalement\u00a0: ")
	phone.Do(t, chromedp.Navigate(base+"/staff/devices"))
	phone.WaitFor(t, `!!document.querySelector("#fleet-rows tr[data-status~=offline]")`, 10*time.Second)
	look(phone, "offline-fleet-phone-fr")
	assert.Contains(t, phone.Text(t, `#fleet-rows tr[data-status~=offline] td[data-label="`+web.Text("fr", "devices.col.backlog")+`"]`), "(signalé à ")
	assert.Contains(t, phone.Text(t, `#fleet-rows tr[data-status~=offline] td:nth-of-type(2)`),
		web.Text("fr", "device.since", "time", sinceFr))
}

// TestTechnicianSeesWhatToDo: on a phone (390x844), from the fleet page
// with a click, a device with a forced door (compartment 2), a full
// journal disk and its offline cache refused says what to do about each
// (Wat nu?) at the top of its
// status; the timeline names the forced door's compartment, as the
// alarm list does. The network goes: what to do about a device offline,
// since when, comes first. Links at the top of the page go to its parts
// (the timeline is far down on a phone). In French (a click on the language), English
// and German too. Every alarm kind has its advice in the four languages.
// Zero axe-core WCAG 2.1 A/AA violations, nothing scrolling sideways.
func TestTechnicianSeesWhatToDo(t *testing.T) {
	t.Parallel() // its own backend and database
	for _, lang := range web.Languages {
		for _, k := range wire.AlarmKinds() {
			assert.NotEmpty(t, web.Text(lang, "next.alarm."+string(k)), "%s: what to do about %s", lang, k)
		}
	}
	e := newEnv(t, server.Options{})
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, Addr: &wire.Address{Board: 0, Channel: 1}})
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmJournalFull})
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmOfflineCacheUntrusted})

	_, phone := techPhone(t, e)
	base := e.b.URL("")
	look := func(name string) { t.Helper(); lookAt(t, phone, name) }
	fleetToDevice(t, phone, base, "#device-status")
	look("what-to-do-phone")
	steps := phone.Text(t, "#device-status .next-steps")
	assert.Contains(t, steps, web.Text("nl", "next.title"))
	assert.Contains(t, steps, web.Text("nl", "next.what", "what", web.Text("nl", "alarm.forced_door")))
	assert.Contains(t, steps, web.Text("nl", "next.alarm.forced_door"))
	assert.Contains(t, steps, web.Text("nl", "next.alarm.journal_full"))
	assert.Contains(t, steps, web.Text("nl", "next.what", "what", web.Text("nl", "alarm.offline_cache_untrusted")))
	assert.Contains(t, steps, web.Text("nl", "next.alarm.offline_cache_untrusted"))
	assert.NotContains(t, steps, web.Text("nl", "next.alarm.door_left_open"))
	assert.Contains(t, evalString(t, phone, `Array.from(document.querySelectorAll("#device-timeline li.alarm")).map(li => li.innerText).join("\n")`), web.Text("nl", "alarm.at_compartment", "alarm", web.Text("nl", "alarm.forced_door"), "n", 2),
		"the timeline names the door")
	// Above the fold on the phone: the advice starts within the first screen.
	assert.Less(t, evalInt(t, phone, `Math.round(document.querySelector("#device-status .next-steps").getBoundingClientRect().top + scrollY)`), 844)

	// The timeline is far down a locker's page on a phone: a link at the
	// top goes there.
	require.Greater(t, evalInt(t, phone, `Math.round(document.getElementById("h-timeline").getBoundingClientRect().top)`), 844)
	phone.Do(t, chromedp.Click(chromedp.CSS(`nav.jump a[href="#h-timeline"]`)))
	phone.WaitFor(t, `(function(){var r=document.getElementById("h-timeline").getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight})()`, 5*time.Second)

	// The network goes.
	e.goOffline()
	phone.Do(t, chromedp.Navigate(base+"/staff/devices/"+lockerID))
	phone.WaitFor(t, `!!document.querySelector("#device-status .badge.off")`, 10*time.Second)
	look("what-to-do-offline-phone")
	first := phone.Text(t, "#device-status .next-steps li")
	assert.True(t, strings.HasPrefix(first, web.Text("nl", "next.what", "what", web.Text("nl", "status.offline"))), first)
	assert.Contains(t, first, strings.SplitN(web.Text("nl", "next.offline"), "{time}", 2)[0])
	assert.NotContains(t, first, web.Text("nl", "next.what", "what", web.Text("nl", "status.offline"))+" "+web.Text("nl", "status.offline"),
		"offline said once")

	phone.Do(t, chromedp.Click(chromedp.CSS(`nav.langs a[hreflang="fr"]`)))
	phone.WaitFor(t, `document.documentElement.lang === "fr" && !!document.querySelector("#device-status .next-steps")`, 10*time.Second)
	look("what-to-do-offline-phone-fr")
	steps = phone.Text(t, "#device-status .next-steps")
	assert.Contains(t, steps, "Que faire\u00a0?")
	assert.Contains(t, steps, web.Text("fr", "next.what", "what", web.Text("fr", "alarm.forced_door")))
	assert.Contains(t, steps, web.Text("fr", "next.alarm.journal_full"))
	assert.Contains(t, steps, web.Text("fr", "next.alarm.offline_cache_untrusted"))
	for _, lang := range []string{"en", "de"} {
		phone.Do(t, chromedp.Click(chromedp.CSS(`nav.langs a[hreflang="`+lang+`"]`)))
		phone.WaitFor(t, `document.documentElement.lang === "`+lang+`" && !!document.querySelector("#device-status .next-steps")`, 10*time.Second)
		look("what-to-do-offline-phone-" + lang)
		assert.Contains(t, phone.Text(t, "#device-status .next-steps"), web.Text(lang, "next.alarm.forced_door"))
		assert.Contains(t, phone.Text(t, "#device-status .next-steps"), web.Text(lang, "next.alarm.offline_cache_untrusted"))
	}
}

// TestRemoteOpenSaysWhatWillHappenAndWhatHappened: a technician on a
// phone opens compartments remotely with real clicks and keys. Its lock
// board down at the last heartbeat: the form and the confirmation warn
// that the device will likely refuse, and when it does the page says it
// refused (not that it "did not confirm"). The device offline: the form
// says since when and that the command will likely expire; it does (the
// device is silent) and the page says the device did not answer in time
// and the door did not open. nl, then the confirmation in fr; axe on
// every page.
func TestRemoteOpenSaysWhatWillHappenAndWhatHappened(t *testing.T) {
	t.Parallel() // its own backend and database
	clock := &heldClock{}
	e := newEnv(t, server.Options{OpenTimeout: 2 * time.Second, Clock: clock.Now})
	e.boardDown()
	e.dev.answerOpens(wire.StatusFailed, false)

	_, phone := techPhone(t, e)
	base := e.b.URL("")
	look := func(name string) { t.Helper(); lookAt(t, phone, name) }
	// From the device page, the compartment's open button, reason, confirm.
	open := func(n, name string) {
		t.Helper()
		phone.Do(t, chromedp.Navigate(base+"/staff/devices/"+lockerID))
		link := `#c-` + n + ` a[href$="/compartments/` + n + `/open"]`
		phone.WaitFor(t, `!!document.querySelector('`+link+`')`, 10*time.Second)
		phone.Do(t, chromedp.Click(chromedp.CSS(link)))
		phone.WaitFor(t, `!!document.querySelector("#reason")`, 10*time.Second)
		look(name + "-form")
		phone.Do(t, chromedp.SendKeys(chromedp.CSS("#reason"), "storing 4411"), chromedp.Click(chromedp.CSS("button.primary")))
		phone.WaitFor(t, `!!document.querySelector(".confirm")`, 10*time.Second)
		look(name + "-confirm")
	}
	confirm := func(name string) string {
		t.Helper()
		phone.Do(t, chromedp.Click(chromedp.CSS("button.danger")))
		phone.WaitFor(t, `!document.querySelector(".confirm") && !!document.querySelector(".error-summary")`, 15*time.Second)
		look(name + "-result")
		return phone.Text(t, "main")
	}

	open("3", "open-board-down")
	assert.Contains(t, phone.Text(t, ".confirm"), web.Text("nl", "open.board_offline", "n", 1))
	assert.NotContains(t, phone.Text(t, "main"), strings.SplitN(web.Text("nl", "open.offline"), "{time}", 2)[0])
	got := confirm("open-board-down")
	assert.Contains(t, got, web.Text("nl", "error.open_refused"))
	assert.NotContains(t, got, web.Text("nl", "error.open_failed"))
	assert.Equal(t, 1, e.dev.openCount())

	// The network goes; the device hears nothing more.
	e.dev.answerOpens("", true)
	now := clock.Hold() // the day the pages write times against stays one
	e.goOffline()
	since, sinceFr := e.presenceSince("nl", now), e.presenceSince("fr", now)
	open("5", "open-offline")
	assert.Contains(t, phone.Text(t, ".confirm"), web.Text("nl", "open.offline", "time", since))
	got = confirm("open-offline")
	assert.Contains(t, got, web.Text("nl", "error.open_no_answer"))
	// The timeline says it in words (the audit's result no_answer).
	phone.Do(t, chromedp.Navigate(base+"/staff/devices/"+lockerID))
	phone.WaitFor(t, `!!document.querySelector("#device-timeline li")`, 10*time.Second)
	timeline := phone.Text(t, "#device-timeline")
	assert.Contains(t, timeline, web.Text("nl", "timeline.compartment.remote_open", "n", 5, "result", web.Text("nl", "result.no_answer")))
	assert.Contains(t, timeline, web.Text("nl", "timeline.compartment.remote_open", "n", 3, "result", web.Text("nl", "result.failed")))
	assert.NotContains(t, timeline, "⟦")

	// The confirmation in French.
	phone.Do(t, chromedp.Navigate(base+"/staff/devices/"+lockerID+"/compartments/5/open?lang=fr"))
	phone.WaitFor(t, `document.documentElement.lang === "fr" && !!document.querySelector("#reason")`, 10*time.Second)
	phone.Do(t, chromedp.SendKeys(chromedp.CSS("#reason"), "panne 4411"), chromedp.Click(chromedp.CSS("button.primary")))
	phone.WaitFor(t, `!!document.querySelector(".confirm")`, 10*time.Second)
	look("open-offline-confirm-fr")
	assert.Contains(t, phone.Text(t, ".confirm"), web.Text("fr", "open.offline", "time", sinceFr))
	assert.Contains(t, phone.Text(t, ".confirm"), web.Text("fr", "open.board_offline", "n", 1))
}
