package devicelink

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// series returns the samples of family by their device label.
func series(t *testing.T, reg *prometheus.Registry, family string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "device" {
					out[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// kluis_device_online{device} follows the stored presence and
// kluis_device_last_heartbeat_timestamp_seconds{device} the last heartbeat,
// both read at scrape time.
func TestPresenceMetricsPerDevice(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	reg := prometheus.NewRegistry()
	startLink(t, linkSetup{url: testenv.BrokerURL(), group: "kluis-test-" + randHex(4), device: dev, pool: pool, reg: reg})
	d := newDevice(t, testenv.BrokerURL(), dev)
	online := func() (float64, bool) { v, ok := series(t, reg, "kluis_device_online")[dev]; return v, ok }

	_, ok := online()
	require.False(t, ok, "a device never seen has no series")
	d.raw(wire.KindPresence, []byte(`{"v":1,"state":"online","software":"kluisd 1.2"}`))
	testenv.Eventually(t, "online", func() bool { v, ok := online(); return ok && v == 1 })
	assert.NotContains(t, series(t, reg, "kluis_device_last_heartbeat_timestamp_seconds"), dev, "no heartbeat yet")

	d.raw(wire.KindPresence, []byte(`{"v":1,"state":"offline"}`))
	testenv.Eventually(t, "offline", func() bool { v, ok := online(); return ok && v == 0 })

	before := time.Now()
	hb, err := wire.Encode(&wire.Heartbeat{At: time.Now(), UptimeS: 5})
	require.NoError(t, err)
	d.raw(wire.KindHeartbeat, hb)
	testenv.Eventually(t, "heartbeat", func() bool {
		_, ok := series(t, reg, "kluis_device_last_heartbeat_timestamp_seconds")[dev]
		return ok
	})
	after := time.Now()
	at := series(t, reg, "kluis_device_last_heartbeat_timestamp_seconds")[dev]
	assert.GreaterOrEqual(t, at, float64(before.UnixMilli())/1000-0.001)
	assert.LessOrEqual(t, at, float64(after.UnixMilli())/1000+0.001)
	v, _ := online()
	assert.Equal(t, 1.0, v, "a heartbeat marks the device online")
}

// Without the database the scrape still succeeds, with no presence series
// (never a false "offline").
func TestPresenceMetricsDatabaseDown(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `INSERT INTO device_presence (device_id, state, changed_at) VALUES ('dev-x', 'online', now())`)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	_, err = New(Options{Pool: pool, Registry: reg, Logger: quiet(), Timeout: time.Second})
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"dev-x": 1}, series(t, reg, "kluis_device_online"))
	pool.Close()
	assert.Empty(t, series(t, reg, "kluis_device_online"))
}
