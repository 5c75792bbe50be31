// Package promtexttest reads a promtext.Registry the way Prometheus does:
// its exposition parsed by Prometheus's own text parser (expfmt). For
// tests only: it imports github.com/prometheus/common, which kluisd's
// binary must not hold.
package promtexttest

import (
	"bytes"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"kluis/controller/promtext"
)

// Families writes r's exposition and parses it; the test fails when it
// does not parse.
func Families(t testing.TB, r *promtext.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatalf("promtexttest: write: %v", err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatalf("promtexttest: the exposition does not parse: %v\n%s", err, b.String())
	}
	return fams
}

// Count is how many series of the family name r exposes (0 when none),
// as client_golang's testutil.GatherAndCount counts them.
func Count(t testing.TB, r *promtext.Registry, name string) int {
	t.Helper()
	return len(Families(t, r)[name].GetMetric())
}

// Value reads one counter or gauge series of r: name and label pairs
// (name, value, name, value...); the first series with those labels. ok
// is false when there is none.
func Value(t testing.TB, r *promtext.Registry, name string, labels ...string) (v float64, ok bool) {
	t.Helper()
	f := Families(t, r)[name]
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}
