package server_test

import (
	"net"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/backend/server/servertest"
)

// The open-file limit is shared so that the broker's cap, the HTTP cap,
// the pool and the reserve fit: before, the broker's default (the limit
// minus the reserve) and the HTTP default (a quarter of the limit) each
// counted on the same descriptors, e.g. 960 + 256 + the pool at the
// usual 1,024.
func TestPlanDescriptors(t *testing.T) {
	for _, c := range []struct {
		name                  string
		limit                 uint64
		embedded              bool
		httpMax, pool         int
		broker, http, reserve int
		clamped, fits         bool
	}{
		{"the unit's 65536", 65536, true, 0, 10, 60406, 4096, 1024, false, true},
		{"a shell's 1024", 1024, true, 0, 10, 694, 256, 64, false, true},
		{"an HTTP cap over the limit", 20000, true, 30000, 10, 64, 19301, 625, true, true},
		{"an external broker", 1024, false, 5000, 10, 0, 950, 64, true, true},
		{"an external broker, the default", 65536, false, 0, 20, 0, 4096, 1024, false, true},
		{"a limit too small", 100, true, 0, 10, 64, 1, 64, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := server.PlanDescriptors(c.limit, c.embedded, c.httpMax, c.pool)
			assert.Equal(t, c.broker, d.Broker, "broker")
			assert.Equal(t, c.http, d.HTTP, "http")
			assert.Equal(t, c.reserve, d.Reserve, "reserve")
			assert.Equal(t, c.pool, d.Pool, "pool")
			assert.Equal(t, c.clamped, d.HTTPClamped, "clamped")
			assert.Equal(t, c.fits, d.Fits(), "fits")
			if c.fits && c.embedded {
				assert.Equal(t, int(c.limit), d.Need(), "the broker takes the rest")
			}
		})
	}
}

// A backend asked for an HTTP cap over its open-file limit lowers it and
// says so, and its embedded broker holds the connections it was given
// (64 here: the HTTP cap leaves it no more), refusing the next ones.
func TestBackendSharesItsFileLimit(t *testing.T) {
	var rl syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl))
	reg := prometheus.NewRegistry()
	b := servertest.Start(t, server.Options{HTTPMaxConnections: 1 << 30, Registry: reg})
	log := b.Log.String()
	m := regexp.MustCompile(`-http-max-connections lowered.* limit=(\d+) broker_connections=(\d+) http_connections=(\d+) database_pool=(\d+) reserve=(\d+) http_connections_asked=1073741824`).FindStringSubmatch(log)
	require.NotNil(t, m, log)
	n := make([]int, 5)
	for i := range n {
		n[i], _ = strconv.Atoi(m[i+1])
	}
	assert.Equal(t, int(rl.Cur), n[0])
	assert.Equal(t, 64, n[1], "the broker keeps its least")
	assert.Equal(t, n[0], n[1]+n[2]+n[3]+n[4], "the limit is shared out")

	refused := func() float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "kluis_broker_connections_refused_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := 0; i < 80 && refused() == 0; i++ {
		c, err := net.DialTimeout("tcp", b.Broker, 5*time.Second)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for refused() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	assert.Positive(t, refused(), "the broker refuses past its 64 connections (the backend's own link holds one)")
}
