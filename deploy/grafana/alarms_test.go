package grafana

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// The open-alarm panels (kluis-fleet: per device and alarm, acknowledged
// or not; kluis-device: the chosen device's), evaluated by promtool on the
// series two backend replicas report: one row per device, alarm and
// acknowledged, the replicas merged (not counted twice), another device
// left out of the device dashboard.
func TestOpenAlarmPanels(t *testing.T) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (%v): run deploy/dev/ensure-services.sh promtool, as make test does", err)
	}
	exprs := map[string]string{}
	for f, d := range load(t) {
		for _, p := range d.AllPanels() {
			for _, tg := range p.Targets {
				if strings.Contains(tg.Expr, "kluis_device_alarms_open") {
					exprs[f+": "+p.Title] = grafanaVars.Replace(tg.Expr)
				}
			}
		}
	}
	fleet, device := exprs["kluis-fleet.json: Open alarms per device"], exprs["kluis-device.json: Open alarms"]
	require.NotEmpty(t, fleet, "the fleet dashboard has a panel of open alarms per device: %v", exprs)
	require.NotEmpty(t, device, "the device dashboard has a panel of its open alarms: %v", exprs)
	total := exprs["kluis-fleet.json: Open alarms, acknowledged or not"]
	require.NotEmpty(t, total, "%v", exprs)

	var series []map[string]string
	for _, inst := range []string{"backend-a:8080", "backend-b:8080"} {
		for _, s := range []struct{ dev, alarm, ack, v string }{
			{"locker-1", "forced_door", "no", "1"}, {"locker-1", "door_left_open", "yes", "2"}, {"locker-2", "journal_full", "no", "1"},
		} {
			series = append(series, map[string]string{
				"series": `kluis_device_alarms_open{acknowledged="` + s.ack + `", alarm="` + s.alarm + `", device="` + s.dev + `", instance="` + inst + `", job="kluis-backend"}`,
				"values": s.v + "x5"})
		}
	}
	type sample struct {
		Labels string  `yaml:"labels"`
		Value  float64 `yaml:"value"`
	}
	type exprTest struct {
		Expr     string   `yaml:"expr"`
		EvalTime string   `yaml:"eval_time"`
		Exp      []sample `yaml:"exp_samples"`
	}
	tests := []exprTest{
		{fleet, "2m", []sample{
			{`{acknowledged="no", alarm="forced_door", device="locker-1"}`, 1},
			{`{acknowledged="yes", alarm="door_left_open", device="locker-1"}`, 2},
			{`{acknowledged="no", alarm="journal_full", device="locker-2"}`, 1},
		}},
		{device, "2m", []sample{
			{`{acknowledged="no", alarm="forced_door"}`, 1},
			{`{acknowledged="yes", alarm="door_left_open"}`, 2},
		}},
		{total, "2m", []sample{
			{`{acknowledged="no", alarm="forced_door"}`, 1},
			{`{acknowledged="yes", alarm="door_left_open"}`, 2},
			{`{acknowledged="no", alarm="journal_full"}`, 1},
		}},
	}
	b, err := yaml.Marshal(map[string]any{"rule_files": []string{}, "evaluation_interval": "1m",
		"tests": []any{map[string]any{"interval": "1m", "input_series": series, "promql_expr_test": tests}}})
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "alarms.test.yml")
	require.NoError(t, os.WriteFile(file, b, 0o600))
	out, err := exec.Command(bin, "test", "rules", file).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "SUCCESS")
}
