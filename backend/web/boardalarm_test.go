package web

import (
	"encoding/json"
	"html/template"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/store"
	"kluis/controller/wire"
)

// TestBoardKnownFromItsAlarmOnly: a board_unreachable alarm names a lock
// board the stored heartbeat does not list (kluisd lists the boards it
// knows of), or there is no heartbeat yet: the board is offline by its
// alarm, with a row in the boards table that says the alarm and that the
// heartbeat did not report it (its firmware and counters unknown), and
// the fleet counts it offline, in nl/fr/en/de.
func TestBoardKnownFromItsAlarmOnly(t *testing.T) {
	at := fixtureNow
	one := 1
	hb, err := json.Marshal(wire.Heartbeat{V: 1, At: at.Add(time.Minute), Boards: []wire.BoardHealth{{Address: 0, Online: true, Firmware: "kluisfw 2.1"}}})
	require.NoError(t, err)
	a := alarm{Kind: wire.AlarmBoardUnreachable, Board: &one, At: at}
	dev := store.Device{ID: "k1", Kind: store.Locker, Name: "k1"}
	for name, p := range map[string]presenceRow{
		"board 1 not in the heartbeat": {Online: true, Since: at, LastHeartbeat: &at, Heartbeat: hb},
		"no heartbeat yet":             {Online: true, Since: at},
	} {
		h := makeHealth(dev, p, true, []alarm{a}, at)
		require.NotEmpty(t, h.Boards, name)
		last := h.Boards[len(h.Boards)-1]
		assert.Equal(t, 1, last.Address, name)
		assert.False(t, last.Online, name)
		assert.True(t, last.NotReported, name)
		assert.Same(t, &h.Alarms[0], last.Alarm, name)
		assert.Equal(t, 1, h.BoardsOffline, name)
		assert.False(t, h.Unhandled(), name+": its board_unreachable alarm names the board")
		assert.False(t, h.boardOnline(1), name)

		pages, err := parsePages()
		require.NoError(t, err)
		w := &Web{pages: pages, rules: map[string][]auth.Role{}, o: Options{Location: brussels(t), Clock: func() time.Time { return at }}}
		for _, lang := range Languages {
			q := &req{w: w, r: httptest.NewRequest("GET", "/", nil), lang: lang, t: w.tr(lang), loggedIn: true,
				sess: auth.WebSession{User: auth.User{Role: auth.RoleTechnician}}}
			s, err := w.fragment(q, "device", "device-boards", deviceView{detail: detail{health: h}})
			require.NoError(t, err)
			label := template.HTMLEscapeString(Text(lang, "board.address"))
			row := regexp.MustCompile(`<tr><th scope="row" data-label="` + regexp.QuoteMeta(label) + `">2</th>(.*?)</tr>`).FindStringSubmatch(s)
			require.NotNil(t, row, "%s %s: a row for board 2: %s", name, lang, s)
			assert.Contains(t, row[1], template.HTMLEscapeString(Text(lang, "status.offline")), name)
			assert.Contains(t, row[1], template.HTMLEscapeString(Text(lang, "board.alarm_open", "time", w.tr(lang).Time(at))), name)
			assert.Contains(t, row[1], template.HTMLEscapeString(Text(lang, "board.not_reported")), name)
			assert.NotContains(t, row[1], ">0<", "%s %s: counters not reported are unknown, not 0", name, lang)
		}
	}
}
