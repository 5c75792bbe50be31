package web

import (
	"html/template"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/alarms"
	"kluis/backend/auth"
	"kluis/backend/store"
	"kluis/controller/wire"
)

// TestFleetPutsWhatNeedsATechnicianFirst: the fleet page lists, before any
// choice of sort, devices with an open alarm nobody acknowledged (most
// severe first), then devices in service that are offline, late or have a
// board offline no alarm names, then those whose alarms are all
// acknowledged, then the others, by name within a group; it says so, and the summary counts a
// device that never connected apart from the offline ones, in nl/fr/en/de.
func TestFleetPutsWhatNeedsATechnicianFirst(t *testing.T) {
	at := fixtureNow
	dev := func(name string) store.Device { return store.Device{ID: name, Name: name, SiteID: "s"} }
	oos := dev("h-out")
	oos.OutOfService = &store.DeviceOutOfService{Since: at, Reason: "works"}
	ack := &alarms.Ack{By: "tech", At: at}
	board := 0
	boardDown := alarm{Kind: wire.AlarmBoardUnreachable, Board: &board, At: at, Ack: ack}
	hs := []health{ // in name order, as the store lists them
		{Device: dev("a-healthy"), Known: true, Online: true, Since: at},
		{Device: dev("b-journal"), Known: true, Online: true, Since: at, Alarms: []alarm{{Kind: wire.AlarmJournalDamaged, At: at}}},
		{Device: dev("c-offline"), Known: true, Since: at},
		{Device: dev("d-forced"), Known: true, Online: true, Since: at,
			Alarms: []alarm{{Kind: wire.AlarmBruteForceLockout, At: at}, {Kind: wire.AlarmForcedDoor, At: at}}},
		{Device: dev("e-never")},
		{Device: dev("f-late"), Known: true, Online: true, Late: true, Since: at},
		{Device: dev("g-board"), Known: true, Online: true, BoardsOffline: 1, Since: at},
		{Device: oos, Known: true, Since: at},
		{Device: dev("i-open"), Known: true, Online: true, Since: at, Alarms: []alarm{{Kind: wire.AlarmDoorLeftOpen, At: at}}},
		// Acknowledged alarms: after every alarm nobody acknowledged, before the rest.
		{Device: dev("j-acked"), Known: true, Online: true, Since: at, Alarms: []alarm{{Kind: wire.AlarmForcedDoor, At: at, Ack: ack}}},
		// One acknowledged forced door, one board nobody acknowledged: ranked by the latter.
		{Device: dev("k-mixed"), Known: true, Online: true, Since: at,
			Alarms: []alarm{{Kind: wire.AlarmForcedDoor, At: at, Ack: ack}, {Kind: wire.AlarmBoardUnreachable, At: at}}},
		// Offline with its alarms acknowledged: nobody took on the
		// outage, with the offline ones.
		{Device: dev("l-acked-offline"), Known: true, Since: at, Alarms: []alarm{{Kind: wire.AlarmJournalFull, At: at, Ack: ack}}},
		// Its board offline, the board's alarm acknowledged: handled.
		{Device: dev("m-acked-board"), Known: true, Online: true, Since: at, BoardsOffline: 1,
			Boards: []boardHealth{{BoardHealth: wire.BoardHealth{Address: 0}, Alarm: &boardDown}}, Alarms: []alarm{boardDown}},
	}
	// Offline, late or a board offline with no alarm to say so (c, f, g,
	// l) right after the alarms nobody acknowledged, before those all
	// acknowledged (j, m): an offline device came after them.
	want := []string{"d-forced", "i-open", "k-mixed", "b-journal", "c-offline", "f-late", "g-board", "l-acked-offline", "j-acked", "m-acked-board", "a-healthy", "e-never", "h-out"}
	var got []string
	for _, h := range byAttention(hs) {
		got = append(got, h.ID)
	}
	assert.Equal(t, want, got, "byAttention")
	assert.Equal(t, "a-healthy", hs[0].ID, "byAttention sorts a copy")

	pages, err := parsePages()
	require.NoError(t, err)
	rules := map[string][]auth.Role{}
	for _, a := range Actions() {
		rules[a.Name] = []auth.Role{auth.RoleAdmin}
	}
	w := &Web{pages: pages, rules: rules, o: Options{Location: brussels(t), Clock: func() time.Time { return at }}}
	row := regexp.MustCompile(`<tr data-status="([^"]*)" data-rank="\d+" data-text="([\w-]+) `)
	for _, lang := range []string{"nl", "fr", "en", "de"} {
		r := httptest.NewRequest("GET", "/staff/devices", nil)
		q := &req{w: w, r: r, lang: lang, t: w.tr(lang), loggedIn: true,
			sess: auth.WebSession{CSRF: "csrf", User: auth.User{ID: 1, Username: "u", Role: auth.RoleAdmin}}}
		rec := httptest.NewRecorder()
		w.render(rec, q, 200, "devices", "x", devicesData{Rows: hs, Sites: map[string]string{"s": "Stadhuis"}, Show: "all"})
		page := rec.Body.String()
		got = nil
		status := map[string]string{}
		for _, m := range row.FindAllStringSubmatch(page, -1) {
			got = append(got, m[2])
			status[m[2]] = m[1]
		}
		assert.Equal(t, want, got, lang)
		assert.Equal(t, "never", status["e-never"], lang)
		assert.Equal(t, "out_of_service offline", status["h-out"], lang)
		// The default sort is "needs attention first", and the page says what that means.
		assert.Contains(t, page, `<option value="attention" selected>`+template.HTMLEscapeString(Text(lang, "devices.sort.attention"))+`</option>`, lang)
		assert.Contains(t, page, template.HTMLEscapeString(Text(lang, "devices.sort.note")), lang)
		assert.NotContains(t, page, `aria-sort=`, lang)
		// 8 online on time (a, b, d, g, i, j, k, m), 1 late (f), 3
		// offline (c, h and l), 1 never connected.
		assert.Equal(t, "late", status["f-late"], lang)
		sum := Text(lang, "devices.summary", "online", 8, "late", 1, "offline", 3, "never", 1, "alarms", 9, "unacked", 5, "total", 13)
		assert.Contains(t, page, template.HTMLEscapeString(sum), lang)
		assert.Contains(t, page, `<option value="never">`+template.HTMLEscapeString(Text(lang, "devices.show.never"))+`</option>`, lang)
	}
}

