package prometheus

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"kluis/deploy/prometheus/promcheck"
)

// promtool runs Debian's promtool in this directory. A missing promtool
// fails the test: make test installs it (deploy/dev/ensure-services.sh).
func promtool(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (%v): run deploy/dev/ensure-services.sh promtool, as make test does", err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestPromtoolCheck(t *testing.T) {
	out := promtool(t, "check", "rules", "kluis-alerts.yml")
	assert.Contains(t, out, "SUCCESS")
	out = promtool(t, "check", "config", "prometheus.yml")
	assert.Contains(t, out, "kluis-alerts.yml", "the example configuration loads the rules")
	promtool(t, "check", "config", "--agent", "kluisd-agent.yml")
}

// The unit tests of kluis-alerts.test.yml: every alert fires on its input
// series with the expected labels and rendered annotations, and stays
// silent where it should.
func TestPromtoolUnitTests(t *testing.T) {
	out := promtool(t, "test", "rules", "kluis-alerts.test.yml")
	assert.Contains(t, out, "SUCCESS")
}

type ruleTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			AlertName string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// Every alert has a severity, a summary and a description, and a runbook in
// docs/operations.md; the unit tests make it fire (annotations compared)
// and keep it silent at least once each.
func TestRulesConventionsAndCoverage(t *testing.T) {
	var rf promcheck.RuleFile
	require.NoError(t, yaml.Unmarshal(Rules, &rf))
	ops, err := os.ReadFile("../../docs/operations.md")
	require.NoError(t, err)
	var tf ruleTests
	b, err := os.ReadFile("kluis-alerts.test.yml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &tf))
	assert.Equal(t, []string{"kluis-alerts.yml"}, tf.RuleFiles)
	fired, silent := map[string]int{}, map[string]int{}
	for _, tc := range tf.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) == 0 {
				silent[at.AlertName]++
			}
			for _, ea := range at.ExpAlerts {
				fired[at.AlertName]++
				assert.NotEmpty(t, ea.ExpAnnotations, "%s at %s: annotations are compared", at.AlertName, at.EvalTime)
			}
		}
	}

	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				continue
			}
			a := r.Alert
			require.NotEmpty(t, a, "group %s: a rule without alert or record", g.Name)
			assert.False(t, alerts[a], "%s: defined twice", a)
			alerts[a] = true
			assert.Regexp(t, `^Kluis[A-Za-z]+$`, a)
			assert.Contains(t, []string{"critical", "warning"}, r.Labels["severity"], "%s: severity", a)
			assert.NotEmpty(t, r.Annotations["summary"], "%s: summary", a)
			assert.NotEmpty(t, r.Annotations["description"], "%s: description", a)
			assert.Equal(t, "docs/operations.md#"+strings.ToLower(a), r.Annotations["runbook_url"], "%s: runbook", a)
			assert.True(t, regexp.MustCompile(`(?m)^### `+a+`$`).Match(ops), "%s: docs/operations.md has no heading \"### %s\"", a, a)
			assert.Positive(t, fired[a], "%s: no unit test makes it fire", a)
			assert.Positive(t, silent[a], "%s: no unit test shows it silent", a)
		}
	}
	for a := range fired {
		assert.True(t, alerts[a], "the unit tests name an unknown alert %s", a)
	}
	for a := range silent {
		assert.True(t, alerts[a], "the unit tests name an unknown alert %s", a)
	}
}
