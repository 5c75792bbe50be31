package alarms_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/alarms"
	"kluis/backend/audit"
	"kluis/backend/store/storetest"
	"kluis/controller/wire"
	"kluis/hardware"
)

var t0 = time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)

// event stores a device event as the device link does (the test stands
// in for backend/devicelink, the table's owner).
func event(t *testing.T, pool *pgxpool.Pool, id, dev string, ev wire.Event) {
	t.Helper()
	ev.ID = id
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	_, err = pool.Exec(context.Background(), `INSERT INTO device_events (event_id, device_id, kind, at, received_at, outcome, payload)
		VALUES ($1, $2, $3, $4, $4, 'applied', $5)`, id, dev, string(ev.Kind), ev.At, b)
	require.NoError(t, err)
}

func user(t *testing.T, pool *pgxpool.Pool, name, role string) string {
	t.Helper()
	var id int64
	require.NoError(t, pool.QueryRow(context.Background(), `INSERT INTO auth_users (username, role, password_hash, created_at)
		VALUES ($1, $2, 'x', now()) RETURNING id`, name, role).Scan(&id))
	return "user:" + strconv.FormatInt(id, 10)
}

func acks(t *testing.T, pool *pgxpool.Pool) []audit.Record {
	t.Helper()
	recs, err := audit.List(context.Background(), pool, audit.ListOptions{})
	require.NoError(t, err)
	var out []audit.Record
	for _, r := range recs {
		if r.Action == "alarm.acknowledged" {
			out = append(out, r)
		}
	}
	return out
}

