package promcheck

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/promtext"
)

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`up{job="kluisd"} == 0`:                      {"up"},
		`max by (device) (kluis_device_online) == 0`: {"kluis_device_online"},
		`sum without (instance, job) (rate(kluisd_alarms_total{alarm=~"forced_door|x"}[15m]))`: {"kluisd_alarms_total"},
		`time() - max by (device) (kluis_device_last_heartbeat_timestamp_seconds) > 300`:       {"kluis_device_last_heartbeat_timestamp_seconds"},
		// Keywords, modifiers, numbers, durations, label lists and strings are not names.
		`a > bool 1 and on (device) group_left (board) b unless ignoring(x) c offset 5m or d @ start()`:      {"a", "b", "c", "d"},
		`histogram_quantile(0.95, sum by (le, route) (rate(kluis_api_request_duration_seconds_bucket[5m])))`: {"kluis_api_request_duration_seconds_bucket"},
		`label_replace(x, "dst", "$1 and y", "src", "(.*)")`:                                                 {"x"},
		`count_values("version", build_info) + topk(3, y) * 1e3`:                                             {"build_info", "y"},
		`sum(rate(q[$__rate_interval])) / ${factor} + z{device="$device"} * $scale`:                          {"q", "z"},
		"min_over_time(kluisd_journal_backlog[15m:1m]) # a comment naming nothing_here\n > 0":                {"kluisd_journal_backlog"},
		`sum by (device) (job:kluisd_alarms:rate5m) > Inf or NaN`:                                            {"job:kluisd_alarms:rate5m"},
		`vector(0)`:                      {},
		`sum\n  by (device)\n  (a)`:      {"a"},
		`{job="x"} and 'quoted \' name'`: {},
	} {
		got, err := MetricNames(strings.ReplaceAll(expr, `\n`, "\n"))
		require.NoError(t, err, expr)
		if want == nil {
			want = []string{}
		}
		assert.Equal(t, want, got, expr)
	}
}

func TestMetricNamesRefused(t *testing.T) {
	for _, expr := range []string{
		`{__name__=~"kluis_.*"}`, // names the tokenizer cannot see
		`rate(x[5m]`,             // unclosed
		`x{a="b"`,
		`x}`,
		`x{a="b}`,
		`sum(x[5m)])`,
	} {
		_, err := MetricNames(expr)
		assert.Error(t, err, expr)
	}
}

func TestVariableNames(t *testing.T) {
	for q, want := range map[string][]string{
		`label_values(kluis_device_online, device)`:                    {"kluis_device_online"},
		`label_values(kluisd_boards_down{device="$device"}, instance)`: {"kluisd_boards_down"},
		`label_values(device)`:                                         nil,
		`query_result(max by (device) (kluis_device_online))`:          {"kluis_device_online"},
		`up{job="kluisd"}`:                                             {"up"},
	} {
		got, err := VariableNames(q)
		require.NoError(t, err, q)
		assert.Equal(t, want, got, q)
	}
	_, err := VariableNames(`metrics(kluis_.*)`)
	assert.Error(t, err)
}

func TestRuleAndDashboardNames(t *testing.T) {
	u := Used{}
	rec, err := RuleNames(u, "r.yml", []byte(`
groups:
  - name: g
    rules:
      - record: job:x:sum
        expr: sum(x)
      - alert: A
        expr: job:x:sum > 0 and y == 1
`))
	require.NoError(t, err)
	assert.Equal(t, []string{"job:x:sum"}, rec)
	fsys := fstest.MapFS{"d.json": {Data: []byte(`{"panels": [
		{"type": "stat", "title": "P", "targets": [{"expr": "sum(z)"}]},
		{"type": "row", "title": "R", "panels": [{"type": "timeseries", "title": "Q", "targets": [{"expr": "w"}]}]}],
		"templating": {"list": [{"name": "device", "type": "query", "query": {"query": "label_values(v, device)"}},
			{"name": "ds", "type": "datasource", "query": "prometheus"}]}}`)}}
	require.NoError(t, DashboardNames(u, fsys))
	assert.Equal(t, Used{
		"x": {"r.yml: job:x:sum"}, "job:x:sum": {"r.yml: A"}, "y": {"r.yml: A"},
		"z": {`d.json: panel "P"`}, "w": {`d.json: panel "Q"`}, "v": {"d.json: variable device"},
	}, u)
}

func TestExportedSeesVectorsWithoutChildren(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		prometheus.NewCounterVec(prometheus.CounterOpts{Name: "a_total", Help: "h"}, []string{"l"}),
		prometheus.NewGauge(prometheus.GaugeOpts{Name: "b", Help: "h"}),
		prometheus.NewHistogram(prometheus.HistogramOpts{Name: "c_seconds", Help: "h"}),
	)
	got, err := Exported(reg)
	require.NoError(t, err)
	for _, n := range []string{"a_total", "b", "c_seconds_bucket", "c_seconds_sum", "c_seconds_count"} {
		assert.True(t, got[n], n)
	}
	for _, n := range []string{"b_bucket", "c_seconds", "d"} {
		assert.False(t, got[n], n)
	}
}

// The same for kluisd's registry (promtext): vectors without series
// count, histograms and summaries bring their series' suffixes.
func TestExportedTextSeesVectorsWithoutChildren(t *testing.T) {
	reg := promtext.NewRegistry()
	reg.MustRegister(
		promtext.NewCounterVec(promtext.CounterOpts{Name: "a_total", Help: "h"}, []string{"l"}),
		promtext.NewGauge(promtext.GaugeOpts{Name: "b", Help: "h"}),
		promtext.NewHistogram(promtext.HistogramOpts{Name: "c_seconds", Help: "h"}),
		promtext.NewGoCollector(),
	)
	got := ExportedText(reg)
	for _, n := range []string{"a_total", "b", "c_seconds_bucket", "c_seconds_sum", "c_seconds_count", "go_goroutines",
		"go_gc_duration_seconds", "go_gc_duration_seconds_count"} {
		assert.True(t, got[n], n)
	}
	for _, n := range []string{"b_bucket", "c_seconds", "d", "go_gc_duration_seconds_bucket"} {
		assert.False(t, got[n], n)
	}
}

func TestOwnerAndMissing(t *testing.T) {
	assert.Equal(t, Kluisd, Owner("kluisd_boards_down"))
	assert.Equal(t, Kluisd, Owner("kluis_kluisbus_board_online"))
	assert.Equal(t, Backend, Owner("kluis_device_online"))
	assert.Equal(t, Any, Owner("process_resident_memory_bytes"))
	assert.Equal(t, Prometheus, Owner("up"))
	assert.Equal(t, "", Owner("node_load1"))
	u := Used{"kluisd_a": {"r: A"}, "kluisd_b": {"r: B"}, "kluis_c": {"d: P"}}
	assert.Equal(t, []string{"kluisd_b (used in r: B)"}, Missing(u, map[string]bool{"kluisd_a": true}, Kluisd))
}
