package web_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/backend/web"
	"kluis/controller/wire"
	"kluis/deploy/dev/browsertest"
)

// TestKeyboardReachesTheFirstDeviceQuickly: a technician with the
// keyboard only, on a laptop (light) and a phone (dark), on the fleet
// page: Tab, Tab gives a second skip link, "Naar de toestellen" (visible
// once focused), Enter, Tab lands on the first device's link (it took
// about 16 Tabs through the header, the filters and ten sort buttons, and
// then the focus went to the page: the table re-sorted its rows at every
// focus change). The live updates keep working after it (a new alarm
// arrives).
// In French too. Zero axe-core violations; screenshots
// var/screenshots/console/night-keys-*.
func TestKeyboardReachesTheFirstDeviceQuickly(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	b, phone := techPhone(t, e)
	laptop := b.NewTab(t, 1366, 768)
	darkScheme(t, phone)
	base := e.b.URL("")
	active := `(function(){var a=document.activeElement; return a.tagName.toLowerCase() + (a.id ? "#" + a.id : "") + (a.getAttribute("href") ? "[" + a.getAttribute("href") + "]" : "")})()`
	for _, v := range []struct {
		tab  *browsertest.Tab
		name string
		lang string
	}{{laptop, "laptop", "nl"}, {phone, "phone-dark", "nl"}, {laptop, "laptop-fr", "fr"}} {
		tab := v.tab
		tab.Do(t, chromedp.Navigate(base+"/staff/devices?lang="+v.lang))
		tab.WaitFor(t, `document.body.hasAttribute("data-live-updates") && !!document.querySelector("#fleet-rows a")`, 10*time.Second)
		first := evalString(t, tab, `document.querySelector("#fleet-rows tr:not([hidden]) a").getAttribute("href")`)
		tab.Do(t, chromedp.KeyEvent(kb.Tab))
		assert.Equal(t, "a[#main]", evalString(t, tab, active), v.name)
		tab.Do(t, chromedp.KeyEvent(kb.Tab))
		require.Equal(t, "a[#fleet-rows]", evalString(t, tab, active), v.name)
		assert.Equal(t, web.Text(v.lang, "devices.skip"), tab.Text(t, `a.skip[href="#fleet-rows"]`), v.name)
		assert.GreaterOrEqual(t, evalInt(t, tab, `Math.round(document.activeElement.getBoundingClientRect().left)`), 0, "%s: seen once focused", v.name)
		tab.Screenshot(t, "console/night-keys-skip-"+v.name)
		tab.Do(t, chromedp.KeyEvent(kb.Enter))
		tab.Do(t, chromedp.KeyEvent(kb.Tab))
		assert.Equal(t, "a["+first+"]", evalString(t, tab, active), "%s: the first device after 4 keys", v.name)
		lookAt(t, tab, "keys-fleet-"+v.name)
		// The long way, through the last column's sort button, lands
		// there too: the focus stays on the link (the table re-sorted its
		// rows at every focus change, which sent the focus to the page).
		tab.Do(t, chromedp.Focus(chromedp.CSS(`button[data-sort="9"]`)), chromedp.KeyEvent(kb.Tab))
		time.Sleep(100 * time.Millisecond) // the re-sort runs after a focus change
		assert.Equal(t, "a["+first+"]", evalString(t, tab, active), "%s: Tab from the last sort button", v.name)
	}
	// The stream still updates the rows once the focus has left them.
	laptop.Do(t, chromedp.KeyEvent(kb.Tab))
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, Addr: &wire.Address{Board: 0, Channel: 1}})
	laptop.Do(t, chromedp.Click(chromedp.CSS("h1")))
	laptop.WaitFor(t, `!!document.querySelector("#fleet-rows tr.has-alarm")`, 10*time.Second)
}
