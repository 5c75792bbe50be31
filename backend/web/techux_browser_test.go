package web_test

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/backend/service"
	"kluis/backend/web"
	"kluis/controller/wire"
	"kluis/deploy/dev/browsertest"
)

// darkScheme has the tab's pages seen as on a phone or computer set to
// dark (prefers-color-scheme: dark).
func darkScheme(t *testing.T, tab *browsertest.Tab) { t.Helper(); colorScheme(t, tab, "dark") }

// colorScheme has the tab's pages seen as on a phone or computer set to
// scheme (prefers-color-scheme: light or dark).
func colorScheme(t *testing.T, tab *browsertest.Tab, scheme string) {
	t.Helper()
	_, err := chromedp.Call(tab.Ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
	require.NoError(t, err)
}

// luminance is the relative luminance (WCAG, 0 black to 1 white) of the
// computed CSS property prop of the element css.
func luminance(t *testing.T, tab *browsertest.Tab, css, prop string) float64 {
	t.Helper()
	s := evalString(t, tab, `(function(){var m=getComputedStyle(document.querySelector(`+"`"+css+"`"+`))[`+"`"+prop+"`"+`].match(/\d+(\.\d+)?/g).slice(0,3).map(Number);
		var l=m.map(function(c){c/=255; return c<=0.03928?c/12.92:Math.pow((c+0.055)/1.055,2.4)});
		return String(0.2126*l[0]+0.7152*l[1]+0.0722*l[2])})()`)
	f, err := strconv.ParseFloat(s, 64)
	require.NoError(t, err, s)
	return f
}

// agoPattern matches how long ago something was in lang ("3 min
// geleden"), any of the catalogue's ago.* forms.
func agoPattern(lang string) *regexp.Regexp {
	var alts []string
	for _, k := range []string{"ago.seconds", "ago.minutes", "ago.hours", "ago.days"} {
		alts = append(alts, strings.ReplaceAll(regexp.QuoteMeta(web.Text(lang, k)), `\{n\}`, `\d+`))
	}
	return regexp.MustCompile("^(" + strings.Join(alts, "|") + ")$")
}

// TestTechnicianAtNightOnADarkPhone: called out at night, a technician
// opens the console on a phone set to dark (390x844, prefers-color-
// scheme: dark). The door of compartment 2 is forced, then (later) the
// sensors of compartment 4 disagree, and the lock board stops
// answering. The pages are dark (a dark ground, light text: the
// phone's setting is followed, a laptop with the light setting stays
// light), with zero axe-core WCAG 2.1 A/AA violations (contrast included)
// and nothing scrolling sideways. The forced door, the visit that cannot
// wait, comes first in the fleet row's alarms and in the device's "what
// to do", though the sensors' alarm is newer (by time alone it came
// second). Each alarm says how long ago it was raised, beside the time,
// on the fleet page, the device page and the acknowledgement form, in
// Dutch and in French. Screenshots var/screenshots/console/night-dark-*.
func TestTechnicianAtNightOnADarkPhone(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	// The door forced three hours ago, its sensors disagreeing two hours
	// ago (in the device's clock, which the alarm's time is).
	now := time.Now().UTC()
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, Addr: &wire.Address{Board: 0, Channel: 1}, At: now.Add(-3*time.Hour - time.Minute)})
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmSensorDisagreement, Addr: &wire.Address{Board: 0, Channel: 3}, At: now.Add(-2*time.Hour - time.Minute)})
	e.boardDown()

	b, phone := techPhone(t, e)
	laptop := b.NewTab(t, 1366, 768) // light, as set
	darkScheme(t, phone)
	base := e.b.URL("")
	look := func(name string) { t.Helper(); lookAt(t, phone, "dark-"+name) }
	dark := func(where string) {
		t.Helper()
		assert.Less(t, luminance(t, phone, "body", "backgroundColor"), 0.02, "%s: a dark ground", where)
		assert.Greater(t, luminance(t, phone, "main", "color"), 0.7, "%s: light text", where)
	}
	forced := func(lang string) string {
		return web.Text(lang, "alarm.at_compartment", "alarm", web.Text(lang, "alarm.forced_door"), "n", 2)
	}
	agos := func(lang, list string) {
		t.Helper()
		n := evalInt(t, phone, `document.querySelectorAll("`+list+` li.alarm").length`)
		require.Equal(t, 2, n, "%s: both alarms listed", list)
		for i := 0; i < n; i++ {
			ago := strings.TrimSpace(evalString(t, phone, `(function(){var s=document.querySelectorAll("`+list+` li.alarm")[`+itoa(int64(i))+`].querySelector(".ago"); return s ? s.innerText : ""})()`))
			assert.Regexp(t, agoPattern(lang), ago, "%s: alarm %d says how long ago", list, i+1)
		}
	}

	// The fleet page.
	phone.Do(t, chromedp.Navigate(base+"/staff/devices"))
	phone.WaitFor(t, `document.body.hasAttribute("data-live-updates") && !!document.querySelector("#fleet-rows tr.has-alarm li.alarm")`, 10*time.Second)
	look("fleet-phone")
	dark("fleet")
	row := `#fleet-rows tr.has-alarm`
	assert.True(t, strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(phone.Text(t, row+" li.alarm"), web.Text("nl", "alarm.unacked"))), forced("nl")),
		"the forced door first: %q", phone.Text(t, row+" li.alarm"))
	agos("nl", row)
	assert.Equal(t, web.Text("nl", "ago.hours", "n", 3), phone.Text(t, row+" li.alarm .ago"), "the forced door, three hours ago")

	// The device's page: what to do, the forced door first.
	fleetToDevice(t, phone, base, "#device-status .next-steps")
	look("device-phone")
	dark("device")
	first := phone.Text(t, "#device-status .next-steps li")
	assert.True(t, strings.HasPrefix(first, web.Text("nl", "next.what", "what", web.Text("nl", "alarm.forced_door"))), "what to do first: %q", first)
	assert.Contains(t, phone.Text(t, "#device-status ul.alarms li.alarm"), forced("nl"))
	agos("nl", "#device-status ul.alarms")

	// The acknowledgement form: when, and how long ago.
	phone.Do(t, chromedp.Click(chromedp.CSS("#device-status a.ack")))
	phone.WaitFor(t, `!!document.querySelector("#note")`, 10*time.Second)
	look("ack-phone")
	dark("ack")
	assert.Regexp(t, agoPattern("nl"), strings.TrimSpace(phone.Text(t, "dl.ack-alarm dd .ago")))

	// In French, with a click on the language.
	phone.Do(t, chromedp.Click(chromedp.CSS(`nav.langs a[hreflang="fr"]`)))
	phone.WaitFor(t, `document.documentElement.lang === "fr" && !!document.querySelector("#note")`, 10*time.Second)
	assert.Regexp(t, agoPattern("fr"), strings.TrimSpace(phone.Text(t, "dl.ack-alarm dd .ago")))
	phone.Do(t, chromedp.Navigate(base+"/staff/devices/"+lockerID))
	phone.WaitFor(t, `document.documentElement.lang === "fr" && !!document.querySelector("#device-status .next-steps")`, 10*time.Second)
	look("device-phone-fr")
	dark("device fr")
	assert.True(t, strings.HasPrefix(phone.Text(t, "#device-status .next-steps li"), web.Text("fr", "next.what", "what", web.Text("fr", "alarm.forced_door"))))
	agos("fr", "#device-status ul.alarms")

	// A laptop set to light stays light.
	laptop.Do(t, chromedp.Navigate(base+"/staff/devices"))
	laptop.WaitFor(t, `!!document.querySelector("#fleet-rows tr.has-alarm")`, 10*time.Second)
	assert.Greater(t, luminance(t, laptop, "body", "backgroundColor"), 0.9, "light as set")
	assert.Less(t, luminance(t, laptop, "main", "color"), 0.05)
}

