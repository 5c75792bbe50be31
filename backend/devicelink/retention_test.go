package devicelink_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/alarms"
	"kluis/backend/audit"
	"kluis/backend/codes"
	"kluis/backend/devicelink"
	"kluis/backend/store/storetest"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

// storeEvent stores a device event as the link does, received when the
// device says it happened.
func storeEvent(t *testing.T, pool *pgxpool.Pool, id, dev string, ev wire.Event) {
	t.Helper()
	ev.ID = id
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	_, err = pool.Exec(t.Context(), `INSERT INTO device_events (event_id, device_id, kind, at, received_at, outcome, payload)
		VALUES ($1, $2, $3, $4, $4, 'applied', $5)`, id, dev, string(ev.Kind), ev.At, b)
	require.NoError(t, err)
}

// column reads the text column a query returns.
func column(t *testing.T, pool *pgxpool.Pool, query string) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), query)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

func storedEvents(t *testing.T, pool *pgxpool.Pool) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, id := range column(t, pool, `SELECT event_id FROM device_events`) {
		out[id] = true
	}
	return out
}

// TestPrunerKeepsWhatAlarmsNeed: a pass deletes the device events
// received before the retention and the commands issued and expired
// before it, a small batch at a time, and keeps what is younger, every
// event alarm_latest references (the latest alarm or clearing of each
// device, kind and place: open alarms among them) and, while an alarm the
// device clears is open, its history since the last clearing (an earlier
// raise's acknowledgement counts for it): the open alarms and their
// acknowledgements read the same before and after, the audit trail loses
// nothing and its chain still verifies, and a second pass deletes
// nothing.
func TestPrunerKeepsWhatAlarmsNeed(t *testing.T) {
	ctx := t.Context()
	pool := storetest.New(t).Pool()
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	old := now.Add(-devicelink.DefaultRetention - 100*24*time.Hour) // before the cutoff
	at := func(base time.Time, h int) time.Time { return base.Add(time.Duration(h) * time.Hour) }
	board0, addrA, addrB := 0, &hardware.Address{Board: 0, Channel: 1}, &hardware.Address{Board: 0, Channel: 2}
	ack := func(dev, id string, when time.Time) {
		t.Helper()
		res, err := alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: dev, ID: id, Actor: "user:7", Note: "seen " + id, At: when})
		require.NoError(t, err)
		require.True(t, res.Recorded, id)
	}

	// Ordinary events: old ones go, recent ones stay.
	storeEvent(t, pool, "door-old", "d1", wire.Event{Kind: wire.EvDoorOpened, At: at(old, 0), Addr: addrA})
	storeEvent(t, pool, "done-old", "d1", wire.Event{Kind: wire.EvPickupCompleted, At: at(old, 1), Addr: addrA})
	storeEvent(t, pool, "door-new", "d1", wire.Event{Kind: wire.EvDoorOpened, At: at(now, -240), Addr: addrA})
	// A forced door (never cleared) twice, long ago: the first goes, the
	// second is alarm_latest's and stays.
	storeEvent(t, pool, "forced-1", "d1", wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, At: at(old, 2), Addr: addrA})
	ack("d1", "forced-1", at(old, 3))
	storeEvent(t, pool, "forced-2", "d1", wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, At: at(old, 4), Addr: addrA})
	// A door left open, acknowledged and cleared long ago: the clearing
	// is the latest and stays, the alarm and its acknowledgement go.
	storeEvent(t, pool, "left-1", "d1", wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmDoorLeftOpen, At: at(old, 5), Addr: addrB})
	ack("d1", "left-1", at(old, 6))
	storeEvent(t, pool, "left-1c", "d1", wire.Event{Kind: wire.EvAlarmCleared, Alarm: wire.AlarmDoorLeftOpen, At: at(old, 7), Addr: addrB})
	// A board unreachable, acknowledged, cleared, raised again and
	// acknowledged long ago, raised again (kluisd restarting, the board
	// still down) 10 days ago: the open alarm carries the second
	// acknowledgement. The first raise goes; the clearing, the second
	// raise with its acknowledgement and the open alarm stay.
	storeEvent(t, pool, "unr-1", "d1", wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmBoardUnreachable, At: at(old, 8), Board: &board0})
	ack("d1", "unr-1", at(old, 9))
	storeEvent(t, pool, "unr-1c", "d1", wire.Event{Kind: wire.EvAlarmCleared, Alarm: wire.AlarmBoardUnreachable, At: at(old, 10), Board: &board0})
	storeEvent(t, pool, "unr-2", "d1", wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmBoardUnreachable, At: at(old, 11), Board: &board0})
	ack("d1", "unr-2", at(old, 12))
	storeEvent(t, pool, "unr-3", "d1", wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmBoardUnreachable, At: at(now, -240), Board: &board0})
	// Another device's old door event goes too.
	storeEvent(t, pool, "door-old-d2", "d2", wire.Event{Kind: wire.EvDoorOpened, At: at(old, 13), Addr: addrA})

	// Commands: past the retention and expired they go, and code syncs
	// (the whole offline bundle, sent every 30 minutes) after 7 days.
	for _, c := range []struct {
		id, kind        string
		issued, expires time.Time
	}{{"cmd-old", "open", at(old, 0), at(old, 1)}, {"cmd-new", "open", at(now, -24), at(now, -23)},
		{"cmd-old-late", "open", at(old, 0), at(now, 24)}, {"cmd-8d", "open", at(now, -8*24), at(now, -8*24+1)},
		{"sync-8d", "code_sync", at(now, -8*24), at(now, -8*24+1)}, {"sync-8d-2", "code_sync", at(now, -8*24+1), at(now, -8*24+2)},
		{"sync-8d-3", "code_sync", at(now, -8*24+2), at(now, -8*24+3)}, {"sync-6d", "code_sync", at(now, -6*24), at(now, -6*24+1)}} {
		_, err := pool.Exec(ctx, `INSERT INTO device_commands (command_id, device_id, kind, issued_at, expires_at, payload)
			VALUES ($1, 'd1', $2, $3, $4, '{}')`, c.id, c.kind, c.issued, c.expires)
		require.NoError(t, err)
	}

	// Code attempts (backend/codes' table, pruned through Also).
	_, err := pool.Exec(ctx, `INSERT INTO code_attempts (device_id, at, method, reason, counted)
		VALUES ('d1', $1, 'pin', 'wrong_code', true), ('d1', $2, 'pin', 'wrong_code', true),
		       ('d1', $3, 'qr', 'ok', false), ('d1', $4, 'pin', 'ok', false)`, at(old, 0), at(old, 1), at(old, 2), at(now, -1))
	require.NoError(t, err)

	_, err = audit.Chain(ctx, pool)
	require.NoError(t, err)
	auditBefore, err := audit.List(ctx, pool, audit.ListOptions{})
	require.NoError(t, err)
	require.Len(t, auditBefore, 4, "four acknowledgements audited")
	openBefore, err := alarms.Open(ctx, pool, now, "d1")
	require.NoError(t, err)
	require.Len(t, openBefore["d1"], 1)
	require.Equal(t, "unr-3", openBefore["d1"][0].ID)
	require.NotNil(t, openBefore["d1"][0].Ack, "the earlier raise's acknowledgement counts")
	require.Equal(t, "seen unr-2", openBefore["d1"][0].Ack.Note)

	reg := prometheus.NewRegistry()
	p, err := devicelink.NewPruner(devicelink.PrunerOptions{Pool: pool, Clock: func() time.Time { return now }, Batch: 2, Registerer: reg,
		Also: []devicelink.Table{{Name: "code_attempts", Prune: func(ctx context.Context, cutoff time.Time, limit int) (int, error) {
			return codes.PruneAttempts(ctx, pool, cutoff, limit)
		}}}})
	require.NoError(t, err)
	res, err := p.Pass(ctx)
	require.NoError(t, err)
	assert.Equal(t, now.Add(-devicelink.DefaultRetention), res.Cutoff)
	assert.Equal(t, 6, res.Events, "door-old, done-old, forced-1, left-1, unr-1, door-old-d2")
	assert.Equal(t, 1, res.Commands)
	assert.Equal(t, 3, res.CodeSyncs)
	assert.Equal(t, map[string]int{"code_attempts": 3}, res.Also)
	assert.Equal(t, []string{"pin ok"}, column(t, pool, `SELECT method || ' ' || reason FROM code_attempts`), "the recent attempt stays")

	assert.Equal(t, map[string]bool{"door-new": true, "forced-2": true, "left-1c": true,
		"unr-1c": true, "unr-2": true, "unr-3": true}, storedEvents(t, pool))
	cmds := column(t, pool, `SELECT command_id FROM device_commands ORDER BY command_id`)
	assert.Equal(t, []string{"cmd-8d", "cmd-new", "cmd-old-late", "sync-6d"}, cmds, "a command not yet expired stays")
	ackRows := column(t, pool, `SELECT event_id FROM alarm_acks ORDER BY event_id`)
	assert.Equal(t, []string{"unr-2"}, ackRows, "the acknowledgements of deleted alarms went with them")

	openAfter, err := alarms.Open(ctx, pool, now, "d1")
	require.NoError(t, err)
	assert.Equal(t, openBefore, openAfter, "the open alarms and their acknowledgements read the same")

	// The audit trail is never pruned, gains one record for the pass
	// (not one per row), and its chain still verifies.
	auditAfter, err := audit.List(ctx, pool, audit.ListOptions{})
	require.NoError(t, err)
	require.Len(t, auditAfter, len(auditBefore)+1)
	assert.Equal(t, auditBefore, auditAfter[:len(auditBefore)])
	pruned := auditAfter[len(auditBefore)]
	assert.Equal(t, "system", pruned.Actor)
	assert.Equal(t, devicelink.AuditAction, pruned.Action)
	var details struct {
		Deleted   map[string]int `json:"deleted"`
		Cutoff    time.Time      `json:"cutoff"`
		Retention string         `json:"retention"`
	}
	require.NoError(t, json.Unmarshal(pruned.Details, &details))
	assert.Equal(t, map[string]int{"device_events": 6, "device_commands": 4, "code_attempts": 3}, details.Deleted)
	assert.True(t, details.Cutoff.Equal(res.Cutoff), "%s", details.Cutoff)
	assert.Equal(t, devicelink.DefaultRetention.String(), details.Retention)
	rep, err := audit.Verify(ctx, pool)
	require.NoError(t, err)
	assert.True(t, rep.OK(), rep.String())

	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP kluis_device_history_pruned_total Rows deleted by the hourly retention pass (-device-retention; auth tokens 30 days after their end), by table (device_events, device_commands, code_attempts, notifications, auth_tokens).
