package devicelink

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/broker"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

func TestReplyCacheExpiresOldestFirst(t *testing.T) {
	c := newReplyCache(time.Minute, 3, 0)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, seen := c.get("a", t0)
	require.False(t, seen)
	close(a.done)
	b, _ := c.get("b", t0.Add(10*time.Second)) // still being answered
	again, seen := c.get("a", t0.Add(30*time.Second))
	assert.True(t, seen)
	assert.Same(t, a, again)

	// After a minute "a" expires; "b", older than a minute too, is kept
	// while it is being answered, and so is what came after it.
	cc, _ := c.get("c", t0.Add(50*time.Second))
	close(cc.done)
	a2, seen := c.get("a", t0.Add(75*time.Second))
	close(a2.done)
	assert.False(t, seen, "expired")
	assert.Equal(t, 3, c.size(), "b (unanswered), c and the new a")
	close(b.done)
	d, _ := c.get("d", t0.Add(76*time.Second))
	close(d.done)
	assert.Equal(t, 3, c.size(), "b expired now; c, a, d")
	_, seen = c.get("c", t0.Add(76*time.Second))
	assert.True(t, seen)

	// Over max, the oldest answered entries go even when fresh.
	for i := range 10 {
		r, _ := c.get(fmt.Sprint("n", i), t0.Add(80*time.Second))
		close(r.done)
	}
	assert.LessOrEqual(t, c.size(), 4, "max 3, plus the one just added")
}

func TestCoalescerKeepsTheLatestInArrivalOrder(t *testing.T) {
	c := newCoalescer()
	at := time.Now()
	assert.False(t, c.add("d1", false, []byte("on"), at))
	assert.False(t, c.add("d1", true, []byte("hb1"), at))
	assert.True(t, c.add("d1", true, []byte("hb2"), at))
	assert.False(t, c.add("d2", true, []byte("hb"), at))
	assert.True(t, c.add("d1", false, []byte("off"), at))
	assert.Equal(t, 2, c.len())
	got := c.take(1)
	require.Len(t, got, 1)
	assert.Equal(t, "d1", got[0].device, "first come first taken")
	assert.Equal(t, "off", string(got[0].presence))
	assert.Equal(t, "hb2", string(got[0].heartbeat))
	assert.Greater(t, got[0].presenceSeq, got[0].beatSeq, "the offline came after the heartbeat")
	assert.False(t, c.add("d1", true, []byte("hb3"), at), "taken: a new entry")
	got = c.take(10)
	require.Len(t, got, 2)
	assert.Equal(t, []string{"d2", "d1"}, []string{got[0].device, got[1].device})
	assert.Equal(t, 0, c.len())
}

// fleetResend is how long the fleet's devices wait for an event's
// acknowledgement before they publish it again.
const fleetResend = 5 * time.Second

// slowEvents is an EventHandler that takes its time, so that the link's
// queue fills.
type slowEvents struct {
	mu  sync.Mutex
	ids map[string]int
}

func (s *slowEvents) HandleEvent(ctx context.Context, tx pgx.Tx, device string, ev wire.Event) error {
	time.Sleep(5 * time.Millisecond)
	s.mu.Lock()
	s.ids[ev.ID]++
	s.mu.Unlock()
	return nil
}

func (s *slowEvents) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

// A small fleet on the embedded broker sends presence, heartbeats and
// events faster than a one-slot queue and a slow handler take them:
// events wait (back-pressure) rather than being dropped, presence and
// heartbeats are coalesced per device, and after the whole fleet says
// offline every device is recorded offline and the online count is 0.
//
// The devices publish an unacknowledged event again after fleetResend,
// as kluisd does after mqtt.resend_after, not every resendEvery: 30
// devices sending all of their pending events again five times a second
// fed the link's one worker duplicates faster than a loaded machine's
// database took them (each a transaction), and the events not yet
// applied waited behind them: no progress for 20 s at load 35.
func TestFleetPresenceNothingLost(t *testing.T) {
	for _, embedded := range []bool{false, true} {
		t.Run(map[bool]string{false: "over MQTT", true: "embedded"}[embedded], func(t *testing.T) {
			fleetNothingLost(t, embedded)
		})
	}
}