// TestAlarmClearedWhileAcknowledgingLeadsBackToTheDevice: after a repair
// at night, on a phone, the technician opens the acknowledgement form of
// the full journal disk he just made room on; meanwhile the device clears
// it. He
// sends the form: the page says the alarm is no longer open and nothing
// was recorded (409, as before), and a link goes back to the device's
// page (before, the only link went to the start page, and the device had
// to be found again in the fleet); with a click on it the device's page
// says no alarm is open and nothing needs doing. In Dutch and French,
// zero axe-core violations, nothing scrolling sideways, also dark.
func TestAlarmClearedWhileAcknowledgingLeadsBackToTheDevice(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	_, phone := techPhone(t, e)
	darkScheme(t, phone)
	base := e.b.URL("")
	for _, lang := range []string{"nl", "fr"} {
		id := e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmJournalFull})
		phone.Do(t, chromedp.Navigate(base+"/staff/devices/"+lockerID+"?lang="+lang))
		phone.WaitFor(t, `document.documentElement.lang === "`+lang+`" && !!document.querySelector('#device-status a.ack[href$="/`+id+`/ack"]')`, 10*time.Second)
		phone.Do(t, chromedp.Click(chromedp.CSS("#device-status a.ack")))
		phone.WaitFor(t, `!!document.querySelector("#note")`, 10*time.Second)
		e.raise(wire.Event{Kind: wire.EvAlarmCleared, Alarm: wire.AlarmJournalFull})
		phone.Do(t, chromedp.SendKeys(chromedp.CSS("#note"), "old logs removed\r"))
		phone.WaitFor(t, `!!document.querySelector(".error-summary")`, 10*time.Second)
		lookAt(t, phone, "dark-ack-cleared-"+lang)
		assert.Contains(t, phone.Text(t, ".error-summary"), web.Text(lang, "error.alarm_not_open"))
		back := `main a[href="/staff/devices/` + lockerID + `"]`
		require.Equal(t, 1, evalInt(t, phone, `document.querySelectorAll('`+back+`').length`), "a way back to the device")
		assert.Equal(t, web.Text(lang, "error.back_device", "device", "Kluis inkomhal"), phone.Text(t, back))
		phone.Do(t, chromedp.Click(chromedp.CSS(back)))
		phone.WaitFor(t, `location.pathname === "/staff/devices/`+lockerID+`" && !!document.querySelector("#device-status")`, 10*time.Second)
		assert.Zero(t, evalInt(t, phone, `document.querySelectorAll("#device-status li.alarm, #device-status .next-steps").length`), "nothing open, nothing to do")
		assert.Contains(t, phone.Text(t, "#device-status"), web.Text(lang, "none.alarms"))
	}
	assert.NotContains(t, e.audit("device:"+lockerID), `"action":"alarm.acknowledged"`, "nothing recorded")
}