# TYPE kluis_device_history_pruned_total counter
kluis_device_history_pruned_total{table="code_attempts"} 3
kluis_device_history_pruned_total{table="device_commands"} 4
kluis_device_history_pruned_total{table="device_events"} 6
`), "kluis_device_history_pruned_total"))

	// Nothing more is due; and what was kept goes once it is no longer
	// needed: the board comes back, so the history before that clearing
	// is no longer needed.
	res, err = p.Pass(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, res.Events+res.Commands+res.CodeSyncs+res.Also["code_attempts"])
	audited := func() int {
		t.Helper()
		recs, err := audit.List(ctx, pool, audit.ListOptions{})
		require.NoError(t, err)
		return len(recs)
	}
	assert.Equal(t, len(auditAfter), audited(), "a pass that deleted nothing is not audited")
	storeEvent(t, pool, "unr-3c", "d1", wire.Event{Kind: wire.EvAlarmCleared, Alarm: wire.AlarmBoardUnreachable, At: at(now, -1), Board: &board0})
	res, err = p.Pass(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, res.Events, "unr-1c and unr-2 (and its acknowledgement)")
	assert.Equal(t, map[string]bool{"door-new": true, "forced-2": true, "left-1c": true,
		"unr-3": true, "unr-3c": true}, storedEvents(t, pool))
	assert.Equal(t, len(auditAfter)+1, audited(), "one record for that pass")
	rep, err = audit.Verify(ctx, pool)
	require.NoError(t, err)
	assert.True(t, rep.OK(), rep.String())
}

// TestPrunerRefusesAShortRetention: a retention shorter than the alarms'
// window is refused.
func TestPrunerRefusesAShortRetention(t *testing.T) {
	pool := storetest.New(t).Pool()
	_, err := devicelink.NewPruner(devicelink.PrunerOptions{Pool: pool, Retention: 7 * 24 * time.Hour})
	require.ErrorIs(t, err, devicelink.ErrRetention)
	p, err := devicelink.NewPruner(devicelink.PrunerOptions{Pool: pool, Retention: devicelink.MinRetention})
	require.NoError(t, err)
	_, err = p.Pass(context.Background())
	require.NoError(t, err)
}

// TestPrunerCountsAFailedPass: a pass the database refuses is counted in
// kluis_device_history_prune_failures_total (KluisDeviceRetentionFailing)
// and logged; Run goes on until its context ends.
func TestPrunerCountsAFailedPass(t *testing.T) {
	pool := storetest.New(t).Pool()
	reg := prometheus.NewRegistry()
	var logs testenv.SyncBuffer
	p, err := devicelink.NewPruner(devicelink.PrunerOptions{Pool: pool, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	pool.Close() // every statement fails
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, time.Hour) }()
	testenv.Eventually(t, "the failed pass counted", func() bool {
		return testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP kluis_device_history_prune_failures_total Passes of the device retention that failed (the next pass tries again).
# TYPE kluis_device_history_prune_failures_total counter
kluis_device_history_prune_failures_total 1
`), "kluis_device_history_prune_failures_total") == nil
	})
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.Contains(t, logs.String(), "device retention: prune failed")
}

