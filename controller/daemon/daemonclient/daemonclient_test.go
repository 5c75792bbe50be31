package daemonclient_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/config"
	"kluis/controller/daemon"
	"kluis/controller/daemon/daemonclient"
	"kluis/controller/daemon/daemontest"
	"kluis/controller/promtext"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

// A real kluisd in-process (lock boards in a file, the shared test broker):
// Health follows it from ready and connected to gone, Metric reads its
// counters.
func TestAgainstKluisd(t *testing.T) {
	dir := t.TempDir()
	dev := fmt.Sprintf("daemonclient-%d", time.Now().UnixNano())
	metrics := testenv.FreeAddr(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
device_id: %s
site: dc
kind: locker
mqtt: {url: %s}
hardware: {driver: simfile, simfile: %s}
journal_dir: %s
kiosk: {listen: "%s"}
metrics_listen: "%s"
compartments:
  - {number: 1, board: 0, channel: 0}
`, dev, testenv.BrokerURL(), filepath.Join(dir, "board.sim"), filepath.Join(dir, "journal"), testenv.FreeAddr(t), metrics)),
		config.ParseOptions{AllowTestDrivers: true})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, daemon.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Software: "dc",
			OpenDriver: func(context.Context, *config.Config, *slog.Logger, promtext.Registerer) (hardware.Driver, error) {
				return daemontest.Open(cfg.Hardware.SimFile, 1, 16)
			}})
	}()

	c := daemonclient.New(metrics, daemonclient.Options{HTTP: testenv.HTTPClient()})
	testenv.MustPoll(t, 30*time.Second, "kluisd ready and connected", func(ctx context.Context) (bool, string, error) {
		h, err := c.Health(ctx)
		return err == nil && h.Ready && h.MQTTConnected, fmt.Sprintf("%+v", h), nil
	})
	h, err := c.Health(ctx)
	require.NoError(t, err)
	require.Equal(t, daemonclient.Health{Ready: true, MQTTConnected: true, Backlog: h.Backlog}, h)

	all, err := c.Metrics(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, all)
	for _, s := range all {
		require.True(t, strings.HasPrefix(s.Name, "kluisd_") || strings.HasPrefix(s.Name, "go_") || strings.HasPrefix(s.Name, "process_") ||
			strings.HasPrefix(s.Name, "promhttp_"), "a sample's name, not a line: %q", s.Name)
	}
	v, err := c.Metric(ctx, "kluisd_offline_cache_entries", "")
	require.NoError(t, err)
	require.Equal(t, 0.0, v)
	v, err = c.Metric(ctx, "no_such_metric", "")
	require.NoError(t, err)
	require.Equal(t, 0.0, v)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("kluisd did not stop")
	}
	_, err = c.Health(context.Background())
	require.Error(t, err, "nobody listens any more")
	_, err = c.Metrics(context.Background())
	require.Error(t, err)
}

func TestParse(t *testing.T) {
	s, err := daemonclient.Parse(strings.NewReader(`# HELP kluisd_alarms_total Alarms.
# TYPE kluisd_alarms_total counter
kluisd_alarms_total{alarm="door_left_open"} 2
kluisd_alarms_total{alarm="forced_door"} 1
kluisd_alarms_total_extra 9
kluisd_verifications_total{result="ok",source="offline"} 3
kluisd_verifications_total{result="ok",source="online"} 4 1712345678000
kluisd_label_with_brace{note="a } b"} 5
kluisd_ready 1
garbage line
kluisd_bad_value{a="b"} x
`))
	require.NoError(t, err)
	require.Len(t, s, 7)
	require.Equal(t, 2.0, s.Value("kluisd_alarms_total", ""), "the first sample")
	require.Equal(t, 1.0, s.Value("kluisd_alarms_total", `alarm="forced_door"`))
	require.Equal(t, 3.0, s.Sum("kluisd_alarms_total", ""), "not kluisd_alarms_total_extra")
	require.Equal(t, 7.0, s.Sum("kluisd_verifications_total", `result="ok"`))
	require.Equal(t, 4.0, s.Value("kluisd_verifications_total", `result="ok",source="online"`), "a timestamp is not the value")
	require.Equal(t, 5.0, s.Value("kluisd_label_with_brace", ""))
	require.Equal(t, 1.0, s.Value("kluisd_ready", ""))
	require.Equal(t, 0.0, s.Value("kluisd_alarms_total", `alarm="none"`))
}