// TestDevicePageSeesItsDeviceGoQuiet: a technician watches a device's
// page after a repair (on a phone, dark) while a laptop shows the fleet.
// The device's kluisd hangs: still connected, no heartbeat any more.
// Nothing about the device changes in the database, yet three minutes
// later it is late: the fleet page says so (it is read again every 30
// seconds), and so must the device's page, with what to do first; before,
// the device's page was only read again when something about the device
// changed, so it said "online" all night beside the fleet's "late" (and
// its "how long ago" stood still). On the server's clock, which the test
// moves on.
func TestDevicePageSeesItsDeviceGoQuiet(t *testing.T) {
	t.Parallel() // its own backend and database
	clock := &fakeClock{t: time.Now()}
	e := newEnv(t, server.Options{Clock: clock.Now})
	b, phone := techPhone(t, e)
	darkScheme(t, phone)
	laptop := b.NewTab(t, 1366, 768)
	base := e.b.URL("")
	phone.Do(t, chromedp.Navigate(base+"/staff/devices/"+lockerID))
	phone.WaitFor(t, `document.body.hasAttribute("data-live-updates") && !!document.querySelector("#device-status .badge.on")`, 10*time.Second)
	laptop.Do(t, chromedp.Navigate(base+"/staff/devices"))
	laptop.WaitFor(t, `document.body.hasAttribute("data-live-updates") && !!document.querySelector("#fleet-rows tr[data-status~=online]")`, 10*time.Second)

	clock.Add(service.LateAfter + time.Minute)
	laptop.WaitFor(t, `!!document.querySelector("#fleet-rows tr[data-status~=late]")`, 15*time.Second)
	phone.WaitFor(t, `!!document.querySelector("#device-status .badge.warn")`, 15*time.Second)
	lookAt(t, phone, "dark-device-late")
	assert.Contains(t, phone.Text(t, "#device-status dl.details"), web.Text("nl", "status.late"))
	assert.True(t, strings.HasPrefix(phone.Text(t, "#device-status .next-steps li"), web.Text("nl", "next.what", "what", web.Text("nl", "status.late"))))

	// A remote open now warns that the hung device will likely not carry
	// it out (before, only an offline device or a board down was warned
	// of), in the form and in the confirmation.
	link := `#c-3 a[href$="/compartments/3/open"]`
	phone.Do(t, chromedp.Click(chromedp.CSS(link)))
	phone.WaitFor(t, `!!document.querySelector("#reason")`, 10*time.Second)
	lookAt(t, phone, "dark-open-late-form")
	late := strings.SplitN(web.Text("nl", "open.late"), "{time}", 2)
	require.Len(t, late, 2)
	assert.Contains(t, phone.Text(t, "main"), late[0])
	assert.Contains(t, phone.Text(t, "main"), late[1])
	assert.NotContains(t, phone.Text(t, "main"), strings.SplitN(web.Text("nl", "open.offline"), "{time}", 2)[0])
	phone.Do(t, chromedp.SendKeys(chromedp.CSS("#reason"), "test after repair"), chromedp.Click(chromedp.CSS("button.primary")))
	phone.WaitFor(t, `!!document.querySelector(".confirm")`, 10*time.Second)
	assert.Contains(t, phone.Text(t, ".confirm"), late[0])
	for _, lang := range web.Languages {
		assert.Contains(t, web.Text(lang, "open.late"), "{time}", lang)
	}
}