// TestPrunerKeepForever: with KeepForever (-device-retention 0) the device
// history stays, and so do the Also tables without a Keep of their own;
// a table with its own Keep is still pruned with its own cutoff, and the
// pass audited.
func TestPrunerKeepForever(t *testing.T) {
	ctx := t.Context()
	pool := storetest.New(t).Pool()
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	storeEvent(t, pool, "door-ancient", "d1", wire.Event{Kind: wire.EvDoorOpened, At: now.Add(-3 * devicelink.DefaultRetention)})
	var cutoffs []time.Time
	p, err := devicelink.NewPruner(devicelink.PrunerOptions{Pool: pool, Retention: devicelink.KeepForever, Clock: func() time.Time { return now },
		Also: []devicelink.Table{
			{Name: "kept", Prune: func(context.Context, time.Time, int) (int, error) {
				t.Error("a table without a Keep of its own is kept for ever")
				return 0, nil
			}},
			{Name: "own", Keep: 30 * 24 * time.Hour, Prune: func(_ context.Context, cutoff time.Time, _ int) (int, error) {
				cutoffs = append(cutoffs, cutoff)
				return 3, nil
			}},
		}})
	require.NoError(t, err)
	res, err := p.Pass(ctx)
	require.NoError(t, err)
	assert.Equal(t, []time.Time{now.Add(-30 * 24 * time.Hour)}, cutoffs)
	assert.Equal(t, map[string]int{"own": 3}, res.Also)
	assert.Zero(t, res.Events)
	assert.Equal(t, map[string]bool{"door-ancient": true}, storedEvents(t, pool))
	recs, err := audit.List(ctx, pool, audit.ListOptions{})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, devicelink.AuditAction, recs[0].Action)
	assert.JSONEq(t, `{"deleted":{"own":3},"retention":"forever","cutoffs":{"own":"2026-11-07T09:00:00Z"}}`, string(recs[0].Details))
}
