package web_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"

	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/web"
	"kluis/controller/wire"
	"kluis/deploy/dev/browsertest"
)

// A technician on a 390 px phone: the fleet page's filters are folded
// behind their summary, so the devices start on the first screen; opened
// with a tap; on a desktop they stand open. A device's timeline switched
// to its alarms only shows the alarm, not the door events, and stays so
// while it updates live (a new alarm appears, a door event does not).
// Zero axe-core WCAG 2.1 A/AA violations; screenshots under
// var/screenshots/console/.
func TestFleetFiltersFoldAndAlarmsOnlyTimelineInBrowser(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	e.raise(wire.Event{Kind: wire.EvDoorOpened, Addr: &wire.Address{Board: 0, Channel: 2}})
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, Addr: &wire.Address{Board: 0, Channel: 1}})
	b := browsertest.New(t, browsertest.Options{})
	base := e.b.URL("")
	phone := b.NewTab(t, 390, 844)
	login(t, phone, base, e.users[auth.RoleTechnician], password(auth.RoleTechnician))
	phone.Do(t, chromedp.Navigate(base+"/staff/devices"))
	phone.WaitFor(t, `!!document.querySelector("#fleet-rows tr")`, 20*time.Second)
	assert.Equal(t, "false", evalString(t, phone, `String(document.getElementById("fleet-filters").open)`), "folded on a phone")
	assert.Equal(t, web.Text("nl", "devices.filters"), phone.Text(t, "#fleet-filters summary"))
	assert.Less(t, evalInt(t, phone, `Math.round(document.querySelector("table.fleet").getBoundingClientRect().top)`), 844, "the devices start on the first screen")
	phone.CheckAxe(t, "fleet, filters folded, phone")
	phone.Screenshot(t, "console/fleet-filters-folded-phone")
	phone.Do(t, chromedp.Click(chromedp.CSS("#fleet-filters summary")))
	phone.WaitFor(t, `document.getElementById("fleet-filters").open && document.getElementById("filter").offsetHeight > 0`, 10*time.Second)
	phone.CheckAxe(t, "fleet, filters open, phone")
	noSideScroll(t, phone, "fleet filters open")
	phone.Screenshot(t, "console/fleet-filters-open-phone")

	desktop := b.NewTab(t, 1280, 800)
	desktop.Do(t, chromedp.Navigate(base+"/staff/devices"))
	desktop.WaitFor(t, `!!document.querySelector("#fleet-rows tr") && document.getElementById("fleet-filters").open`, 20*time.Second)

	// The device's timeline, its alarms only.
	phone.Do(t, chromedp.Navigate(base+"/staff/devices/"+lockerID))
	phone.WaitFor(t, `!!document.querySelector("#device-timeline li")`, 20*time.Second)
	door := web.Text("nl", "timeline.device.door_opened", "n", 3)
	assert.Contains(t, phone.Text(t, "#device-timeline"), door)
	phone.Do(t, chromedp.Click(chromedp.CSS(`.timeline-view a[href*="timeline=alarms"]`)))
	phone.WaitFor(t, `location.search === "?timeline=alarms" && !!document.querySelector("#device-timeline li")`, 20*time.Second)
	assert.NotContains(t, phone.Text(t, "#device-timeline"), door)
	assert.Equal(t, 1, evalInt(t, phone, `document.querySelectorAll("#device-timeline li").length`))
	assert.Equal(t, 1, evalInt(t, phone, `document.querySelectorAll("#device-timeline li.alarm").length`))
	assert.Equal(t, web.Text("nl", "device.timeline_alarms"), phone.Text(t, `.timeline-view a[aria-current="page"]`))
	phone.CheckAxe(t, "device timeline, alarms only, phone")
	noSideScroll(t, phone, "device timeline alarms only")
	phone.Screenshot(t, "console/device-timeline-alarms-phone")
	// Live: a door event does not come in, a new alarm does.
	e.raise(wire.Event{Kind: wire.EvDoorClosed, Addr: &wire.Address{Board: 0, Channel: 2}})
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmDoorLeftOpen, Addr: &wire.Address{Board: 0, Channel: 4}})
	phone.WaitFor(t, `document.querySelectorAll("#device-timeline li").length === 2`, 30*time.Second)
	assert.NotContains(t, phone.Text(t, "#device-timeline"), web.Text("nl", "timeline.device.door_closed", "n", 3))
}
