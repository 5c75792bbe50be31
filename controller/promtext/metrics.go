// Package promtext is kluisd's Prometheus instrumentation without the
// Prometheus client library: counters, gauges, gauge functions and
// histograms, each alone or as a vector over fixed label names, and a
// Registry that writes them in the Prometheus text exposition format 0.0.4
// (HELP and TYPE lines, escaped help text and label values, histograms as
// _bucket{le=...} with +Inf, _sum and _count; families sorted by name and
// series by label values, so the output is deterministic).
//
// It exists for kluisd's memory (docs/performance.md, "kluisd's start and
// memory"): client_golang brings protobuf, client_model, expfmt and procfs
// into the binary, about 2 MB of pages that are resident all the time.
// The API follows client_golang's closely (NewCounterVec(CounterOpts{...},
// labelNames), WithLabelValues, Register) so kluisd's packages read the
// same, and the output is the same text client_golang writes for the same
// metrics. The backend keeps client_golang.
//
// Everything is safe for concurrent use. Inc, Add, Set and Observe are
// atomic operations without allocation; WithLabelValues looks its child up
// under a read lock and allocates only the first time a label value
// combination is seen. Writing the exposition takes the registry's lock and
// allocates; it runs once per scrape.
package promtext

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// ContentType is the media type of the text exposition format 0.0.4.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Labels are label names and values: const labels of a metric.
type Labels map[string]string

// Opts name and describe a metric. The full name is
// Namespace_Subsystem_Name (empty parts left out), as in client_golang.
// ConstLabels are written on every series of the metric.
type Opts struct {
	Namespace, Subsystem, Name string
	Help                       string
	ConstLabels                Labels
}

// CounterOpts and GaugeOpts are Opts (client_golang's names).
type (
	CounterOpts = Opts
	GaugeOpts   = Opts
)

// HistogramOpts are Opts and the histogram's upper bucket bounds
// (ascending; +Inf is always added; nil means DefBuckets).
type HistogramOpts struct {
	Namespace, Subsystem, Name string
	Help                       string
	ConstLabels                Labels
	Buckets                    []float64
}

// DefBuckets are client_golang's default buckets (seconds of a network
// request).
var DefBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func fullName(ns, sub, name string) string {
	parts := make([]string, 0, 3)
	for _, p := range []string{ns, sub, name} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "_")
}

// Metric types as the TYPE line writes them.
const (
	TypeCounter   = "counter"
	TypeGauge     = "gauge"
	TypeHistogram = "histogram"
	TypeSummary   = "summary"
	TypeUntyped   = "untyped"
)

// Desc describes one metric family a collector writes.
type Desc struct {
	Name, Help, Type string
	// LabelNames are the variable label names (const labels not included).
	LabelNames []string
}

// Collector is something a Registry writes: the metrics of this package
// and the Go runtime and process collectors. It is implemented only here.
type Collector interface {
	// Describe lists the families the collector writes, also those that
	// have no series yet (a vector without children).
	Describe() []Desc
	// collect appends each family's lines to the families.
	collect(out *families)
	// check tells whether the collector's names are usable.
	check() error
}

// Registerer takes collectors; the drivers, the engine and the link
// register their metrics on one the caller passes.
type Registerer interface {
	Register(Collector) error
	MustRegister(...Collector)
}

// ErrAlreadyRegistered is returned by Register for a family name that is
// registered already.
var ErrAlreadyRegistered = errors.New("promtext: already registered")

// Registry holds collectors and writes them. The zero value is not usable;
// use NewRegistry.
type Registry struct {
	mu    sync.Mutex
	cols  []Collector
	names map[string]bool
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{names: map[string]bool{}} }

