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

// A technician's device pages in headless Chromium, at desktop and phone
// widths, in German: the refused code's reason and the unreachable board
// in words on the timeline, the automaton's slots without a door column.
// Zero axe-core WCAG 2.1 A/AA violations; screenshots under
// var/screenshots/console/.
func TestDevicePageInWordsInBrowser(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	e.auditLocker("device:"+lockerID, "code.denied", map[string]any{"device": lockerID, "method": "qr", "reason": "expired"})
	board := 0
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmBoardUnreachable, Board: &board})
	b := browsertest.New(t, browsertest.Options{})
	base := e.b.URL("")
	for i, v := range []struct {
		name string
		w, h int64
	}{{"desktop", 1280, 800}, {"phone", 390, 844}} {
		tab := b.NewTab(t, v.w, v.h)
		if i == 0 { // the tabs share the browser's cookies
			login(t, tab, base, e.users[auth.RoleTechnician], password(auth.RoleTechnician))
		}
		tab.Do(t, chromedp.Navigate(base+"/staff/devices/"+lockerID+"?lang=de"))
		tab.WaitFor(t, `!!document.querySelector("#device-timeline li")`, 20*time.Second)
		line := web.Text("de", "timeline.code.denied") + " · " + web.Text("de", "timeline.reason", "reason", web.Text("de", "reason.expired"))
		assert.Contains(t, tab.Text(t, "#device-timeline"), line)
		assert.Contains(t, tab.Text(t, "#device-timeline"), web.Text("de", "alarm.at_board", "alarm", web.Text("de", "alarm.board_unreachable"), "n", 1))
		tab.CheckAxe(t, "device timeline in words "+v.name)
		noSideScroll(t, tab, "device timeline "+v.name)
		tab.Screenshot(t, "console/device-timeline-words-"+v.name)
		tab.Do(t, chromedp.Navigate(base+"/staff/devices/"+autoID+"?lang=de"))
		tab.WaitFor(t, `!!document.querySelector("table.comps")`, 20*time.Second)
		assert.Zero(t, evalInt(t, tab, `Array.from(document.querySelectorAll("table.comps th")).filter(th => th.textContent === `+"`"+web.Text("de", "comp.door")+"`"+`).length`))
		tab.CheckAxe(t, "automaton slots "+v.name)
		noSideScroll(t, tab, "automaton slots "+v.name)
		tab.Screenshot(t, "console/automaton-slots-"+v.name)
	}
}
