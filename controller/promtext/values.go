package promtext

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
)

// Counter is a value that only goes up. Inc and Add are atomic and do not
// allocate.
type Counter struct {
	n    atomic.Uint64 // whole increments (Inc)
	bits atomic.Uint64 // float64 bits of the rest (Add)
	one  *single       // set when the counter stands alone
}

// Inc adds 1.
func (c *Counter) Inc() { c.n.Add(1) }

// Add adds v; v must not be negative (a counter only goes up): Add
// panics then, as client_golang's does.
func (c *Counter) Add(v float64) {
	if v < 0 {
		panic(fmt.Sprintf("promtext: counter cannot decrease (Add %v)", v))
	}
	if u := uint64(v); float64(u) == v {
		c.n.Add(u)
		return
	}
	addFloat(&c.bits, v)
}

// Value is the counter's value.
func (c *Counter) Value() float64 {
	return float64(c.n.Load()) + math.Float64frombits(c.bits.Load())
}

func addFloat(bits *atomic.Uint64, v float64) {
	for {
		old := bits.Load()
		if bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Gauge is a value that goes up and down. Its methods are atomic and do
// not allocate.
type Gauge struct {
	bits atomic.Uint64
	one  *single
}

// Set sets the value.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds v (may be negative).
func (g *Gauge) Add(v float64) { addFloat(&g.bits, v) }

// Sub subtracts v.
func (g *Gauge) Sub(v float64) { addFloat(&g.bits, -v) }

// Inc adds 1.
func (g *Gauge) Inc() { g.Add(1) }

// Dec subtracts 1.
func (g *Gauge) Dec() { g.Add(-1) }

// Value is the gauge's value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// Histogram counts observations in buckets by upper bound. Observe is
// atomic and does not allocate. A scrape reads the buckets one by one
// while observations go on: _count is the +Inf bucket's cumulative count,
// and _sum may already hold an observation the buckets do not yet.
type Histogram struct {
	upper  []float64       // ascending, without +Inf
	counts []atomic.Uint64 // per bucket, not cumulative; last is +Inf
	sum    atomic.Uint64   // float64 bits
	one    *single
}

func newHistogramValue(upper []float64) *Histogram {
	return &Histogram{upper: upper, counts: make([]atomic.Uint64, len(upper)+1)}
}

// Observe adds one observation.
func (h *Histogram) Observe(v float64) {
	i := sort.SearchFloat64s(h.upper, v) // first bound >= v: le is inclusive
	h.counts[i].Add(1)
	addFloat(&h.sum, v)
}

// Count is the number of observations.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Sum is the sum of the observations.
func (h *Histogram) Sum() float64 { return math.Float64frombits(h.sum.Load()) }

func bucketsOf(b []float64) ([]float64, error) {
	if b == nil {
		b = DefBuckets
	}
	b = slices.Clone(b)
	if n := len(b); n > 0 && math.IsInf(b[n-1], 1) {
		b = b[:n-1]
	}
	for i, v := range b {
		if math.IsNaN(v) || math.IsInf(v, 0) || i > 0 && v <= b[i-1] {
			return nil, fmt.Errorf("%w: histogram buckets must be finite and ascending: %v", ErrInvalidName, b)
		}
	}
	return b, nil
}

// meta is what every metric keeps about itself.
type meta struct {
	name, help, typ string
	constNames      []string // sorted
	constValues     []string
	labelNames      []string // variable, in the caller's order
	err             error
}

func newMeta(ns, sub, name, help, typ string, cl Labels, labels []string) meta {
	m := meta{name: fullName(ns, sub, name), help: help, typ: typ, labelNames: slices.Clone(labels)}
	for n := range cl {
		m.constNames = append(m.constNames, n)
	}
	sort.Strings(m.constNames)
	for _, n := range m.constNames {
		if !validLabelName(n) || slices.Contains(labels, n) {
			m.err = fmt.Errorf("%w: const label %q of %s", ErrInvalidName, n, m.name)
		}
		m.constValues = append(m.constValues, validUTF8(cl[n]))
	}
	return m
}

func (m *meta) desc() Desc {
	return Desc{Name: m.name, Help: m.help, Type: m.typ, LabelNames: append([]string{}, m.labelNames...)}
}

// child is one series of a metric: its value and its rendered labels.
type child struct {
	values []string // label values in sorted-name order (const included)
	labels string   // {a="x",b="y"} or ""
	c      *Counter
	g      *Gauge
	gf     func() float64
	h      *Histogram
}

// vec holds a metric's series by label values.
type vec struct {
	meta
	sorted []string // every label name, sorted
	perm   []int    // perm[i]: position in sorted of the caller's label i
	make   func() *child

	mu       sync.RWMutex
	children map[string]*child
}

func newVec(m meta, mk func() *child) *vec {
	v := &vec{meta: m, make: mk, children: map[string]*child{}}
	v.sorted = append(slices.Clone(m.constNames), m.labelNames...)
	sort.Strings(v.sorted)
	for _, n := range m.labelNames {
		v.perm = append(v.perm, slices.Index(v.sorted, n))
	}
	return v
}

// key joins label values with a byte that UTF-8 text never holds.
func appendKey(b []byte, vals []string) []byte {
	for i, s := range vals {
		if i > 0 {
			b = append(b, 0xff)
		}
		b = append(b, s...)
	}
	return b
}

// get returns the series for the label values (caller's order), making
// it the first time. A wrong number of values panics, as in client_golang.
func (v *vec) get(vals []string) *child {
	if len(vals) != len(v.labelNames) {
		// vals is not formatted: it would escape, and every call would
		// allocate it.
		panic(fmt.Sprintf("promtext: %s has %d label names %v, got %d values", v.name, len(v.labelNames), v.labelNames, len(vals)))
	}
	var buf [128]byte
	k := appendKey(buf[:0], vals)
	v.mu.RLock()
	c := v.children[string(k)]
	v.mu.RUnlock()
	if c != nil {
		return c
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if c = v.children[string(k)]; c != nil {
		return c
	}
	c = v.make()
	c.values = make([]string, len(v.sorted))
	for i, n := range v.sorted {
		if j := slices.Index(v.constNames, n); j >= 0 {
			c.values[i] = v.constValues[j]
		}
	}
	for i, s := range vals {
		c.values[v.perm[i]] = validUTF8(s)
	}
	c.labels = renderLabels(v.sorted, c.values)
	v.children[string(k)] = c
	return c
}

// sortedChildren returns the series ordered by their label values.
func (v *vec) sortedChildren() []*child {
	v.mu.RLock()
	cs := make([]*child, 0, len(v.children))
	for _, c := range v.children {
		cs = append(cs, c)
	}
	v.mu.RUnlock()
	sort.Slice(cs, func(i, j int) bool { return slices.Compare(cs[i].values, cs[j].values) < 0 })
	return cs
}

func (v *vec) Describe() []Desc { return []Desc{v.desc()} }

func (v *vec) check() error { return v.err }

func (v *vec) collect(out *families) {
	f := out.add(v.name, v.help, v.typ)
	for _, c := range v.sortedChildren() {
		switch {
		case c.c != nil:
			f.sample(v.name, c.labels, "", 0, c.c.Value())
		case c.g != nil:
			f.sample(v.name, c.labels, "", 0, c.g.Value())
		case c.gf != nil:
			f.sample(v.name, c.labels, "", 0, c.gf())
		case c.h != nil:
			var cum uint64
			for i := range c.h.counts {
				cum += c.h.counts[i].Load()
				le := math.Inf(1)
				if i < len(c.h.upper) {
					le = c.h.upper[i]
				}
				f.sample(v.name+"_bucket", c.labels, "le", le, float64(cum))
			}
			f.sample(v.name+"_sum", c.labels, "", 0, c.h.Sum())
			f.sample(v.name+"_count", c.labels, "", 0, float64(cum))
		}
	}
}

// single is a metric without variable labels: a vec with one child made
// at once (so const labels render the same way).
type single struct{ *vec }

// CounterVec is a counter per combination of label values.
type CounterVec struct{ *vec }

// NewCounterVec makes a counter vector with the label names.
func NewCounterVec(o CounterOpts, labelNames []string) *CounterVec {
	return &CounterVec{newVec(newMeta(o.Namespace, o.Subsystem, o.Name, o.Help, TypeCounter, o.ConstLabels, labelNames),
		func() *child { return &child{c: &Counter{}} })}
}

// WithLabelValues returns the counter for the values (in the order of the
// label names), making it at 0 the first time.
func (v *CounterVec) WithLabelValues(vals ...string) *Counter { return v.get(vals).c }

// GaugeVec is a gauge per combination of label values.
type GaugeVec struct{ *vec }

// NewGaugeVec makes a gauge vector with the label names.
func NewGaugeVec(o GaugeOpts, labelNames []string) *GaugeVec {
	return &GaugeVec{newVec(newMeta(o.Namespace, o.Subsystem, o.Name, o.Help, TypeGauge, o.ConstLabels, labelNames),
		func() *child { return &child{g: &Gauge{}} })}
}

// WithLabelValues returns the gauge for the values, making it at 0 the
// first time.
func (v *GaugeVec) WithLabelValues(vals ...string) *Gauge { return v.get(vals).g }

// HistogramVec is a histogram per combination of label values.
type HistogramVec struct{ *vec }

// NewHistogramVec makes a histogram vector with the label names.
func NewHistogramVec(o HistogramOpts, labelNames []string) *HistogramVec {
	upper, err := bucketsOf(o.Buckets)
	m := newMeta(o.Namespace, o.Subsystem, o.Name, o.Help, TypeHistogram, o.ConstLabels, labelNames)
	if m.err == nil {
		m.err = err
	}
	return &HistogramVec{vec: newVec(m, func() *child { return &child{h: newHistogramValue(upper)} })}
}

// WithLabelValues returns the histogram for the values, empty the first
// time.
func (v *HistogramVec) WithLabelValues(vals ...string) *Histogram { return v.get(vals).h }

// NewCounter makes a counter without variable labels.
func NewCounter(o CounterOpts) *Counter {
	v := NewCounterVec(o, nil)
	c := v.WithLabelValues()
	c.one = &single{v.vec}
	return c
}

// NewGauge makes a gauge without variable labels.
func NewGauge(o GaugeOpts) *Gauge {
	v := NewGaugeVec(o, nil)
	g := v.WithLabelValues()
	g.one = &single{v.vec}
	return g
}

// NewHistogram makes a histogram without variable labels.
func NewHistogram(o HistogramOpts) *Histogram {
	v := NewHistogramVec(o, nil)
	h := v.WithLabelValues()
	h.one = &single{v.vec}
	return h
}

// GaugeFunc is a gauge whose value fn gives at each scrape.
type GaugeFunc struct{ *vec }

// NewGaugeFunc makes a gauge read by calling fn at each scrape; fn must be
// safe for concurrent use.
func NewGaugeFunc(o GaugeOpts, fn func() float64) *GaugeFunc {
	v := newVec(newMeta(o.Namespace, o.Subsystem, o.Name, o.Help, TypeGauge, o.ConstLabels, nil),
		func() *child { return &child{gf: fn} })
	v.get(nil)
	return &GaugeFunc{v}
}

// The single metrics are collectors through their vector. A counter,
// gauge or histogram got from a vector is not one: register the vector.

func oneDescribe(s *single) []Desc {
	if s == nil {
		return nil
	}
	return s.Describe()
}

func oneCollect(s *single, out *families) {
	if s != nil {
		s.collect(out)
	}
}

func oneCheck(s *single) error {
	if s == nil {
		return fmt.Errorf("%w: a vector's series is registered through its vector", ErrInvalidName)
	}
	return s.check()
}

// Describe lists the counter's family.
func (c *Counter) Describe() []Desc      { return oneDescribe(c.one) }
func (c *Counter) collect(out *families) { oneCollect(c.one, out) }
func (c *Counter) check() error          { return oneCheck(c.one) }

// Describe lists the gauge's family.
func (g *Gauge) Describe() []Desc      { return oneDescribe(g.one) }
func (g *Gauge) collect(out *families) { oneCollect(g.one, out) }
func (g *Gauge) check() error          { return oneCheck(g.one) }

// Describe lists the histogram's family.
func (h *Histogram) Describe() []Desc      { return oneDescribe(h.one) }
func (h *Histogram) collect(out *families) { oneCollect(h.one, out) }
func (h *Histogram) check() error          { return oneCheck(h.one) }
