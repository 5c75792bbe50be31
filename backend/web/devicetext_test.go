package web_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/web"
	"kluis/controller/wire"
)

// auditLocker appends an audit record about the locker, as the backend
// part that does the action would.
func (e *env) auditLocker(actor, action string, details map[string]any) {
	e.t.Helper()
	ctx := context.Background()
	require.NoError(e.t, pgx.BeginFunc(ctx, e.pool(), func(tx pgx.Tx) error {
		_, err := audit.Append(ctx, tx, audit.Entry{Actor: actor, Action: action, Subject: "device:" + lockerID, Details: details})
		return err
	}))
}

// What a technician reads on a device's page: a refused code's reason
// from the catalogue in each language (not the backend's code, e.g.
// wrong_code), a reason a person typed as typed; a board-wide alarm
// (board_unreachable) names its lock board, counted from 1; an
// automaton's slots, on a carousel behind one hatch, have no door column,
// a locker's compartments do.
func TestDevicePageSaysReasonsBoardsAndDoorsInWords(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	e.auditLocker("device:"+lockerID, "code.denied", map[string]any{"device": lockerID, "method": "pin", "reason": "wrong_code"})
	e.auditLocker("user:1", "device.out_of_service", map[string]any{"reason": "expired"})
	board := 1
	e.raise(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmBoardUnreachable, Board: &board})
	tech := e.client()
	tech.login(auth.RoleTechnician)
	for _, lang := range web.Languages {
		body := tech.get("/staff/devices/" + lockerID + "?lang=" + lang).body
		i := strings.Index(body, `id="device-timeline"`)
		require.Positive(t, i, lang)
		timeline := body[i:]
		assert.Contains(t, timeline, esc(lang, "timeline.code.denied")+" · "+esc(lang, "timeline.reason", "reason", web.Text(lang, "reason.wrong_code")), lang)
		assert.NotContains(t, timeline, "wrong_code", lang)
		assert.Contains(t, timeline, esc(lang, "timeline.reason", "reason", "expired"), "%s: typed by a person, shown as typed", lang)
		assert.Contains(t, timeline, esc(lang, "timeline.device.alarm", "alarm",
			web.Text(lang, "alarm.at_board", "alarm", web.Text(lang, "alarm.board_unreachable"), "n", 2)), lang)
		assert.Contains(t, body, `<th scope="col">`+esc(lang, "comp.door")+`</th>`, "%s: a locker's doors", lang)
		auto := tech.get("/staff/devices/" + autoID + "?lang=" + lang).body
		assert.NotContains(t, auto, `<th scope="col">`+esc(lang, "comp.door")+`</th>`, "%s: an automaton's slots have no doors", lang)
		assert.NotContains(t, auto, `data-label="`+esc(lang, "comp.door")+`"`, lang)
	}
}
