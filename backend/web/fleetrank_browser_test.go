package web_test

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/backend/web"
	"kluis/controller/wire"
	"kluis/deploy/dev/browsertest"
	"kluis/deploy/dev/testenv"
)

// ackedJournalFull has k1 raise journal_full and a technician
// acknowledge it (someone handles it).
func (e *env) ackedJournalFull() {
	e.t.Helper()
	id := e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmJournalFull})
	require.NoError(e.t, e.b.Call(context.Background(), "POST", "/api/v1/devices/"+lockerID+"/alarms/"+id+"/ack",
		map[string]string{"note": "schijf wordt vervangen"}, nil))
}

// TestOfflineDeviceRanksBeforeAcknowledgedAlarms: k1's journal disk is
// full and a technician acknowledged it (someone handles it); k2, seen
// before, went offline without an alarm (nobody has taken that on). On
// the fleet page, by default, k2 comes first, with its orange mark, and
// k1 after it (before, k1 came first); the automaton that never connected
// last. A laptop (1366x768) light, a phone dark; axe; screenshots
// var/screenshots/console/night-rank-*.
func TestOfflineDeviceRanksBeforeAcknowledgedAlarms(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	ctx := context.Background()
	e.ackedJournalFull()
	require.NoError(t, e.b.Call(ctx, "POST", "/api/v1/devices", map[string]any{"id": "k2", "site_id": siteID, "kind": "locker",
		"name": "Kluis tweede verdieping", "compartments": []map[string]any{{"number": 1, "board": 0, "channel": 0, "size": "M", "height_cm": 100}}}, nil))
	pw, err := e.b.DevicePassword(ctx, "k2")
	require.NoError(t, err)
	k2 := connectDevice(t, e.b.Broker, "k2", pw)
	k2.publish(wire.KindPresence, &wire.Presence{V: 1, State: wire.Online, Software: "kluisd 1.4.2"})
	k2.publish(wire.KindPresence, &wire.Presence{V: 1, State: wire.Offline, Software: "kluisd 1.4.2"})
	pool := e.pool()
	testenv.Eventually(t, "k2 offline", func() bool {
		var state string
		_ = pool.QueryRow(ctx, `SELECT state FROM device_presence WHERE device_id = 'k2'`).Scan(&state)
		return state == string(wire.Offline)
	})

	b, phone := techPhone(t, e)
	laptop := b.NewTab(t, 1366, 768)
	darkScheme(t, phone)
	base := e.b.URL("")
	order := `Array.from(document.querySelectorAll("#fleet-rows tr")).map(r => r.getAttribute("data-text").split(" ")[0] + ":" + r.className).join(" ")`
	for _, v := range []struct {
		tab  *browsertest.Tab
		name string
	}{{laptop, "laptop"}, {phone, "phone-dark"}} {
		tab := v.tab
		tab.Do(t, chromedp.Navigate(base+"/staff/devices"))
		tab.WaitFor(t, `document.body.hasAttribute("data-live-updates") && document.querySelectorAll("#fleet-rows tr").length === 3`, 10*time.Second)
		lookAt(t, tab, "rank-fleet-"+v.name)
		assert.Equal(t, "k2:attention k1:alarm-acked a1:", evalString(t, tab, order), v.name)
		assert.Equal(t, web.Text("nl", "devices.sort.note"), evalString(t, tab, `document.getElementById("sort-note").textContent`), "%s: folded on a phone", v.name)
	}
}

// TestOfflineDeviceWithAcknowledgedAlarmsShowsOffline: k1's journal disk
// is full and a technician acknowledged it, then k1 goes offline. On the
// fleet page its row is marked as offline needs attention (the orange
// solid mark, as its rank already said: an offline device nobody has taken
// on), not with the dashed red mark of a device whose alarms are being
// handled; its acknowledged alarm stays listed. Before, the dashed mark
// won. A laptop (1366x768) light, a phone dark; axe; screenshots
// var/screenshots/console/night-offline-acked-*.
func TestOfflineDeviceWithAcknowledgedAlarmsShowsOffline(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	e.ackedJournalFull()
	e.goOffline()

	b, phone := techPhone(t, e)
	laptop := b.NewTab(t, 1366, 768)
	darkScheme(t, phone)
	row := `#fleet-rows tr[data-text^="` + lockerID + ` "]`
	for _, v := range []struct {
		tab  *browsertest.Tab
		name string
		mark string // the element that carries the row's mark at this width
	}{{laptop, "laptop", row + ` th[scope="row"]`}, {phone, "phone-dark", row}} {
		tab := v.tab
		tab.Do(t, chromedp.Navigate(e.b.URL("/staff/devices")))
		tab.WaitFor(t, `document.body.hasAttribute("data-live-updates") && !!document.querySelector('`+row+` .badge.off')`, 10*time.Second)
		lookAt(t, tab, "offline-acked-"+v.name)
		assert.Equal(t, "attention", evalString(t, tab, `document.querySelector('`+row+`').className`), v.name)
		assert.Equal(t, "solid", evalString(t, tab, `getComputedStyle(document.querySelector('`+v.mark+`')).borderLeftStyle`), v.name)
		assert.Equal(t, web.Text("nl", "status.offline"), evalString(t, tab, `document.querySelector('`+row+` .badge.off').textContent`), v.name)
		assert.Equal(t, 1, evalInt(t, tab, `document.querySelectorAll('`+row+` li.alarm.acked').length`), "%s: the acknowledged alarm stays listed", v.name)
	}
}