// TestNoRemoteOpenToANeverConnectedDevice: the device page of a device
// that never connected offers no remote open and says why; one that did
// offers it, in nl/fr/en/de.
func TestNoRemoteOpenToANeverConnectedDevice(t *testing.T) {
	for _, lang := range []string{"nl", "fr", "en", "de"} {
		pages := renderAll(t, lang)
		why := template.HTMLEscapeString(Text(lang, "device.open_never"))
		assert.Contains(t, pages["device-never"], why, lang)
		assert.NotContains(t, pages["device-never"], `/open"`, lang)
		assert.Contains(t, pages["device"], `/compartments/3/open"`, lang)
		assert.NotContains(t, pages["device"], why, lang)
	}
}

// TestEveryAlarmKindHasASeverity: the fleet order ranks every kind kluisd
// raises (a kind not listed ranked after brute_force_lockout, the least
// severe). offline_cache_untrusted ranks after journal_damaged (records
// lost) and before brute_force_lockout (it changes nothing while the
// device is online, but its file may have been written by someone).
func TestEveryAlarmKindHasASeverity(t *testing.T) {
	for _, k := range wire.AlarmKinds() {
		_, ok := alarmSeverity[k]
		assert.True(t, ok, "%s has no place in the fleet order", k)
	}
	assert.Less(t, alarmSeverity[wire.AlarmJournalDamaged], alarmSeverity[wire.AlarmOfflineCacheUntrusted])
	assert.Less(t, alarmSeverity[wire.AlarmOfflineCacheUntrusted], alarmSeverity[wire.AlarmBruteForceLockout])
	assert.Len(t, alarmSeverity, len(wire.AlarmKinds()), "no kind kluisd does not raise")
}
