// Package promcheck finds the metric names that the alert rules
// (deploy/prometheus) and the Grafana dashboards (deploy/grafana) select, and
// the names a Prometheus registry really exports, so that tests can show that
// no rule or panel waits for a series that never comes.
//
// It reads PromQL with a small tokenizer rather than Prometheus's parser (a
// large module for one test): identifiers outside label matchers, ranges,
// grouping lists and string literals that are not followed by "(" and are
// not keywords or aggregation operators. Selecting by __name__ is refused,
// as the tokenizer cannot see such names.
package promcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"kluis/controller/promtext"
)

// keywords are PromQL words that are not metric names when they are not
// followed by "(": binary and set operators, modifiers, aggregation
// operators (as in "sum by (x) (...)") and the number literals.
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true, "inf": true, "nan": true,
}

// grouping keywords take a parenthesised list of label names.
var grouping = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

func identStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func identChar(c byte) bool { return identStart(c) || c >= '0' && c <= '9' }

func space(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// MetricNames returns the metric names expr selects, sorted and unique.
// Grafana's variables ($x, ${x}, [[x]]) are ignored.
func MetricNames(expr string) ([]string, error) {
	if strings.Contains(expr, "__name__") {
		return nil, fmt.Errorf("promcheck: %q selects by __name__, which cannot be checked", expr)
	}
	seen := map[string]bool{}
	s := expr
	depth := 0
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case space(c):
			i++
		case c == '(' || c == ')':
			if c == '(' {
				depth++
			} else if depth--; depth < 0 {
				return nil, fmt.Errorf("promcheck: unbalanced ')' at %d in %q", i, expr)
			}
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '{' || c == '[':
			end, err := skipGroup(s, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '}' || c == ']':
			return nil, fmt.Errorf("promcheck: unbalanced '%c' at %d in %q", c, i, expr)
		case c == '$':
			i++
			if i < len(s) && s[i] == '{' {
				end, err := skipGroup(s, i)
				if err != nil {
					return nil, err
				}
				i = end
				break
			}
			for i < len(s) && identChar(s[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			// Numbers and durations (offset 5m, 1e3, 0x1f).
			for i < len(s) && (identChar(s[i]) || s[i] == '.') {
				i++
			}
		case identStart(c):
			j := i
			for j < len(s) && identChar(s[j]) {
				j++
			}
			word := s[i:j]
			k := j
			for k < len(s) && space(s[k]) {
				k++
			}
			lower := strings.ToLower(word)
			switch {
			case grouping[lower]:
				if k < len(s) && s[k] == '(' {
					end, err := skipGroup(s, k)
					if err != nil {
						return nil, err
					}
					j = end
				}
			case k < len(s) && s[k] == '(':
				// A function or an aggregation: its arguments follow.
			case keywords[lower]:
			default:
				seen[word] = true
			}
			i = j
		default:
			i++
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("promcheck: unclosed '(' in %q", expr)
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// skipString returns the index after the string literal starting at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("promcheck: unterminated string at %d in %q", i, s)
}

// skipGroup returns the index after the bracket opened at i and its match,
// skipping string literals inside.
func skipGroup(s string, i int) (int, error) {
	closing := map[byte]byte{'{': '}', '[': ']', '(': ')'}
	var stack []byte
	for j := i; j < len(s); j++ {
		switch c := s[j]; c {
		case '"', '\'', '`':
			end, err := skipString(s, j)
			if err != nil {
				return 0, err
			}
			j = end - 1
		case '{', '[', '(':
			stack = append(stack, closing[c])
		case '}', ']', ')':
			if len(stack) == 0 || stack[len(stack)-1] != c {
				return 0, fmt.Errorf("promcheck: unbalanced '%c' at %d in %q", c, j, s)
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return j + 1, nil
			}
		}
	}
	return 0, fmt.Errorf("promcheck: unclosed '%c' at %d in %q", s[i], i, s)
}

var labelValues = regexp.MustCompile(`^\s*label_values\s*\((.*)\)\s*$`)
var queryResult = regexp.MustCompile(`^\s*query_result\s*\((.*)\)\s*$`)

// VariableNames returns the metric names a Grafana Prometheus variable
// query selects: label_values(selector, label), label_values(label),
// query_result(expr) or a plain expression.
func VariableNames(query string) ([]string, error) {
	if m := labelValues.FindStringSubmatch(query); m != nil {
		args := m[1]
		depth, cut := 0, -1
		for i := 0; i < len(args); i++ {
			switch args[i] {
			case '"', '\'', '`':
				end, err := skipString(args, i)
				if err != nil {
					return nil, err
				}
				i = end - 1
			case '{', '(', '[':
				depth++
			case '}', ')', ']':
				depth--
			case ',':
				if depth == 0 {
					cut = i
				}
			}
		}
		if cut < 0 {
			return nil, nil // label_values(label): every series, no name
		}
		return MetricNames(args[:cut])
	}
	if strings.HasPrefix(strings.TrimSpace(query), "metrics(") {
		return nil, fmt.Errorf("promcheck: variable query %q lists metric names, which cannot be checked", query)
	}
	if m := queryResult.FindStringSubmatch(query); m != nil {
		return MetricNames(m[1])
	}
	return MetricNames(query)
}

// Used maps each metric name to where it is used ("file: rule or panel").
type Used map[string][]string

func (u Used) add(names []string, where string) {
	for _, n := range names {
		u[n] = append(u[n], where)
	}
}

// RuleFile is the part of a Prometheus rule file that matters here.
type RuleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// RuleNames adds the names every rule's expression selects to u and
// returns the names the file records (recording rules), which are
// exported by Prometheus itself.
func RuleNames(u Used, file string, data []byte) (recorded []string, err error) {
	var rf RuleFile
	if err := yaml.Unmarshal(data, &rf); err != nil {
		return nil, fmt.Errorf("promcheck: %s: %w", file, err)
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			names, err := MetricNames(r.Expr)
			if err != nil {
				return nil, fmt.Errorf("promcheck: %s: %s%s: %w", file, r.Alert, r.Record, err)
			}
			u.add(names, fmt.Sprintf("%s: %s%s", file, r.Alert, r.Record))
			if r.Record != "" {
				recorded = append(recorded, r.Record)
			}
		}
	}
	return recorded, nil
}

// Dashboard is the part of a Grafana dashboard JSON model that matters here.
type Dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

// Panel is a Grafana panel; rows hold their collapsed panels in Panels.
type Panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels  []Panel `json:"panels"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
}

// Variable is a Grafana template variable; Query is a string or an object
// with a "query" field, depending on the Grafana version.
type Variable struct {
	Name  string          `json:"name"`
	Type  string          `json:"type"`
	Query json.RawMessage `json:"query"`
}

// QueryText returns the variable's query as text.
func (v Variable) QueryText() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &o)
	return o.Query
}

// AllPanels returns the dashboard's panels, those inside rows included.
func (d Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// DashboardNames adds the names every panel target and every query
// variable of the dashboards (*.json in fsys) select to u.
func DashboardNames(u Used, fsys fs.FS) error {
	files, err := fs.Glob(fsys, "*.json")
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return errors.New("promcheck: no dashboards")
	}
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return err
		}
		var d Dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			return fmt.Errorf("promcheck: %s: %w", f, err)
		}
		for _, p := range d.AllPanels() {
			for _, t := range p.Targets {
				names, err := MetricNames(t.Expr)
				if err != nil {
					return fmt.Errorf("promcheck: %s: panel %q: %w", f, p.Title, err)
				}
				u.add(names, fmt.Sprintf("%s: panel %q", path.Base(f), p.Title))
			}
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			names, err := VariableNames(v.QueryText())
			if err != nil {
				return fmt.Errorf("promcheck: %s: variable %s: %w", f, v.Name, err)
			}
			u.add(names, fmt.Sprintf("%s: variable %s", path.Base(f), v.Name))
		}
	}
	return nil
}

// ExportedText returns the sample names a promtext registry (kluisd's)
// exports: every registered family, also vectors without series yet, and
// for histograms and summaries their _bucket (histograms), _sum and
// _count series.
func ExportedText(reg *promtext.Registry) map[string]bool {
	out := map[string]bool{}
	for _, d := range reg.Describe() {
		switch d.Type {
		case promtext.TypeHistogram:
			out[d.Name+"_bucket"], out[d.Name+"_sum"], out[d.Name+"_count"] = true, true, true
		case promtext.TypeSummary:
			out[d.Name], out[d.Name+"_sum"], out[d.Name+"_count"] = true, true, true
		default:
			out[d.Name] = true
		}
	}
	return out
}

var descName = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)

// Exported returns the sample names reg exports: every registered metric
// (from Describe, so vectors without children yet count too) and, for
// histograms and summaries, their _bucket, _sum and _count series. A name
// only described (no sample yet, so its type is unknown) also allows the
// histogram suffixes.
func Exported(reg *prometheus.Registry) (map[string]bool, error) {
	out := map[string]bool{}
	typed := map[string]bool{}
	fams, err := reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("promcheck: gather: %w", err)
	}
	for _, f := range fams {
		n := f.GetName()
		typed[n] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			out[n+"_bucket"], out[n+"_sum"], out[n+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			out[n], out[n+"_sum"], out[n+"_count"] = true, true, true
		default:
			out[n] = true
		}
	}
	ch := make(chan *prometheus.Desc)
	go func() {
		reg.Describe(ch)
		close(ch)
	}()
	for d := range ch {
		m := descName.FindStringSubmatch(d.String())
		if m == nil {
			continue
		}
		if n := m[1]; !typed[n] {
			out[n], out[n+"_bucket"], out[n+"_sum"], out[n+"_count"] = true, true, true, true
		}
	}
	return out, nil
}

// Daemons that export metrics.
const (
	Kluisd  = "kluisd"
	Backend = "kluis-backend"
	// Any: both daemons export it (the Go and process collectors).
	Any = "any"
	// Prometheus: made by Prometheus itself (up, recorded series).
	Prometheus = "prometheus"
)

// Owner tells which daemon exports a metric name, by its prefix; "" for a
// name of no known daemon.
func Owner(name string) string {
	switch {
	case name == "up":
		return Prometheus
	case strings.HasPrefix(name, "kluisd_"), strings.HasPrefix(name, "kluis_kluisbus_"),
		strings.HasPrefix(name, "kluis_kerong_"), strings.HasPrefix(name, "kluis_tasmota_"):
		return Kluisd
	case strings.HasPrefix(name, "kluis_"):
		return Backend
	case strings.HasPrefix(name, "go_"), strings.HasPrefix(name, "process_"):
		return Any
	}
	return ""
}

// Missing returns, sorted, the used names owned by one of owners that are
// not in exported, each with where it is used.
func Missing(u Used, exported map[string]bool, owners ...string) []string {
	var out []string
	for n, where := range u {
		for _, o := range owners {
			if Owner(n) == o && !exported[n] {
				out = append(out, n+" (used in "+strings.Join(where, "; ")+")")
			}
		}
	}
	sort.Strings(out)
	return out
}
