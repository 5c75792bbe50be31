package chaos

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"kluis/backend/store/storetest"
	"kluis/controller/journal"
)

// eventsWorld is a world of one device, kb1, whose journal (in a
// directory of its own) holds events with the given ids and kinds, and a
// migrated database; add records an event in the backend.
func eventsWorld(t *testing.T, kinds map[string]string) (g *Gauntlet, add func(id, kind string)) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, storetest.MigratedDatabase(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	dir := t.TempDir()
	j, _, _, err := journal.Open(journal.Options{Dir: dir, DeviceID: "kb1"})
	require.NoError(t, err)
	for id, kind := range kinds {
		_, err := j.AppendEvent(journal.Event{ID: id, Kind: kind, Payload: []byte(`{}`)})
		require.NoError(t, err)
	}
	require.NoError(t, j.Close())
	n := &Node{Spec: DeviceSpec{ID: "kb1"}, JournalDir: dir}
	g = &Gauntlet{w: &World{DB: pool, Nodes: []*Node{n}, byID: map[string]*Node{"kb1": n}}, scan: newJournalScan(), night: 1}
	add = func(id, kind string) {
		_, err := pool.Exec(ctx, `INSERT INTO device_events (event_id, device_id, kind, at, received_at, outcome, payload)
			VALUES ($1, 'kb1', $2, now(), now(), 'applied', '{}')`, id, kind)
		require.NoError(t, err)
	}
	return g, add
}

// An event journaled at the night's end (a door's close read late from
// its board, after settle saw the device's backlog empty) that the
// backend does not have when the check first looks, and gets right after,
// was on its way, not lost. Before, the check read the backend once, then
// the journals, and reported it: TestGauntletEmbedded at load 56, "event
// journaled, not in the backend", with nothing else to go on.
func TestCheckEventsWaitsForAnEventOnItsWay(t *testing.T) {
	g, add := eventsWorld(t, map[string]string{"ev-opened": "door_opened", "ev-closed": "door_closed"})
	add("ev-opened", "door_opened")
	looks := 0
	g.eventsLooked = func() {
		looks++
		if looks == 1 {
			add("ev-closed", "door_closed") // delivered after the first look
		}
	}
	g.checkEvents(context.Background())
	require.Empty(t, g.report.Violations)
	require.Empty(t, g.report.Errors)
	require.GreaterOrEqual(t, looks, 2, "the backend looked at again")
}

// An event that never reaches the backend is a violation once the wait is
// over, reported with what names the cause: its kind, that kluisd still
// has it unacknowledged in its journal, and the backend's last event of
// the device.
func TestCheckEventsReportsALostEventWithItsStory(t *testing.T) {
	g, add := eventsWorld(t, map[string]string{"ev-opened": "door_opened", "ev-lost": "alarm"})
	add("ev-opened", "door_opened")
	g.eventsWait = time.Second // never there: the whole wait
	g.checkEvents(context.Background())
	require.Len(t, g.report.Violations, 1)
	v := g.report.Violations[0]
	require.Equal(t, "journaled event in the backend", v.Invariant)
	for _, want := range []string{"kb1: event ev-lost journaled, not in the backend", "alarm journaled",
		"journal now: in journal.log, not acknowledged", "the backend's last of 1 events of kb1: ev-opened door_opened"} {
		require.True(t, strings.Contains(v.Detail, want), "%q in %s", want, v.Detail)
	}
}
