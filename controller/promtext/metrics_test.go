package promtext

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hostile is a label value and help text with everything the format
// escapes, and more.
const hostile = "a \"quoted\" \\back\\slash\nnew line, tab\t, {brace} = , é"

func text(t *testing.T, r *Registry) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, r.WriteText(&b))
	return b.String()
}

func parse(t *testing.T, s string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(s))
	require.NoError(t, err, "the exposition parses:\n%s", s)
	return fams
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// The exposition parses with Prometheus's own parser: types, help,
// label values (hostile ones back as they were), histogram buckets.
func TestExpositionParses(t *testing.T) {
	r := NewRegistry()
	c := NewCounter(CounterOpts{Namespace: "kluisd", Name: "things_total", Help: "Things.\nOn two lines, with a \\ too."})
	cv := NewCounterVec(CounterOpts{Namespace: "kluisd", Subsystem: "mqtt", Name: "by_total", Help: "By kind.",
		ConstLabels: Labels{"bus": hostile}}, []string{"kind", "b"})
	g := NewGauge(GaugeOpts{Name: "kluisd_level", Help: "Level."})
	gf := NewGaugeFunc(GaugeOpts{Name: "kluisd_read", Help: "Read at scrape."}, func() float64 { return 42 })
	h := NewHistogramVec(HistogramOpts{Name: "kluisd_seconds", Help: "Durations.", Buckets: []float64{0.1, 1, 10}}, []string{"op"})
	r.MustRegister(c, cv, g, gf, h)
	c.Inc()
	c.Add(2.5)
	cv.WithLabelValues(hostile, "x").Add(3)
	cv.WithLabelValues("plain", "y").Inc()
	g.Set(-7.25)
	for _, v := range []float64{0.05, 0.1, 0.5, 5, 50} {
		h.WithLabelValues("pulse").Observe(v)
	}
	out := text(t, r)
	fams := parse(t, out)
	require.Len(t, fams, 5)

	f := fams["kluisd_things_total"]
	assert.Equal(t, dto.MetricType_COUNTER, f.GetType())
	assert.Equal(t, "Things.\nOn two lines, with a \\ too.", f.GetHelp())
	assert.Equal(t, 3.5, f.GetMetric()[0].GetCounter().GetValue())

	f = fams["kluisd_mqtt_by_total"]
	require.Len(t, f.GetMetric(), 2)
	found := false
	for _, m := range f.GetMetric() {
		l := labelsOf(m)
		assert.Equal(t, hostile, l["bus"], "const label back as it was")
		if l["kind"] == hostile {
			found = true
			assert.Equal(t, "x", l["b"])
			assert.Equal(t, 3.0, m.GetCounter().GetValue())
		}
	}
	assert.True(t, found, "the hostile label value comes back as it was:\n%s", out)

	assert.Equal(t, -7.25, fams["kluisd_level"].GetMetric()[0].GetGauge().GetValue())
	assert.Equal(t, 42.0, fams["kluisd_read"].GetMetric()[0].GetGauge().GetValue())

	f = fams["kluisd_seconds"]
	assert.Equal(t, dto.MetricType_HISTOGRAM, f.GetType())
	hm := f.GetMetric()[0].GetHistogram()
	assert.Equal(t, uint64(5), hm.GetSampleCount())
	assert.InDelta(t, 55.65, hm.GetSampleSum(), 1e-9)
	var cum []uint64
	var bounds []float64
	for _, b := range hm.GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
		cum = append(cum, b.GetCumulativeCount())
	}
	// le is inclusive: 0.1 falls in the 0.1 bucket.
	assert.Equal(t, []float64{0.1, 1, 10, math.Inf(1)}, bounds)
	assert.Equal(t, []uint64{2, 3, 4, 5}, cum)
	assert.Contains(t, out, `kluisd_seconds_bucket{op="pulse",le="+Inf"} 5`+"\n")
	assert.Contains(t, out, `kluisd_seconds_count{op="pulse"} 5`+"\n")
}

