package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/backend/web"
)

// TestLateDeviceSaysWhenAndAsksBeforeOpening: k1's kluisd hangs (still
// connected, its last heartbeat ten minutes old). A technician on a phone,
// with real clicks from the fleet page: the lock boards table says when
// the boards were reported (before, "online" with no time, as if now);
// above the compartments, the page says that a remote open will likely not
// be carried out and why the open buttons are still there (each button
// described by it); the form and the confirmation warn, and the
// confirmation's button says "anyway"; confirmed, the open is sent. On
// time, none of this is said. nl (dark, then light), the page in fr; axe
// on every page; screenshots var/screenshots/console/night-late-*.
func TestLateDeviceSaysWhenAndAsksBeforeOpening(t *testing.T) {
	t.Parallel() // its own backend and database
	clock := &heldClock{}
	e := newEnv(t, server.Options{Clock: clock.Now})
	_, phone := techPhone(t, e)
	base := e.b.URL("")

	// On time: nothing said.
	fleetToDevice(t, phone, base, "#device-boards tbody tr")
	assert.Equal(t, 0, evalInt(t, phone, `document.querySelectorAll("#open-warn, #boards-reported, [aria-describedby=open-warn]").length`))

	// kluisd hangs: no heartbeat for ten minutes, on the server's clock,
	// held from here (the day the page writes times against stays one).
	pool := e.pool()
	now := clock.Hold()
	var hb time.Time
	require.NoError(t, pool.QueryRow(context.Background(), `UPDATE device_presence SET changed_at = $2::timestamptz - interval '1 hour',
		last_heartbeat_at = $2::timestamptz - interval '10 minutes' WHERE device_id = $1 RETURNING last_heartbeat_at`, lockerID, now).Scan(&hb))
	at, atFr := consoleTime(t, "nl", hb, now), consoleTime(t, "fr", hb, now)

	darkScheme(t, phone)
	fleetToDevice(t, phone, base, "#device-status .badge.warn")
	lookAt(t, phone, "late-device-dark")
	assert.Equal(t, web.Text("nl", "device.boards_reported", "time", at), phone.Text(t, "#boards-reported"))
	assert.Equal(t, "boards-reported", evalString(t, phone, `document.querySelector("#device-boards .table-wrap").getAttribute("aria-describedby")`))
	assert.Equal(t, web.Text("nl", "device.open_late", "time", at), phone.Text(t, "#open-warn"))
	assert.Equal(t, 0, evalInt(t, phone, `Array.from(document.querySelectorAll('#device-comps a[href$="/open"]')).filter(a => a.getAttribute("aria-describedby") !== "open-warn").length`),
		"every open button says why it is there")
	assert.Equal(t, 6, evalInt(t, phone, `document.querySelectorAll('#device-comps a[href$="/open"]').length`))

	colorScheme(t, phone, "light")
	phone.Do(t, chromedp.Click(chromedp.CSS(`#c-3 a[href$="/compartments/3/open"]`)))
	phone.WaitFor(t, `!!document.querySelector("#reason")`, 10*time.Second)
	lookAt(t, phone, "late-open-form")
	late := web.Text("nl", "open.late", "time", at)
	assert.Contains(t, phone.Text(t, "main"), late)
	phone.Do(t, chromedp.SendKeys(chromedp.CSS("#reason"), "storing 4411"), chromedp.Click(chromedp.CSS("button.primary")))
	phone.WaitFor(t, `!!document.querySelector(".confirm")`, 10*time.Second)
	lookAt(t, phone, "late-open-confirm")
	assert.Contains(t, phone.Text(t, ".confirm"), late)
	assert.Equal(t, web.Text("nl", "open.do_anyway", "n", 3), phone.Text(t, "button.danger"))
	assert.Equal(t, 0, e.dev.openCount(), "nothing sent before the confirmation")
	phone.Do(t, chromedp.Click(chromedp.CSS("button.danger")))
	phone.WaitFor(t, `location.pathname === "/staff/devices/`+lockerID+`" && !!document.querySelector(".notice")`, 15*time.Second)
	assert.Equal(t, 1, e.dev.openCount(), "sent once confirmed")

	phone.Do(t, chromedp.Click(chromedp.CSS(`nav.langs a[hreflang="fr"]`)))
	phone.WaitFor(t, `document.documentElement.lang === "fr" && !!document.querySelector("#open-warn")`, 10*time.Second)
	lookAt(t, phone, "late-device-fr")
	assert.Equal(t, web.Text("fr", "device.boards_reported", "time", atFr), phone.Text(t, "#boards-reported"))
	assert.True(t, strings.Contains(phone.Text(t, "#open-warn"), "depuis "+atFr+"\u00a0:"), phone.Text(t, "#open-warn"))
}