// Register adds c after checking its names (metric and label names valid,
// no family name registered twice).
func (r *Registry) Register(c Collector) error {
	if err := c.check(); err != nil {
		return err
	}
	ds := c.Describe()
	seen := map[string]bool{}
	for _, d := range ds {
		if err := validDesc(d); err != nil {
			return err
		}
		if seen[d.Name] {
			return fmt.Errorf("%w: %s (twice in one collector)", ErrAlreadyRegistered, d.Name)
		}
		seen[d.Name] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range ds {
		if r.names[d.Name] {
			return fmt.Errorf("%w: %s", ErrAlreadyRegistered, d.Name)
		}
	}
	for _, d := range ds {
		r.names[d.Name] = true
	}
	r.cols = append(r.cols, c)
	return nil
}

// MustRegister registers each collector and panics on the first error
// (for kluisd's own fixed metrics, where an error is a programming error).
func (r *Registry) MustRegister(cs ...Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// Describe lists every registered family, sorted by name.
func (r *Registry) Describe() []Desc {
	r.mu.Lock()
	cols := slices.Clone(r.cols)
	r.mu.Unlock()
	var out []Desc
	for _, c := range cols {
		out = append(out, c.Describe()...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// WriteText writes every family that has at least one series in the text
// exposition format 0.0.4, families sorted by name.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	cols := slices.Clone(r.cols)
	r.mu.Unlock()
	var fs families
	for _, c := range cols {
		c.collect(&fs)
	}
	sort.Slice(fs.list, func(i, j int) bool { return fs.list[i].name < fs.list[j].name })
	var b []byte
	for _, f := range fs.list {
		if len(f.body) == 0 {
			continue
		}
		b = append(b, "# HELP "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = appendEscaped(b, f.help, false)
		b = append(b, "\n# TYPE "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = append(b, f.typ...)
		b = append(b, '\n')
		b = append(b, f.body...)
	}
	_, err := w.Write(b)
	return err
}

// ServeHTTP answers a scrape with WriteText's output.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	var sb strings.Builder
	if err := r.WriteText(&sb); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(sb.Len()))
	_, _ = io.WriteString(w, sb.String())
}

// families gathers what the collectors write during one WriteText.
type families struct{ list []*family }

type family struct {
	name, help, typ string
	body            []byte // the sample lines, each ending in "\n"
}

func (fs *families) add(name, help, typ string) *family {
	f := &family{name: name, help: help, typ: typ}
	fs.list = append(fs.list, f)
	return f
}

// sample appends one line: name, the label string (already rendered, with
// braces, or empty), an optional extra label (le, quantile) and the value.
func (f *family) sample(name, labels, extraName string, extraValue float64, v float64) {
	b := append(f.body, name...)
	switch {
	case extraName != "" && labels != "":
		b = append(b, labels[:len(labels)-1]...)
		b = append(b, ',')
		fallthrough
	case extraName != "":
		if labels == "" {
			b = append(b, '{')
		}
		b = append(b, extraName...)
		b = append(b, `="`...)
		b = appendFloat(b, extraValue)
		b = append(b, `"}`...)
	default:
		b = append(b, labels...)
	}
	b = append(b, ' ')
	b = appendFloat(b, v)
	f.body = append(b, '\n')
}

// appendFloat writes a value as client_golang's text format does.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// appendEscaped escapes help text (backslash, newline) or, with quote, a
// label value (also the double quote), per the text format 0.0.4.
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// renderLabels writes {n1="v1",...} for names and values (same order,
// names sorted); "" when there are none. Invalid UTF-8 in a value is
// replaced by U+FFFD (the format wants UTF-8; client_golang refuses it).
func renderLabels(names, values []string) string {
	if len(names) == 0 {
		return ""
	}
	b := []byte{'{'}
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, n...)
		b = append(b, `="`...)
		b = appendEscaped(b, values[i], true)
		b = append(b, '"')
	}
	return string(append(b, '}'))
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func validMetricName(n string) bool {
	if n == "" {
		return false
	}
	for i, c := range n {
		ok := c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			return false
		}
	}
	return true
}

func validLabelName(n string) bool {
	if n == "" || strings.HasPrefix(n, "__") {
		return false
	}
	for i, c := range n {
		ok := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			return false
		}
	}
	return true
}

// ErrInvalidName is returned by Register for an invalid metric or label
// name, a label name used twice, or a reserved one.
var ErrInvalidName = errors.New("promtext: invalid name")

func validDesc(d Desc) error {
	if !validMetricName(d.Name) {
		return fmt.Errorf("%w: metric %q", ErrInvalidName, d.Name)
	}
	if d.Help == "" {
		return fmt.Errorf("%w: metric %s has no help", ErrInvalidName, d.Name)
	}
	seen := map[string]bool{}
	for _, l := range d.LabelNames {
		if !validLabelName(l) || seen[l] {
			return fmt.Errorf("%w: label %q of %s", ErrInvalidName, l, d.Name)
		}
		if (d.Type == TypeHistogram && l == "le") || (d.Type == TypeSummary && l == "quantile") {
			return fmt.Errorf("%w: label %q is reserved in %s", ErrInvalidName, l, d.Name)
		}
		seen[l] = true
	}
	return nil
}