// TestFleetTabTitleCountsAlarmsNobodyAcknowledged: the fleet page left
// open in a background tab on a desktop says in its title how many alarms
// nobody acknowledged ("(2) Toestellen · ..."), kept up to date by the
// live stream without a reload: a new alarm raises the count, one the
// device clears lowers it, none leaves the plain title. Before, the title
// said "Toestellen" whatever happened, and a new alarm showed only on the
// page itself.
func TestFleetTabTitleCountsAlarmsNobodyAcknowledged(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	b := browsertest.New(t, browsertest.Options{})
	laptop := b.NewTab(t, 1366, 768)
	base := e.b.URL("")
	login(t, laptop, base, e.users["technician"], password("technician"))
	plain := web.Text("nl", "devices.title") + " · " + web.Text("nl", "app.name")
	counted := func(n int) string {
		return web.Text("nl", "devices.title_alarms", "n", n) + " · " + web.Text("nl", "app.name")
	}
	title := func() string { return evalString(t, laptop, `document.title`) }
	laptop.Do(t, chromedp.Navigate(base+"/staff/devices"))
	laptop.WaitFor(t, `document.body.hasAttribute("data-live-updates")`, 10*time.Second)
	assert.Equal(t, plain, title())

	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, Addr: &wire.Address{Board: 0, Channel: 1}})
	laptop.WaitFor(t, `document.title === `+jsQuote(counted(1)), 10*time.Second)
	door := &wire.Address{Board: 0, Channel: 5}
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmDoorLeftOpen, Addr: door})
	laptop.WaitFor(t, `document.title === `+jsQuote(counted(2)), 10*time.Second)
	e.raise(wire.Event{Kind: wire.EvAlarmCleared, Alarm: wire.AlarmDoorLeftOpen, Addr: door})
	laptop.WaitFor(t, `document.title === `+jsQuote(counted(1)), 10*time.Second)
	// Loaded afresh, the same.
	laptop.Do(t, chromedp.Navigate(base+"/staff/devices"))
	laptop.WaitFor(t, `!!document.querySelector("#fleet-rows tr.has-alarm")`, 10*time.Second)
	assert.Equal(t, counted(1), title())
	lookAt(t, laptop, "fleet-title-laptop")
	for _, lang := range web.Languages {
		assert.Contains(t, web.Text(lang, "devices.title_alarms", "n", 3), "3", lang)
		assert.Contains(t, web.Text(lang, "devices.title_alarms", "n", 3), web.Text(lang, "devices.title"), lang)
	}
}

// jsQuote is s as a JavaScript string literal.
func jsQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