func fleetNothingLost(t *testing.T, embedded bool) {
	pool := newPool(t)
	creds := func(_ context.Context, user, pass string) (string, broker.Role, bool) {
		if user == "backend" {
			return "", broker.RoleBackend, pass == "backend-password"
		}
		return user, broker.RoleDevice, pass == "pw-"+user
	}
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0", Credentials: creds, Logger: quiet()})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	url := "tcp://" + b.Addr()

	reg := prometheus.NewRegistry()
	events := &slowEvents{ids: map[string]int{}}
	o := Options{URL: url, Username: "backend", Password: "backend-password", Pool: pool, Events: events,
		Logger: quiet(), Registry: reg, Workers: 1, QueueSize: 1, PresenceBatch: 7, OnlineRefresh: 50 * time.Millisecond}
	if embedded {
		o.Embedded = b
	}
	runLink(t, o)

	const n, beats, evs = 30, 4, 3
	devs := make([]*device, n)
	for i := range devs {
		id := fmt.Sprintf("fleet-%02d", i)
		devs[i] = newDeviceResending(t, url, id, "pw-"+id, fleetResend)
	}
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.raw(wire.KindPresence, []byte(`{"v":1,"state":"online","software":"kluisd 9"}`))
			for i := range beats {
				hb, _ := wire.Encode(&wire.Heartbeat{At: time.Now(), UptimeS: int64(i), Backlog: i})
				d.raw(wire.KindHeartbeat, hb)
			}
			for range evs {
				d.send(d.event(time.Now()))
			}
			d.raw(wire.KindPresence, []byte(`{"v":1,"state":"offline"}`))
		}()
	}
	wg.Wait()
	// One device is back: its heartbeat after its offline presence wins.
	hb, _ := wire.Encode(&wire.Heartbeat{At: time.Now(), UptimeS: 99})
	devs[0].raw(wire.KindHeartbeat, hb)

	// The link works through the fleet's messages one at a time, each in
	// its own transaction: how long that takes depends on the machine's
	// load (20 s was once not enough at load 26), so the waits fail only
	// when the work stops (nothing more applied, recorded or counted for
	// testenv.Within).
	counted := func(kind string) float64 {
		return metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": kind, "outcome": "ok"}) +
			metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": kind, "outcome": "coalesced"})
	}
	progress := func() string {
		unacked := 0
		for _, d := range devs {
			unacked += d.unacked()
		}
		return fmt.Sprint(events.count(), counted("presence"), counted("heartbeat"), unacked)
	}
	testenv.EventuallyProgressing(t, testenv.Within, "every event applied", progress, func() bool { return events.count() == n*evs })
	// The end state, not a moment on the way to it (n-1 offline rows and
	// one online were also true while fleet-00's last heartbeat and
	// another device's offline presence were both still in flight).
	testenv.EventuallyProgressing(t, testenv.Within, "every presence recorded", progress, func() bool {
		return countRows(t, pool, `SELECT count(*) FROM device_presence WHERE state = 'offline' AND device_id <> 'fleet-00'`) == n-1 &&
			countRows(t, pool, `SELECT count(*) FROM device_presence WHERE state = 'online' AND device_id = 'fleet-00'`) == 1
	})
	testenv.Eventually(t, "online count exact", func() bool {
		return metricValue(t, reg, "kluis_devicelink_devices_online", nil) == 1
	})
	assert.Equal(t, n, countRows(t, pool, `SELECT count(*) FROM device_diagnostics`))
	testenv.EventuallyProgressing(t, testenv.Within, "every heartbeat recorded or superseded", progress, func() bool { return counted("heartbeat") == n*beats+1 })
	assert.Equal(t, float64(2*n), counted("presence"))
	assert.Zero(t, metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "event", "outcome": "error"}))
	testenv.EventuallyProgressing(t, testenv.Within, "events acknowledged", progress, func() bool {
		for _, d := range devs {
			if d.unacked() != 0 {
				return false
			}
		}
		return true
	})
}
