package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"

	"kluis/backend/server"
	"kluis/backend/web"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// TestBoardGoneFromTheHeartbeatIsShownByItsAlarm: kluisd's heartbeat no
// longer lists lock board 1 (address 0), and its board_unreachable alarm
// is open. A technician on a phone, dark then light, clicks from the fleet
// page to the device: the boards table has the board's row, offline, with
// its alarm and that the heartbeat did not report it; the remote open of
// compartment 3 (on that board) warns, on the form and on the
// confirmation, that the board does not answer. nl, then the form in fr.
// Zero axe-core violations; screenshots var/screenshots/console/night-board-gone-*.
func TestBoardGoneFromTheHeartbeatIsShownByItsAlarm(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	e.dev.publish(wire.KindHeartbeat, &wire.Heartbeat{V: 1, At: time.Now().UTC(), UptimeS: 3600, Software: "kluisd 1.4.2"})
	pool := e.pool()
	testenv.Eventually(t, "the heartbeat without boards", func() bool {
		var n int
		_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM device_diagnostics
			WHERE device_id = $1 AND coalesce(jsonb_array_length(heartbeat->'boards'), 0) = 0`, lockerID).Scan(&n)
		return n == 1
	})
	board := 0
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmBoardUnreachable, Board: &board})

	_, phone := techPhone(t, e)
	base := e.b.URL("")
	darkScheme(t, phone)
	fleetToDevice(t, phone, base, "#device-boards")
	lookAt(t, phone, "board-gone-device-dark")
	row := phone.Text(t, "#device-boards tbody tr")
	assert.Contains(t, row, web.Text("nl", "status.offline"))
	assert.Contains(t, row, strings.SplitN(web.Text("nl", "board.alarm_open"), "{time}", 2)[0])
	assert.Contains(t, row, web.Text("nl", "board.not_reported"))
	assert.Equal(t, "1", phone.Text(t, "#device-boards tbody tr th"))
	assert.Equal(t, web.Text("nl", "unknown"), strings.TrimSpace(evalString(t, phone, `document.querySelector("#c-3 td:nth-of-type(3)").innerText`)),
		"the doors of a board known from its alarm are unknown")

	colorScheme(t, phone, "light")
	phone.Do(t, chromedp.Click(chromedp.CSS(`#c-3 a[href$="/compartments/3/open"]`)))
	phone.WaitFor(t, `!!document.querySelector("#reason")`, 10*time.Second)
	lookAt(t, phone, "board-gone-open-form")
	warn := web.Text("nl", "open.board_unreachable", "n", 1)
	assert.Contains(t, phone.Text(t, "main"), warn)
	phone.Do(t, chromedp.SendKeys(chromedp.CSS("#reason"), "storing 4411"), chromedp.Click(chromedp.CSS("button.primary")))
	phone.WaitFor(t, `!!document.querySelector(".confirm")`, 10*time.Second)
	lookAt(t, phone, "board-gone-open-confirm")
	assert.Contains(t, phone.Text(t, ".confirm"), warn)

	// The form again, in French.
	phone.Do(t, chromedp.Navigate(base+"/staff/devices/"+lockerID+"/compartments/3/open?lang=fr"))
	phone.WaitFor(t, `document.documentElement.lang === "fr" && !!document.querySelector("main .outlook")`, 10*time.Second)
	lookAt(t, phone, "board-gone-open-form-fr")
	assert.Contains(t, phone.Text(t, "main"), web.Text("fr", "open.board_unreachable", "n", 1))
	assert.Equal(t, 0, e.dev.openCount(), "nothing opened")
}
