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
)

// TestReserveAtAnUnfitDeviceInBrowser: counter staff in headless Chromium
// reserve a compartment for a registered document while the only online
// locker has a forced door: the device list marks both devices with what
// is wrong; "Kluis laten kiezen" is refused in the form (the message tied
// to the list, nothing changed); the locker chosen by hand is reserved
// and the page warns. A technician's device page has no open button for
// the loaded compartment. Each state with zero axe-core WCAG 2.1 A/AA
// violations; screenshots under var/screenshots/console/.
func TestReserveAtAnUnfitDeviceInBrowser(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	loaded := e.register("591-0000005-01", false)
	n := e.compartmentOf(loaded)
	require.NoError(t, e.b.Call(context.Background(), "POST", "/api/v1/documents/"+loaded+"/load", nil, nil))
	id := e.registerOnly("591-0000005-02", false)
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, Addr: &wire.Address{Board: 0, Channel: 5}})

	b := browsertest.New(t, browsertest.Options{})
	tab := b.NewTab(t, 1280, 800)
	base := e.b.URL("")
	login(t, tab, base, e.users[auth.RoleStaff], password(auth.RoleStaff))
	tab.Do(t, chromedp.Navigate(base+"/staff/documents/"+id))
	tab.WaitFor(t, `!!document.querySelector("#a-device")`, 10*time.Second)
	forced := web.Text("nl", "alarm.forced_door")
	opts := evalString(t, tab, `Array.from(document.querySelectorAll("#a-device option")).map(o => o.textContent).join("\n")`)
	assert.Contains(t, opts, web.Text("nl", "device.unfit_option", "device", "Kluis inkomhal", "problems", forced))
	assert.Contains(t, opts, web.Text("nl", "device.unfit_option", "device", "Automaat", "problems", web.Text("nl", "status.never")))
	tab.CheckAxe(t, "reserve form, devices marked")
	tab.Screenshot(t, "console/reserve-unfit-list-desktop")

	// Let Kluis choose (the first option): refused in the form.
	tab.Do(t, chromedp.Click(chromedp.CSS(`form[action$="/reserve"] button`)))
	tab.WaitFor(t, `!!document.querySelector("#e-device")`, 10*time.Second)
	assert.Equal(t, web.Text("nl", "error.no_online_device"), strings.TrimSpace(tab.Text(t, "#e-device")))
	assert.Equal(t, "e-device", evalString(t, tab, `document.getElementById("a-device").getAttribute("aria-describedby")`))
	assert.Equal(t, "registered", e.document(id)["state"])
	tab.CheckAxe(t, "reserve refused in the form")
	noSideScroll(t, tab, "reserve refused")
	tab.Screenshot(t, "console/reserve-refused-desktop")

	// The locker by hand: asked first, the focus on the confirmation; "No"
	// changes nothing; "Yes" reserves, and the page warns.
	hand := func() {
		tab.Do(t, chromedp.SetValue(chromedp.CSS("#a-device"), lockerID), chromedp.Click(chromedp.CSS(`form[action$="/reserve"] button`)))
		tab.WaitFor(t, `!!document.activeElement.closest("#unfit-confirm button")`, 10*time.Second)
	}
	hand()
	assert.Equal(t, web.Text("nl", "reserve.unfit_confirm", "device", "Kluis inkomhal", "problems", forced), tab.Text(t, "#unfit-confirm p"))
	tab.CheckAxe(t, "reserve at an unfit device, asked")
	tab.Screenshot(t, "console/reserve-unfit-confirm-desktop")
	phone := b.NewTab(t, 390, 844)
	phone.Do(t, chromedp.Navigate(base+"/staff/documents/"+id))
	phone.WaitFor(t, `!!document.querySelector("#a-device")`, 10*time.Second)
	phone.Do(t, chromedp.SetValue(chromedp.CSS("#a-device"), lockerID), chromedp.Click(chromedp.CSS(`form[action$="/reserve"] button`)))
	phone.WaitFor(t, `!!document.activeElement.closest("#unfit-confirm button")`, 10*time.Second)
	phone.CheckAxe(t, "reserve at an unfit device, asked, phone")
	noSideScroll(t, phone, "reserve at an unfit device, asked, phone")
	phone.Screenshot(t, "console/reserve-unfit-confirm-phone")
	assert.Equal(t, "registered", e.document(id)["state"], "nothing before the confirmation")
	tab.Do(t, chromedp.Click(chromedp.CSS("#unfit-confirm a")))
	tab.WaitFor(t, `!document.querySelector("#unfit-confirm") && !!document.querySelector("#a-device")`, 10*time.Second)
	assert.Equal(t, "registered", e.document(id)["state"])
	hand()
	tab.Do(t, chromedp.KeyEvent("\r"))
	tab.WaitFor(t, `!!document.querySelector("#device-unfit")`, 10*time.Second)
	assert.Equal(t, web.Text("nl", "document.device_unfit", "device", "Kluis inkomhal", "problems", forced), strings.TrimSpace(tab.Text(t, "#device-unfit")))
	assert.Equal(t, "reserved", e.document(id)["state"])
	tab.CheckAxe(t, "reserved at an unfit device")
	tab.Screenshot(t, "console/reserve-unfit-warning-desktop")

	// A technician: no open button for the loaded compartment.
	tab.Do(t, chromedp.Click(chromedp.CSS(`form[action="/staff/logout"] button`)))
	tab.WaitFor(t, `location.pathname === "/staff/login"`, 10*time.Second)
	tech := tab
	login(t, tech, base, e.users[auth.RoleTechnician], password(auth.RoleTechnician))
	tech.Do(t, chromedp.Navigate(base+"/staff/devices/"+lockerID))
	tech.WaitFor(t, `!!document.querySelector("#c-1")`, 10*time.Second)
	assert.Zero(t, evalInt(t, tech, `document.querySelectorAll('#c-`+itoa(int64(n))+` a[href$="/open"]').length`))
	assert.Equal(t, 5, evalInt(t, tech, `document.querySelectorAll('a[href$="/open"]').length`), "the other five")
	tech.CheckAxe(t, "device page, technician")
	tech.Screenshot(t, "console/device-occupied-technician-desktop")
}