// The escaping, byte for byte, as the text format 0.0.4 says: in help
// text backslash and newline; in label values also the double quote.
func TestEscaping(t *testing.T) {
	r := NewRegistry()
	cv := NewCounterVec(CounterOpts{Name: "x_total", Help: "h \"q\" \\ \n end"}, []string{"v"})
	r.MustRegister(cv)
	cv.WithLabelValues("a\"b\\c\nd").Inc()
	cv.WithLabelValues("bad utf8 \xff").Inc()
	assert.Equal(t, "# HELP x_total h \"q\" \\\\ \\n end\n# TYPE x_total counter\n"+
		"x_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"+
		"x_total{v=\"bad utf8 \uFFFD\"} 1\n", text(t, r))
}

// For the same metrics, the same text as client_golang writes (the
// library kluisd used before this package): family and series order,
// labels (const and variable, sorted by name, le last), escaping and the
// numbers' format. A vector without series writes nothing, as there.
func TestSameTextAsClientGolang(t *testing.T) {
	ours := NewRegistry()
	theirs := prometheus.NewRegistry()
	cl := Labels{"bus": "/dev/tty\"S0\""}
	oc := NewCounterVec(CounterOpts{Namespace: "kluis", Subsystem: "kerong", Name: "frames_total", Help: "Frames\\by \"result\"\n.", ConstLabels: cl}, []string{"result", "a_board"})
	tc := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kluis", Subsystem: "kerong", Name: "frames_total", Help: "Frames\\by \"result\"\n.", ConstLabels: prometheus.Labels(cl)}, []string{"result", "a_board"})
	og := NewGauge(GaugeOpts{Name: "kluisd_gauge", Help: "G."})
	tg := prometheus.NewGauge(prometheus.GaugeOpts{Name: "kluisd_gauge", Help: "G."})
	oe := NewCounterVec(CounterOpts{Name: "kluisd_empty_total", Help: "No series."}, []string{"k"})
	te := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kluisd_empty_total", Help: "No series."}, []string{"k"})
	ogf := NewGaugeFunc(GaugeOpts{Name: "kluisd_func", Help: "F."}, func() float64 { return 1e21 })
	tgf := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kluisd_func", Help: "F."}, func() float64 { return 1e21 })
	oh := NewHistogram(HistogramOpts{Name: "kluisd_h_seconds", Help: "H.", ConstLabels: Labels{"z": "1"}})
	th := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kluisd_h_seconds", Help: "H.", ConstLabels: prometheus.Labels{"z": "1"}})
	ours.MustRegister(oc, og, oe, ogf, oh)
	theirs.MustRegister(tc, tg, te, tgf, th)
	for i, vals := range [][]string{{"ok", "10"}, {"ok", "2"}, {"bad\ncrc", "1"}, {"", "x"}, {"ok", "10"}} {
		oc.WithLabelValues(vals...).Add(float64(i) + 0.5)
		tc.WithLabelValues(vals...).Add(float64(i) + 0.5)
	}
	og.Set(0.1 + 0.2)
	tg.Set(0.1 + 0.2)
	for _, v := range []float64{0.001, 0.005, 0.3, 7, 11, 1e9} {
		oh.Observe(v)
		th.Observe(v)
	}
	fams, err := theirs.Gather()
	require.NoError(t, err)
	var want bytes.Buffer
	for _, f := range fams {
		_, err := expfmt.MetricFamilyToText(&want, f)
		require.NoError(t, err)
	}
	assert.Equal(t, want.String(), text(t, ours))
}

