package web

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/store/storetest"
)

// The dashboard reads the last heartbeat where the device link keeps it:
// in device_diagnostics (migration 0120: a narrow presence row).
func TestPresenceRowsFollowTheHeartbeat(t *testing.T) {
	t.Parallel() // its own database
	ctx := context.Background()
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	hb := `{"v":1,"at":"2026-03-04T05:06:07Z","uptime_s":60,"backlog":4,"offline_cache":0,"doors":[{"addr":{"board":0,"channel":2},"locked":false,"door_open":true,"item_present":false}]}`
	db := storetest.New(t).Pool()
	_, err := db.Exec(ctx, `INSERT INTO device_presence (device_id, state, changed_at, software, last_heartbeat_at) VALUES ('k1', 'online', $1, 'kluisd 2', $1)`, at)
	require.NoError(t, err)
	_, err = db.Exec(ctx, `INSERT INTO device_diagnostics (device_id, at, heartbeat) VALUES ('k1', $1, $2)`, at, hb)
	require.NoError(t, err)
	rows, err := presenceRows(ctx, db)
	require.NoError(t, err)
	p := rows["k1"]
	require.True(t, p.Online)
	require.JSONEq(t, hb, string(p.Heartbeat))
	// A device whose heartbeat has not come yet: its presence, no payload.
	_, err = db.Exec(ctx, `INSERT INTO device_presence (device_id, state, changed_at, software) VALUES ('k2', 'offline', $1, 'kluisd 2')`, at)
	require.NoError(t, err)
	rows, err = presenceRows(ctx, db)
	require.NoError(t, err)
	require.False(t, rows["k2"].Online)
	require.Nil(t, rows["k2"].Heartbeat)
	require.Nil(t, rows["k2"].LastHeartbeat)
	keys, err := presenceKeys(ctx, db)
	require.NoError(t, err)
	require.Contains(t, keys["k1"], "online|")
}
