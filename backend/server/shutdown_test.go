package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/devicelink"
	"kluis/backend/server"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// A backend that stops while its devices publish loses nothing the
// embedded broker took from them: the broker stops accepting and closes
// the devices' connections first (their last wills, offline presences,
// go to the device link), then the link records what it was handed and
// stops. After the stop the database shows every device offline (they
// are gone: none comes back before the restart), holds every event the
// devices got an acknowledgement for, and a device that resends what was
// not acknowledged (as kluisd does) after the restart has every event
// recorded once. Before, the broker closed after the jobs had stopped
// and without the wills: every device stayed online in the database
// while the backend was down and after it came back without them.
func TestShutdownLosesNothingTheBrokerTook(t *testing.T) {
	budget := devicelink.Budget{Rate: 10000, Burst: 10000}
	o := server.Options{DeviceEventBudget: budget}
	s := startBackend(t, o)
	s.waitLink()
	s.call("POST", "/api/v1/sites", map[string]any{"id": "kortrijk", "name": "Stadhuis"}, 201)
	ids := []string{"sd1", "sd2", "sd3", "sd4"}
	pws := map[string]string{}
	will, err := wire.Encode(&wire.Presence{State: wire.Offline, Software: "kluisd-test"})
	require.NoError(t, err)
	withWill := func(id string) func(*paho.ClientOptions) {
		topic, err := wire.TopicFor(id, wire.KindPresence)
		require.NoError(t, err)
		return func(co *paho.ClientOptions) { co.SetBinaryWill(topic, will, 1, true) }
	}
	devs := map[string]*fakeDevice{}
	for _, id := range ids {
		s.call("POST", "/api/v1/devices", map[string]any{"id": id, "site_id": "kortrijk", "kind": "locker",
			"compartments": []map[string]any{{"board": 0, "channel": 3, "size": "M", "height_cm": 100}}}, 201)
		pws[id] = s.call("POST", "/api/v1/devices/"+id+"/mqtt-password", nil, 201)["password"].(string)
		devs[id] = connectDevice(t, s.Broker, id, pws[id], withWill(id))
		devs[id].publish(wire.KindPresence, &wire.Presence{State: wire.Online, Software: "kluisd-test"})
		s.waitOnline(id)
	}

	// Every device publishes events and heartbeats back to back until its
	// connection goes; an event counts as taken when the broker PUBACKed it.
	var mu sync.Mutex
	sent := map[string][]*wire.Event{} // by device, in order
	pubacked := map[string]bool{}
	var wg sync.WaitGroup
	started := make(chan struct{}, len(ids))
	for _, id := range ids {
		d := devs[id]
		evTopic, _ := wire.TopicFor(id, wire.KindEvent)
		hbTopic, _ := wire.TopicFor(id, wire.KindHeartbeat)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				ev := &wire.Event{ID: wire.NewID(time.Now()), Kind: wire.EvDoorOpened, At: time.Now().UTC(),
					Addr: &wire.Address{Board: 0, Channel: 3}}
				b, _ := wire.Encode(ev)
				mu.Lock()
				sent[id] = append(sent[id], ev)
				mu.Unlock()
				tok := d.c.Publish(evTopic, 1, false, b)
				if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					return
				}
				mu.Lock()
				pubacked[ev.ID] = true
				mu.Unlock()
				hb, _ := wire.Encode(&wire.Heartbeat{At: time.Now().UTC(), Software: "kluisd-test"})
				if tok := d.c.Publish(hbTopic, 0, false, hb); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					return
				}
				if n == 20 {
					started <- struct{}{}
				}
			}
		}()
	}
	for range ids {
		select {
		case <-started:
		case <-time.After(time.Minute):
			t.Fatal("the devices did not get to publishing")
		}
	}
	s.Stop() // while they publish
	wg.Wait()

	ctx := context.Background()
	db, err := pgx.Connect(ctx, s.Options.DatabaseURL)
	require.NoError(t, err)
	defer db.Close(ctx)
	recorded := func() map[string]int {
		rows, err := db.Query(ctx, `SELECT event_id FROM device_events WHERE device_id = ANY($1)`, ids)
		require.NoError(t, err)
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		m := map[string]int{}
		for _, id := range got {
			m[id]++
		}
		return m
	}
	states := func() map[string]string {
		rows, err := db.Query(ctx, `SELECT device_id, state FROM device_presence WHERE device_id = ANY($1)`, ids)
		require.NoError(t, err)
		m := map[string]string{}
		for rows.Next() {
			var d, st string
			require.NoError(t, rows.Scan(&d, &st))
			m[d] = st
		}
		require.NoError(t, rows.Err())
		return m
	}
	// acked is the events each device got an acknowledgement for.
	acked := func(d *fakeDevice) map[string]bool {
		m := map[string]bool{}
		for _, b := range d.received(wire.KindAck) {
			var a wire.Ack
			require.NoError(t, json.Unmarshal(b, &a))
			for _, id := range a.IDs {
				m[id] = true
			}
		}
		return m
	}

	want := map[string]string{}
	for _, id := range ids {
		want[id] = "offline"
	}
	assert.Equal(t, want, states(), "the devices are gone: none is shown online")
	rec := recorded()
	nAcked, nTaken, nSent := 0, 0, 0
	for _, id := range ids {
		for ev := range acked(devs[id]) {
			nAcked++
			assert.Equal(t, 1, rec[ev], "event %s of %s acknowledged: recorded", ev, id)
		}
		for _, ev := range sent[id] {
			nSent++
			if pubacked[ev.ID] {
				nTaken++
			}
		}
	}
	t.Logf("before the stop's end: %d events sent, %d taken by the broker, %d recorded, %d acknowledged", nSent, nTaken, len(rec), nAcked)

	// The restart: the devices come back and send again what was not
	// acknowledged (kluisd keeps an event in its journal until then).
	o.DatabaseURL, o.Keys = s.Options.DatabaseURL, s.Options.Keys
	s2 := startBackend(t, o)
	s2.waitLink()
	for _, id := range ids {
		p, _ := s2.call("GET", "/api/v1/devices/"+id, nil, 200)["presence"].(map[string]any)
		require.NotNil(t, p)
		assert.Equal(t, false, p["online"], "%s is shown offline until it comes back", id)
	}
	for _, id := range ids {
		before := acked(devs[id])
		d := connectDevice(t, s2.Broker, id, pws[id], withWill(id))
		d.publish(wire.KindPresence, &wire.Presence{State: wire.Online, Software: "kluisd-test"})
		for _, ev := range sent[id] {
			if !before[ev.ID] {
				d.publish(wire.KindEvent, ev)
			}
		}
		testenv.Eventually(t, fmt.Sprintf("%s's resent events acknowledged", id), d.acksCaughtUp)
		s2.waitOnline(id)
	}
	rec = recorded()
	for _, id := range ids {
		for _, ev := range sent[id] {
			assert.Equal(t, 1, rec[ev.ID], "event %s of %s recorded once", ev.ID, id)
		}
	}
	assert.Len(t, rec, nSent, "no other event recorded")
}