func TestRegisterRefuses(t *testing.T) {
	r := NewRegistry()
	r.MustRegister(NewCounter(CounterOpts{Name: "a_total", Help: "A."}))
	err := r.Register(NewGauge(GaugeOpts{Name: "a_total", Help: "Again."}))
	assert.ErrorIs(t, err, ErrAlreadyRegistered)
	for _, c := range []Collector{
		NewCounter(CounterOpts{Name: "1bad", Help: "h"}),
		NewCounter(CounterOpts{Name: "no_help"}),
		NewCounterVec(CounterOpts{Name: "b_total", Help: "h"}, []string{"__reserved"}),
		NewCounterVec(CounterOpts{Name: "c_total", Help: "h"}, []string{"x", "x"}),
		NewCounterVec(CounterOpts{Name: "d_total", Help: "h", ConstLabels: Labels{"x": "1"}}, []string{"x"}),
		NewCounterVec(CounterOpts{Name: "e_total", Help: "h", ConstLabels: Labels{"bad-name": "1"}}, nil),
		NewHistogramVec(HistogramOpts{Name: "f", Help: "h"}, []string{"le"}),
		NewHistogram(HistogramOpts{Name: "g", Help: "h", Buckets: []float64{1, 1}}),
		NewCounterVec(CounterOpts{Name: "h_total", Help: "h"}, []string{"k"}).WithLabelValues("v"),
	} {
		assert.ErrorIs(t, r.Register(c), ErrInvalidName, "%v", c.Describe())
	}
	assert.Len(t, r.Describe(), 1, "nothing refused was registered")
	assert.Panics(t, func() {
		NewCounterVec(CounterOpts{Name: "i_total", Help: "h"}, []string{"k"}).WithLabelValues("a", "b")
	})
	assert.Panics(t, func() { NewCounter(CounterOpts{Name: "j_total", Help: "h"}).Add(-1) })
}

// Describe lists vectors that have no series yet (promcheck uses it to
// know every name kluisd exports).
func TestDescribe(t *testing.T) {
	r := NewRegistry()
	r.MustRegister(NewCounterVec(CounterOpts{Name: "b_total", Help: "B."}, []string{"k"}),
		NewGauge(GaugeOpts{Name: "a", Help: "A."}))
	assert.Equal(t, []Desc{{Name: "a", Help: "A.", Type: TypeGauge, LabelNames: []string{}},
		{Name: "b_total", Help: "B.", Type: TypeCounter, LabelNames: []string{"k"}}}, r.Describe())
	assert.Equal(t, "# HELP a A.\n# TYPE a gauge\na 0\n", text(t, r))
}

// Writers, new label values and scrapes at once (run with -race): every
// increment is counted.
func TestConcurrentUse(t *testing.T) {
	r := NewRegistry()
	cv := NewCounterVec(CounterOpts{Name: "c_total", Help: "C."}, []string{"k", "w"})
	g := NewGauge(GaugeOpts{Name: "g", Help: "G."})
	h := NewHistogram(HistogramOpts{Name: "h", Help: "H.", Buckets: []float64{1, 2}})
	r.MustRegister(cv, g, h)
	const workers, n = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				cv.WithLabelValues(strconv.Itoa(i%10), "w").Inc()
				cv.WithLabelValues("own", strconv.Itoa(w)).Add(0.5)
				g.Inc()
				g.Dec()
				g.Add(1)
				h.Observe(float64(i % 3))
			}
		}()
	}
	scrapes := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 50 {
			var b bytes.Buffer
			if err := r.WriteText(&b); err != nil {
				panic(err)
			}
			scrapes++
		}
	}()
	wg.Wait()
	assert.Equal(t, 50, scrapes)
	var total float64
	for i := range 10 {
		total += cv.WithLabelValues(strconv.Itoa(i), "w").Value()
	}
	assert.Equal(t, float64(workers*n), total)
	for w := range workers {
		assert.Equal(t, float64(n)/2, cv.WithLabelValues("own", strconv.Itoa(w)).Value())
	}
	assert.Equal(t, float64(workers*n), g.Value())
	assert.Equal(t, uint64(workers*n), h.Count())
	fams := parse(t, text(t, r))
	assert.Len(t, fams["c_total"].GetMetric(), 10+workers)
}

