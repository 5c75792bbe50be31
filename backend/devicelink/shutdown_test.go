package devicelink

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
)

// A shutdown that cuts short a batch of presences in flight loses none of
// them: the batch goes back to the coalescer and the drain writes it. Here
// the database holds the batch (a row lock on one device's presence)
// when the link stops; both devices' offline presences are recorded once
// the lock goes. Before, the batch was dropped ("recording presence
// stopped; not recorded", seen at every restart of the fleet bench): a
// device that went offline just before the backend stopped, and did not
// come back, stayed online in the database.
func TestShutdownRecordsTheBatchItCutShort(t *testing.T) {
	pool := newPool(t)
	reg := prometheus.NewRegistry()
	l, err := New(Options{Pool: pool, Logger: quiet(), Registry: reg})
	require.NoError(t, err)
	bg := context.Background()
	since := time.Now().Add(-time.Hour).UTC()
	_, err = pool.Exec(bg, `INSERT INTO device_presence (device_id, state, changed_at) VALUES ('dev-a', 'online', $1)`, since)
	require.NoError(t, err)
	lock, err := pool.Begin(bg)
	require.NoError(t, err)
	defer func() { _ = lock.Rollback(bg) }()
	_, err = lock.Exec(bg, `SELECT 1 FROM device_presence WHERE device_id = 'dev-a' FOR UPDATE`)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(bg)
	done := make(chan struct{})
	go func() { defer close(done); l.recordPresence(ctx) }()
	for _, dev := range []string{"dev-a", "dev-b"} {
		topic, err := wire.TopicFor(dev, wire.KindPresence)
		require.NoError(t, err)
		off, err := wire.Encode(&wire.Presence{State: wire.Offline, At: ptr(time.Now().UTC())})
		require.NoError(t, err)
		l.receive(topic, off)
	}
	// waiter is the start of the statement waiting for the lock ("": none).
	waiter := func() string {
		var at string
		_ = pool.QueryRow(bg, `SELECT coalesce(max(query_start)::text, '') FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&at)
		return at
	}
	var first string
	require.Eventually(t, func() bool { first = waiter(); return first != "" }, wait, 10*time.Millisecond, "the batch waits for the lock")

	cancel() // the shutdown, with the batch in flight
	require.Eventually(t, func() bool {
		select {
		case <-done:
			return true
		default:
			return waiter() != first
		}
	}, wait, 10*time.Millisecond, "the cut-short statement is cancelled")
	require.NoError(t, lock.Rollback(bg))
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("recordPresence did not end")
	}
	var states []string
	rows, err := pool.Query(bg, `SELECT device_id || ' ' || state FROM device_presence ORDER BY device_id`)
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		states = append(states, s)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, []string{"dev-a offline", "dev-b offline"}, states)
	assert.Zero(t, metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "presence", "outcome": "error"}))
}

func ptr[T any](v T) *T { return &v }

// What goes back to the coalescer goes first, but a newer message of the
// same device that arrived meanwhile wins over the one put back.
func TestCoalescerPutBackKeepsTheNewer(t *testing.T) {
	c := newCoalescer()
	at := time.Now()
	c.add("d1", false, []byte("off"), at)
	c.add("d1", true, []byte("hb1"), at)
	c.add("d2", true, []byte("hb"), at)
	taken := c.take(2)
	require.Len(t, taken, 2)
	c.add("d3", false, []byte("on"), at)
	c.add("d1", true, []byte("hb2"), at) // newer than the heartbeat taken
	c.putBack(taken)
	got := c.take(10)
	require.Len(t, got, 3)
	assert.Equal(t, []string{"d1", "d2", "d3"}, []string{got[0].device, got[1].device, got[2].device}, "put back first, in the order taken")
	assert.Equal(t, "off", string(got[0].presence), "nothing newer: the one put back")
	assert.Equal(t, "hb2", string(got[0].heartbeat), "the newer heartbeat wins")
	assert.Equal(t, 0, c.len())
}