// TestAcknowledgeOnceAuditedAndNewAfterAClear: an open alarm is
// acknowledged once (the row and one audit record with who, when and the
// note); a second acknowledgement, also a concurrent one, records nothing
// and answers the first; an alarm that clears is refused (nothing
// written), and raised again it is a new alarm, not acknowledged; an
// unknown id, another device's alarm and a bad note are refused.
func TestAcknowledgeOnceAuditedAndNewAfterAClear(t *testing.T) {
	ctx := context.Background()
	pool := storetest.New(t).Pool()
	tech := user(t, pool, "tech", "technician")
	admin := user(t, pool, "boss", "admin")
	door := &hardware.Address{Board: 0, Channel: 5}
	event(t, pool, "ev-1", "k1", wire.Event{Kind: wire.EvAlarm, At: t0, Alarm: wire.AlarmDoorLeftOpen, Addr: door})
	event(t, pool, "ev-2", "k1", wire.Event{Kind: wire.EvAlarm, At: t0.Add(time.Second), Alarm: wire.AlarmForcedDoor, Addr: door})
	event(t, pool, "ev-x", "k2", wire.Event{Kind: wire.EvAlarm, At: t0, Alarm: wire.AlarmForcedDoor, Addr: door})

	now := t0.Add(time.Minute)
	open, err := alarms.Open(ctx, pool, now, "k1")
	require.NoError(t, err)
	require.Len(t, open["k1"], 2)
	assert.Equal(t, "ev-2", open["k1"][0].ID, "newest first while none is acknowledged")
	assert.False(t, open["k1"][0].Acknowledged())

	// Refused before anything is written.
	_, err = alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "ev-1", Actor: tech, Note: strings.Repeat("x", 201), At: now})
	assert.ErrorIs(t, err, alarms.ErrNote)
	_, err = alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "ev-1", Actor: tech, Note: "two\nlines", At: now})
	assert.ErrorIs(t, err, alarms.ErrNote)
	_, err = alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "nope", Actor: tech, At: now})
	assert.ErrorIs(t, err, alarms.ErrNotFound)
	_, err = alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "ev-x", Actor: tech, At: now})
	assert.ErrorIs(t, err, alarms.ErrNotFound, "another device's alarm")
	assert.Empty(t, acks(t, pool))

	// The first acknowledgement, with a note of exactly 200 characters.
	note := "  " + strings.Repeat("é", 199) + "!  "
	res, err := alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "ev-1", Actor: tech, Note: note, At: now})
	require.NoError(t, err)
	assert.True(t, res.Recorded)
	require.NotNil(t, res.Alarm.Ack)
	assert.Equal(t, "tech", res.Alarm.Ack.By)
	assert.Equal(t, strings.TrimSpace(note), res.Alarm.Ack.Note)
	assert.True(t, now.Equal(res.Alarm.Ack.At))

	// Twice more, one of them at the same time as a third: recorded once.
	var wg sync.WaitGroup
	results := make([]alarms.AckResult, 3)
	errs := make([]error, 3)
	for i := range 3 {
		wg.Go(func() {
			results[i], errs[i] = alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "ev-1", Actor: admin, Note: "again",
				At: now.Add(time.Minute)})
		})
	}
	wg.Wait()
	for i := range 3 {
		require.NoError(t, errs[i])
		assert.False(t, results[i].Recorded)
		assert.Equal(t, "tech", results[i].Alarm.Ack.By, "the first acknowledgement is answered")
		assert.Equal(t, strings.TrimSpace(note), results[i].Alarm.Ack.Note)
	}
	recs := acks(t, pool)
	require.Len(t, recs, 1, "audited once")
	assert.Equal(t, tech, recs[0].Actor)
	assert.Equal(t, "device:k1", recs[0].Subject)
	assert.True(t, now.Equal(recs[0].At))
	var det map[string]any
	require.NoError(t, json.Unmarshal(recs[0].Details, &det))
	assert.Equal(t, map[string]any{"alarm": "door_left_open", "alarm_id": "ev-1", "note": strings.TrimSpace(note),
		"board": float64(0), "channel": float64(5)}, det)

	// Open: the unacknowledged first, the acknowledged one with who and when.
	open, err = alarms.Open(ctx, pool, now, "")
	require.NoError(t, err)
	require.Len(t, open["k1"], 2)
	assert.Equal(t, "ev-2", open["k1"][0].ID)
	assert.Equal(t, "ev-1", open["k1"][1].ID)
	require.NotNil(t, open["k1"][1].Ack)
	assert.Equal(t, "tech", open["k1"][1].Ack.By)
	assert.Len(t, open["k2"], 1)

	// The device clears it: no longer open, refused, nothing written.
	event(t, pool, "ev-3", "k1", wire.Event{Kind: wire.EvAlarmCleared, At: t0.Add(2 * time.Minute), Alarm: wire.AlarmDoorLeftOpen, Addr: door})
	_, err = alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "ev-1", Actor: tech, At: now.Add(2 * time.Minute)})
	assert.ErrorIs(t, err, alarms.ErrNotOpen)
	// Raised again: a new alarm, not acknowledged.
	event(t, pool, "ev-4", "k1", wire.Event{Kind: wire.EvAlarm, At: t0.Add(3 * time.Minute), Alarm: wire.AlarmDoorLeftOpen, Addr: door})
	open, err = alarms.Open(ctx, pool, t0.Add(4*time.Minute), "k1")
	require.NoError(t, err)
	require.Len(t, open["k1"], 2)
	assert.Equal(t, "ev-4", open["k1"][0].ID)
	assert.Nil(t, open["k1"][0].Ack, "raised again after a clear: a new alarm")
	_, err = alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "ev-1", Actor: tech, At: t0.Add(4 * time.Minute)})
	assert.ErrorIs(t, err, alarms.ErrNotOpen, "the old one stays closed")
	assert.Len(t, acks(t, pool), 1)

	// A one-shot alarm (forced_door) is open for a day, then refused.
	_, err = alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "ev-2", Actor: tech, At: t0.Add(alarms.OneShot + 2*time.Second)})
	assert.ErrorIs(t, err, alarms.ErrNotOpen)
	res, err = alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "ev-2", Actor: admin, At: t0.Add(5 * time.Minute)})
	require.NoError(t, err)
	assert.True(t, res.Recorded)
	assert.Equal(t, "", res.Alarm.Ack.Note)
	assert.Equal(t, "boss", res.Alarm.Ack.By)

	// A board unreachable, acknowledged, raised again at a restart before
	// any clearing: the same alarm, still acknowledged; acknowledging the
	// new raise records nothing. Cleared and raised again: a new alarm.
	b := 1
	event(t, pool, "b-1", "k1", wire.Event{Kind: wire.EvAlarm, At: t0.Add(10 * time.Minute), Alarm: wire.AlarmBoardUnreachable, Board: &b})
	res, err = alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "b-1", Actor: tech, Note: "cable", At: t0.Add(11 * time.Minute)})
	require.NoError(t, err)
	require.True(t, res.Recorded)
	event(t, pool, "b-2", "k1", wire.Event{Kind: wire.EvAlarm, At: t0.Add(12 * time.Minute), Alarm: wire.AlarmBoardUnreachable, Board: &b})
	byID := func(at time.Time, id string) alarms.Alarm {
		t.Helper()
		open, err := alarms.Open(ctx, pool, at, "k1")
		require.NoError(t, err)
		for _, a := range open["k1"] {
			if a.ID == id {
				return a
			}
		}
		t.Fatalf("%s not open: %+v", id, open["k1"])
		return alarms.Alarm{}
	}
	a := byID(t0.Add(13*time.Minute), "b-2")
	require.NotNil(t, a.Ack, "raised again without a clearing: still acknowledged")
	assert.Equal(t, "cable", a.Ack.Note)
	res, err = alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "b-2", Actor: admin, Note: "again", At: t0.Add(13 * time.Minute)})
	require.NoError(t, err)
	assert.False(t, res.Recorded)
	assert.Equal(t, "tech", res.Alarm.Ack.By)
	assert.Equal(t, "cable", res.Alarm.Ack.Note)
	// Another board's alarm is not covered by it.
	b2 := 2
	event(t, pool, "c-1", "k1", wire.Event{Kind: wire.EvAlarm, At: t0.Add(12 * time.Minute), Alarm: wire.AlarmBoardUnreachable, Board: &b2})
	assert.Nil(t, byID(t0.Add(13*time.Minute), "c-1").Ack)
	event(t, pool, "b-3", "k1", wire.Event{Kind: wire.EvAlarmCleared, At: t0.Add(14 * time.Minute), Alarm: wire.AlarmBoardUnreachable, Board: &b})
	event(t, pool, "b-4", "k1", wire.Event{Kind: wire.EvAlarm, At: t0.Add(15 * time.Minute), Alarm: wire.AlarmBoardUnreachable, Board: &b})
	assert.Nil(t, byID(t0.Add(16*time.Minute), "b-4").Ack, "cleared, then raised: a new alarm")
	// A forced door (never cleared) raised again is a new incident.
	event(t, pool, "f-1", "k1", wire.Event{Kind: wire.EvAlarm, At: t0.Add(20 * time.Minute), Alarm: wire.AlarmForcedDoor, Addr: door})
	assert.Nil(t, byID(t0.Add(21*time.Minute), "f-1").Ack, "a forced door again after the acknowledged one: a new alarm")
	assert.Len(t, acks(t, pool), 3)

	report, err := audit.Verify(ctx, pool)
	require.NoError(t, err)
	assert.Nil(t, report.FirstBad, "the audit chain stays intact")
}

