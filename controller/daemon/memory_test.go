package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/daemon/daemontest"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

// gatedBoards is the SimFile driver whose boards answer Describe only
// once gate is closed: kluisd's engine is not ready until then.
type gatedBoards struct {
	*daemontest.SimFile
	gate <-chan struct{}
}

func (g gatedBoards) Describe(ctx context.Context) (hardware.Info, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return hardware.Info{}, ctx.Err()
	}
	return g.SimFile.Describe(ctx)
}

// gcPercent reads go_gc_gogc_percent (the runtime's /gc/gogc:percent)
// from a kluisd's /metrics; "" when it does not answer.
func gcPercent(t *testing.T, metrics string) string {
	t.Helper()
	resp, err := testenv.HTTPClient().Get("http://" + metrics + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "go_gc_gogc_percent "); ok {
			return v
		}
	}
	t.Fatalf("no go_gc_gogc_percent in /metrics")
	return ""
}

// kluisd's memory settings, seen from outside: the start keeps GOGC's
// percentage (its own /metrics says 100 while the boards have not
// answered), the collector runs at Options.GCPercent (50 from
// cmd/kluisd) once the engine is ready, and idlemem returns the heap's
// free memory after the first quiet period (its log line). GCPercent 0
// leaves GOGC's.
func TestGCPercentAndIdleMemoryAfterReady(t *testing.T) {
	// The percentage is the process's: the test's own, put back after.
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	logs := &testenv.SyncBuffer{}
	gate := make(chan struct{})
	d := runLocalDaemon(t, Options{GCPercent: 50, IdleMemory: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))},
		func(s *daemontest.SimFile) hardware.Driver { return gatedBoards{SimFile: s, gate: gate} })
	testenv.Eventually(t, "the metrics listener", func() bool { return gcPercent(t, d.metrics) != "" })
	code, _ := get(t, "http://"+d.metrics+"/healthz")
	require.Equal(t, http.StatusServiceUnavailable, code, "not ready while the boards do not answer")
	require.Equal(t, "100", gcPercent(t, d.metrics), "GOGC's percentage during the start")

	close(gate)
	d.waitReady(t)
	testenv.Eventually(t, "go_gc_gogc_percent 50 once ready", func() bool { return gcPercent(t, d.metrics) == "50" })
	testenv.Eventually(t, "idlemem returned the free memory", func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `msg="free memory returned to the OS"`) && strings.Contains(l, "part=idlemem") {
				return true
			}
		}
		return false
	})

	// GCPercent 0 (GOGC set in kluisd's environment): left alone.
	debug.SetGCPercent(100)
	d0 := startLocalDaemon(t, Options{})
	require.Equal(t, "100", gcPercent(t, d0.metrics))
}