// The hot path does not allocate: Inc, Add, Set, Observe, and
// WithLabelValues of a series that exists.
func TestNoAllocationOnTheHotPath(t *testing.T) {
	c := NewCounter(CounterOpts{Name: "c_total", Help: "C."})
	cv := NewCounterVec(CounterOpts{Name: "v_total", Help: "V."}, []string{"a", "b"})
	gv := NewGaugeVec(GaugeOpts{Name: "g", Help: "G."}, []string{"board"})
	h := NewHistogram(HistogramOpts{Name: "h", Help: "H."})
	cv.WithLabelValues("x", "y")
	gv.WithLabelValues("3")
	a, b := "x", "y"
	for name, f := range map[string]func(){
		"Inc":             func() { c.Inc() },
		"Add":             func() { c.Add(0.25) },
		"vec Inc":         func() { cv.WithLabelValues(a, b).Inc() },
		"gauge vec Set":   func() { gv.WithLabelValues("3").Set(1) },
		"histogram":       func() { h.Observe(0.3) },
		"gauge vec Dec":   func() { gv.WithLabelValues("3").Dec() },
		"counter Value()": func() { _ = c.Value() },
	} {
		assert.Zero(t, testing.AllocsPerRun(100, f), name)
	}
}

func TestServeHTTP(t *testing.T) {
	r := NewRegistry()
	r.MustRegister(NewGoCollector(), NewProcessCollector())
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	assert.Equal(t, 200, rec.Code)
	assert.Equal(t, ContentType, rec.Header().Get("Content-Type"))
	fams := parse(t, rec.Body.String())
	for _, d := range r.Describe() {
		require.Contains(t, fams, d.Name)
		assert.Equal(t, d.Help, fams[d.Name].GetHelp())
		assert.Equal(t, d.Type, strings.ToLower(fams[d.Name].GetType().String()))
	}
	assert.Positive(t, fams["go_goroutines"].GetMetric()[0].GetGauge().GetValue())
	assert.Positive(t, fams["process_resident_memory_bytes"].GetMetric()[0].GetGauge().GetValue())
	assert.Positive(t, fams["process_open_fds"].GetMetric()[0].GetGauge().GetValue())
	assert.Positive(t, fams["process_start_time_seconds"].GetMetric()[0].GetGauge().GetValue())
	assert.Len(t, fams["go_gc_duration_seconds"].GetMetric()[0].GetSummary().GetQuantile(), 5)
}

// The Go and process collectors write the families client_golang's
// default collectors wrote in kluisd, with the same help and type, except
// the two process_network_* (documented in NewProcessCollector).
func TestRuntimeFamiliesAsClientGolang(t *testing.T) {
	theirs := prometheus.NewRegistry()
	theirs.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	tf, err := theirs.Gather()
	require.NoError(t, err)
	ours := NewRegistry()
	ours.MustRegister(NewGoCollector(), NewProcessCollector())
	have := map[string]Desc{}
	for _, d := range ours.Describe() {
		have[d.Name] = d
	}
	var missing []string
	for _, f := range tf {
		d, ok := have[f.GetName()]
		if !ok {
			missing = append(missing, f.GetName())
			continue
		}
		assert.Equal(t, f.GetHelp(), d.Help, f.GetName())
		assert.Equal(t, strings.ToLower(f.GetType().String()), d.Type, f.GetName())
		delete(have, f.GetName())
	}
	assert.ElementsMatch(t, []string{"process_network_receive_bytes_total", "process_network_transmit_bytes_total"}, missing)
	assert.Empty(t, have, "nothing client_golang did not write")
}

func ExampleRegistry() {
	r := NewRegistry()
	pulses := NewCounterVec(CounterOpts{Namespace: "kluisd", Name: "pulses_total", Help: "Lock pulses, by purpose."}, []string{"purpose"})
	r.MustRegister(pulses)
	pulses.WithLabelValues("pickup").Inc()
	var b strings.Builder
	if err := r.WriteText(&b); err != nil && !errors.Is(err, ErrInvalidName) {
		return
	}
	fmt.Print(b.String())
	// Output:
	// # HELP kluisd_pulses_total Lock pulses, by purpose.
	// # TYPE kluisd_pulses_total counter
	// kluisd_pulses_total{purpose="pickup"} 1
}