// TestOpenAlarmsMetric: kluis_device_alarms_open counts the open alarms
// by device, kind and acknowledged, read at scrape time.
func TestOpenAlarmsMetric(t *testing.T) {
	ctx := context.Background()
	pool := storetest.New(t).Pool()
	tech := user(t, pool, "tech", "technician")
	b0, b1 := 0, 1
	event(t, pool, "m-1", "k1", wire.Event{Kind: wire.EvAlarm, At: t0, Alarm: wire.AlarmBoardUnreachable, Board: &b0})
	event(t, pool, "m-2", "k1", wire.Event{Kind: wire.EvAlarm, At: t0, Alarm: wire.AlarmBoardUnreachable, Board: &b1})
	event(t, pool, "m-3", "k2", wire.Event{Kind: wire.EvAlarm, At: t0, Alarm: wire.AlarmForcedDoor, Addr: &hardware.Address{Channel: 1}})
	now := t0.Add(time.Minute)
	_, err := alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "m-1", Actor: tech, At: now})
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(alarms.NewMetrics(pool, func() time.Time { return now }, 10*time.Second, nil)))
	want := `# HELP kluis_device_alarms_open Open alarms (as the dashboard shows them) by device, kind and whether a technician acknowledged them (yes, no); read from the database at scrape time, only counts above zero.
# TYPE kluis_device_alarms_open gauge
kluis_device_alarms_open{acknowledged="no",alarm="board_unreachable",device="k1"} 1
kluis_device_alarms_open{acknowledged="no",alarm="forced_door",device="k2"} 1
kluis_device_alarms_open{acknowledged="yes",alarm="board_unreachable",device="k1"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "kluis_device_alarms_open"))
}

// Open reads alarm_latest, which the trigger on device_events keeps: an
// event that arrives late (stored after a later one of the same kind and
// place: a device's journal replayed after an outage) does not replace
// the later one, whatever the order of storing; a one-shot alarm past
// OneShot and an alarm past Window are not open.
func TestOpenFollowsTheLatestEventWhateverTheOrderStored(t *testing.T) {
	ctx := context.Background()
	pool := storetest.New(t).Pool()
	door := &hardware.Address{Board: 0, Channel: 2}
	board := 1
	// The door closed (cleared) at +2m, stored before its alarm of +1m.
	event(t, pool, "c-1", "k1", wire.Event{Kind: wire.EvAlarmCleared, At: t0.Add(2 * time.Minute), Alarm: wire.AlarmDoorLeftOpen, Addr: door})
	event(t, pool, "a-1", "k1", wire.Event{Kind: wire.EvAlarm, At: t0.Add(time.Minute), Alarm: wire.AlarmDoorLeftOpen, Addr: door})
	// The board went down at +3m, stored after an older clearing of +1m.
	event(t, pool, "b-3", "k1", wire.Event{Kind: wire.EvAlarm, At: t0.Add(3 * time.Minute), Alarm: wire.AlarmBoardUnreachable, Board: &board})
	event(t, pool, "b-1", "k1", wire.Event{Kind: wire.EvAlarmCleared, At: t0.Add(time.Minute), Alarm: wire.AlarmBoardUnreachable, Board: &board})
	// A forced door two days ago, and one now; a board down 31 days ago.
	event(t, pool, "f-old", "k2", wire.Event{Kind: wire.EvAlarm, At: t0.Add(-48 * time.Hour), Alarm: wire.AlarmForcedDoor, Addr: door})
	event(t, pool, "f-new", "k2", wire.Event{Kind: wire.EvAlarm, At: t0, Alarm: wire.AlarmForcedDoor, Addr: &hardware.Address{Board: 0, Channel: 3}})
	event(t, pool, "b-old", "k2", wire.Event{Kind: wire.EvAlarm, At: t0.Add(-31 * 24 * time.Hour), Alarm: wire.AlarmBoardUnreachable, Board: &board})

	open, err := alarms.Open(ctx, pool, t0.Add(5*time.Minute), "")
	require.NoError(t, err)
	ids := map[string][]string{}
	for dev, as := range open {
		for _, a := range as {
			ids[dev] = append(ids[dev], a.ID)
		}
	}
	assert.Equal(t, map[string][]string{"k1": {"b-3"}, "k2": {"f-new"}}, ids)
	one, err := alarms.Open(ctx, pool, t0.Add(5*time.Minute), "k1")
	require.NoError(t, err)
	assert.Equal(t, map[string][]alarms.Alarm{"k1": open["k1"]}, one)
	// Of some devices, in one query: the same alarms as Open's.
	of, err := alarms.OpenOf(ctx, pool, t0.Add(5*time.Minute), []string{"k1", "k2", "k3"})
	require.NoError(t, err)
	assert.Equal(t, open, of)
	of, err = alarms.OpenOf(ctx, pool, t0.Add(5*time.Minute), []string{"k2"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]alarms.Alarm{"k2": open["k2"]}, of)
}

// Acknowledge takes an alarm as open exactly when Open lists it (both
// read alarm_latest): of two raises of the same kind and place at the
// same instant, Open lists the one stored first, and only that one is
// acknowledged; the other is not open.
func TestAcknowledgeOnlyWhatOpenLists(t *testing.T) {
	ctx := context.Background()
	pool := storetest.New(t).Pool()
	tech := user(t, pool, "tech", "technician")
	door := &hardware.Address{Board: 0, Channel: 4}
	event(t, pool, "tie-1", "k1", wire.Event{Kind: wire.EvAlarm, At: t0, Alarm: wire.AlarmForcedDoor, Addr: door})
	event(t, pool, "tie-2", "k1", wire.Event{Kind: wire.EvAlarm, At: t0, Alarm: wire.AlarmForcedDoor, Addr: door})
	now := t0.Add(time.Minute)

	open, err := alarms.Open(ctx, pool, now, "k1")
	require.NoError(t, err)
	require.Len(t, open["k1"], 1)
	assert.Equal(t, "tie-1", open["k1"][0].ID)

	_, err = alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "tie-2", Actor: tech, At: now})
	assert.ErrorIs(t, err, alarms.ErrNotOpen, "not the alarm Open lists")
	assert.Empty(t, acks(t, pool))
	res, err := alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "tie-1", Actor: tech, At: now})
	require.NoError(t, err)
	assert.True(t, res.Recorded)
}

// offline_cache_untrusted is a kind the device clears (its full code sync
// applied): a device that cannot reach the backend for days keeps it open
// past OneShot, raised again at a restart it keeps its acknowledgement,
// and its clearing closes it. Before, it was journal_damaged, a one-shot
// alarm: gone from the dashboard after a day whether the device had its
// codes again or not, and open for a day after it had them.
func TestOfflineCacheUntrustedOpenUntilTheDeviceClearsIt(t *testing.T) {
	ctx := context.Background()
	pool := storetest.New(t).Pool()
	tech := user(t, pool, "tech", "technician")
	raise := wire.Event{Kind: wire.EvAlarm, At: t0, Alarm: wire.AlarmOfflineCacheUntrusted, Detail: "offline cache not authenticated"}
	event(t, pool, "cu-1", "k1", raise)
	_, err := alarms.Acknowledge(ctx, pool, alarms.AckRequest{Device: "k1", ID: "cu-1", Actor: tech, At: t0.Add(time.Minute)})
	require.NoError(t, err)

	raise.At = t0.Add(2 * alarms.OneShot) // a restart two days later, still no full sync
	event(t, pool, "cu-2", "k1", raise)
	now := raise.At.Add(alarms.OneShot + time.Hour)
	open, err := alarms.Open(ctx, pool, now, "k1")
	require.NoError(t, err)
	require.Len(t, open["k1"], 1, "open past a day")
	assert.Equal(t, "cu-2", open["k1"][0].ID)
	assert.True(t, open["k1"][0].Acknowledged(), "raised again without a clearing: the same alarm, still acknowledged")

	event(t, pool, "cu-3", "k1", wire.Event{Kind: wire.EvAlarmCleared, At: now, Alarm: wire.AlarmOfflineCacheUntrusted})
	open, err = alarms.Open(ctx, pool, now.Add(time.Minute), "k1")
	require.NoError(t, err)
	assert.Empty(t, open["k1"], "cleared by the device")
}
