package grafana

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"kluis/deploy/prometheus/promcheck"
)

func load(t *testing.T) map[string]promcheck.Dashboard {
	t.Helper()
	files, err := fs.Glob(Dashboards, "*.json")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"kluis-fleet.json", "kluis-device.json"}, files)
	out := map[string]promcheck.Dashboard{}
	for _, f := range files {
		b, err := fs.ReadFile(Dashboards, f)
		require.NoError(t, err)
		dec := json.NewDecoder(bytes.NewReader(b))
		var d promcheck.Dashboard
		require.NoError(t, dec.Decode(&d), f)
		var raw map[string]any
		require.NoError(t, json.Unmarshal(b, &raw), f)
		assert.EqualValues(t, 39, raw["schemaVersion"], f)
		out[f] = d
	}
	return out
}

// The dashboards are well formed: unique uids and panel ids, the
// Prometheus data source from the `datasource` variable on every panel and
// query, panels inside the 24-column grid without overlapping, and on the
// device dashboard every query selects the chosen device.
func TestDashboardsWellFormed(t *testing.T) {
	uids := map[string]bool{}
	for f, d := range load(t) {
		assert.NotEmpty(t, d.Title, f)
		assert.Regexp(t, `^kluis-[a-z]+$`, d.UID, f)
		assert.False(t, uids[d.UID], "%s: uid %s used twice", f, d.UID)
		uids[d.UID] = true

		vars := map[string]promcheck.Variable{}
		for _, v := range d.Templating.List {
			vars[v.Name] = v
		}
		require.Contains(t, vars, "datasource", f)
		assert.Equal(t, "datasource", vars["datasource"].Type, f)
		assert.Equal(t, `"prometheus"`, string(vars["datasource"].Query), f)

		ids := map[int]bool{}
		type cell struct{ x, y int }
		used := map[cell]string{}
		for _, p := range d.AllPanels() {
			assert.False(t, ids[p.ID], "%s: panel id %d twice", f, p.ID)
			ids[p.ID] = true
			g := p.GridPos
			assert.True(t, g.W > 0 && g.H > 0 && g.X >= 0 && g.X+g.W <= 24, "%s: %q at %+v", f, p.Title, g)
			for x := g.X; x < g.X+g.W; x++ {
				for y := g.Y; y < g.Y+g.H; y++ {
					if other, ok := used[cell{x, y}]; ok {
						t.Errorf("%s: panels %q and %q overlap", f, other, p.Title)
					}
					used[cell{x, y}] = p.Title
				}
			}
			if p.Type == "row" {
				continue
			}
			assert.JSONEq(t, `{"type": "prometheus", "uid": "${datasource}"}`, string(p.Datasource), "%s: %q", f, p.Title)
			require.NotEmpty(t, p.Targets, "%s: %q has no query", f, p.Title)
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				assert.NotEmpty(t, tg.Expr, "%s: %q", f, p.Title)
				assert.False(t, refs[tg.RefID], "%s: %q: refId %s twice", f, p.Title, tg.RefID)
				refs[tg.RefID] = true
				assert.JSONEq(t, `{"type": "prometheus", "uid": "${datasource}"}`, string(tg.Datasource), "%s: %q", f, p.Title)
				if d.UID == "kluis-device" {
					assert.Contains(t, tg.Expr, `device="$device"`, "%s: %q selects the chosen device", f, p.Title)
				}
			}
		}
		if d.UID == "kluis-device" {
			require.Contains(t, vars, "device", f)
			assert.Equal(t, "query", vars["device"].Type)
			assert.Equal(t, "label_values(kluis_device_online, device)", vars["device"].QueryText())
		}
	}
	assert.Len(t, uids, 2)
}

// grafanaVars stands in for Grafana's variables so that promtool can parse
// the queries.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "$device", "locker-1")

// Every query parses as PromQL: promtool checks them as recording rules
// (with Grafana's variables replaced). A missing promtool fails the test:
// make test installs it (deploy/dev/ensure-services.sh).
func TestQueriesParse(t *testing.T) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (%v): run deploy/dev/ensure-services.sh promtool, as make test does", err)
	}
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	n := 0
	for f, d := range load(t) {
		for _, p := range d.AllPanels() {
			for _, tg := range p.Targets {
				n++
				expr := grafanaVars.Replace(tg.Expr)
				require.NotContains(t, expr, "$", "%s: %q: a Grafana variable promtool would not parse", f, p.Title)
				rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query:%d", n), Expr: expr})
			}
		}
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboards", "rules": rules}}})
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "queries.yml")
	require.NoError(t, os.WriteFile(file, b, 0o600))
	out, err := exec.Command(bin, "check", "rules", file).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Regexp(t, regexp.MustCompile(fmt.Sprintf(`SUCCESS: %d rules found`, n)), string(out))
}
