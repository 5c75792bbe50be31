package promtext

import (
	"bytes"
	"os"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"
	"syscall"
	"time"
)

// goStat is one go_* family that the Go collector writes from one
// reading of the runtime.
type goStat struct {
	name, help, typ string
	value           func(r *goReading) float64
}

// goReading is what one scrape reads from the runtime.
type goReading struct {
	ms      runtime.MemStats
	samples []rtmetrics.Sample // gogc, gomemlimit, gomaxprocs
}

func memstat(name, help, typ string, f func(m *runtime.MemStats) float64) goStat {
	return goStat{name: "go_memstats_" + name, help: help, typ: typ, value: func(r *goReading) float64 { return f(&r.ms) }}
}

// goStats are the go_* families client_golang's default Go collector
// (v1.25) writes, with its names and help texts.
var goStats = []goStat{
	{"go_goroutines", "Number of goroutines that currently exist.", TypeGauge,
		func(*goReading) float64 { return float64(runtime.NumGoroutine()) }},
	{"go_threads", "Number of OS threads created.", TypeGauge,
		func(*goReading) float64 { n, _ := runtime.ThreadCreateProfile(nil); return float64(n) }},
	{"go_gc_gogc_percent", "Heap size target percentage configured by the user, otherwise 100. This value is set by the GOGC environment variable, and the runtime/debug.SetGCPercent function. Sourced from /gc/gogc:percent.", TypeGauge,
		func(r *goReading) float64 { return sampleValue(r.samples[0]) }},
	{"go_gc_gomemlimit_bytes", "Go runtime memory limit configured by the user, otherwise math.MaxInt64. This value is set by the GOMEMLIMIT environment variable, and the runtime/debug.SetMemoryLimit function. Sourced from /gc/gomemlimit:bytes.", TypeGauge,
		func(r *goReading) float64 { return sampleValue(r.samples[1]) }},
	{"go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting, or the number of operating system threads that can execute user-level Go code simultaneously. Sourced from /sched/gomaxprocs:threads.", TypeGauge,
		func(r *goReading) float64 { return sampleValue(r.samples[2]) }},
	memstat("alloc_bytes", "Number of bytes allocated in heap and currently in use. Equals to /memory/classes/heap/objects:bytes.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.Alloc) }),
	memstat("alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already. Equals to /gc/heap/allocs:bytes.", TypeCounter,
		func(m *runtime.MemStats) float64 { return float64(m.TotalAlloc) }),
	memstat("buck_hash_sys_bytes", "Number of bytes used by the profiling bucket hash table. Equals to /memory/classes/profiling/buckets:bytes.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.BuckHashSys) }),
	memstat("frees_total", "Total number of heap objects frees. Equals to /gc/heap/frees:objects + /gc/heap/tiny/allocs:objects.", TypeCounter,
		func(m *runtime.MemStats) float64 { return float64(m.Frees) }),
	memstat("gc_sys_bytes", "Number of bytes used for garbage collection system metadata. Equals to /memory/classes/metadata/other:bytes.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.GCSys) }),
	memstat("heap_alloc_bytes", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes. Equals to /memory/classes/heap/objects:bytes.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.HeapAlloc) }),
	memstat("heap_idle_bytes", "Number of heap bytes waiting to be used. Equals to /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.HeapIdle) }),
	memstat("heap_inuse_bytes", "Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.HeapInuse) }),
	memstat("heap_objects", "Number of currently allocated objects. Equals to /gc/heap/objects:objects.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.HeapObjects) }),
	memstat("heap_released_bytes", "Number of heap bytes released to OS. Equals to /memory/classes/heap/released:bytes.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.HeapReleased) }),
	memstat("heap_sys_bytes", "Number of heap bytes obtained from system. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes + /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.HeapSys) }),
	memstat("last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.LastGC) / 1e9 }),
	memstat("mallocs_total", "Total number of heap objects allocated, both live and gc-ed. Semantically a counter version for go_memstats_heap_objects gauge. Equals to /gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects.", TypeCounter,
		func(m *runtime.MemStats) float64 { return float64(m.Mallocs) }),
	memstat("mcache_inuse_bytes", "Number of bytes in use by mcache structures. Equals to /memory/classes/metadata/mcache/inuse:bytes.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.MCacheInuse) }),
	memstat("mcache_sys_bytes", "Number of bytes used for mcache structures obtained from system. Equals to /memory/classes/metadata/mcache/inuse:bytes + /memory/classes/metadata/mcache/free:bytes.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.MCacheSys) }),
	memstat("mspan_inuse_bytes", "Number of bytes in use by mspan structures. Equals to /memory/classes/metadata/mspan/inuse:bytes.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.MSpanInuse) }),
	memstat("mspan_sys_bytes", "Number of bytes used for mspan structures obtained from system. Equals to /memory/classes/metadata/mspan/inuse:bytes + /memory/classes/metadata/mspan/free:bytes.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.MSpanSys) }),
	memstat("next_gc_bytes", "Number of heap bytes when next garbage collection will take place. Equals to /gc/heap/goal:bytes.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.NextGC) }),
	memstat("other_sys_bytes", "Number of bytes used for other system allocations. Equals to /memory/classes/other:bytes.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.OtherSys) }),
	memstat("stack_inuse_bytes", "Number of bytes obtained from system for stack allocator in non-CGO environments. Equals to /memory/classes/heap/stacks:bytes.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.StackInuse) }),
	memstat("stack_sys_bytes", "Number of bytes obtained from system for stack allocator. Equals to /memory/classes/heap/stacks:bytes + /memory/classes/os-stacks:bytes.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.StackSys) }),
	memstat("sys_bytes", "Number of bytes obtained from system. Equals to /memory/classes/total:byte.", TypeGauge,
		func(m *runtime.MemStats) float64 { return float64(m.Sys) }),
}

const (
	gcDurationName = "go_gc_duration_seconds"
	gcDurationHelp = "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles."
	goInfoName     = "go_info"
	goInfoHelp     = "Information about the Go environment."
)

func sampleValue(s rtmetrics.Sample) float64 {
	switch s.Value.Kind() {
	case rtmetrics.KindUint64:
		return float64(s.Value.Uint64())
	case rtmetrics.KindFloat64:
		return s.Value.Float64()
	}
	return 0
}

// goCollector writes the Go runtime's metrics.
type goCollector struct{}

// NewGoCollector returns the collector of the Go runtime's metrics: the
// go_* families of client_golang's default Go collector, same names, help
// texts and types (go_gc_duration_seconds a summary of the GC pauses with
// quantiles 0, 0.25, 0.5, 0.75 and 1, go_info{version}, go_goroutines,
// go_threads, the go_memstats_* of runtime.ReadMemStats, GOGC, GOMEMLIMIT,
// GOMAXPROCS).
func NewGoCollector() Collector { return goCollector{} }

func (goCollector) Describe() []Desc {
	ds := []Desc{{Name: gcDurationName, Help: gcDurationHelp, Type: TypeSummary},
		{Name: goInfoName, Help: goInfoHelp, Type: TypeGauge, LabelNames: []string{"version"}}}
	for _, s := range goStats {
		ds = append(ds, Desc{Name: s.name, Help: s.help, Type: s.typ})
	}
	return ds
}

func (goCollector) check() error { return nil }

func (goCollector) collect(out *families) {
	r := &goReading{samples: []rtmetrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"},
		{Name: "/sched/gomaxprocs:threads"}}}
	rtmetrics.Read(r.samples)
	runtime.ReadMemStats(&r.ms)
	for _, s := range goStats {
		out.add(s.name, s.help, s.typ).sample(s.name, "", "", 0, s.value(r))
	}
	var gc debug.GCStats
	gc.PauseQuantiles = make([]time.Duration, 5)
	debug.ReadGCStats(&gc)
	f := out.add(gcDurationName, gcDurationHelp, TypeSummary)
	for i, q := range []float64{0, 0.25, 0.5, 0.75, 1} {
		f.sample(gcDurationName, "", "quantile", q, gc.PauseQuantiles[i].Seconds())
	}
	f.sample(gcDurationName+"_sum", "", "", 0, gc.PauseTotal.Seconds())
	f.sample(gcDurationName+"_count", "", "", 0, float64(gc.NumGC))
	out.add(goInfoName, goInfoHelp, TypeGauge).sample(goInfoName, renderLabels([]string{"version"}, []string{runtime.Version()}), "", 0, 1)
}

// processCollector writes the process's metrics from /proc/self.
type processCollector struct{ proc string }

// NewProcessCollector returns the collector of the process's metrics
// (Linux, from /proc/self), client_golang's process_* families with its
// names and help texts: process_cpu_seconds_total, process_open_fds,
// process_max_fds, process_virtual_memory_bytes,
// process_virtual_memory_max_bytes, process_resident_memory_bytes,
// process_start_time_seconds. Not process_network_receive_bytes_total and
// process_network_transmit_bytes_total: they are the whole network
// namespace's bytes (/proc/self/net/netstat), not the process's, and
// nothing reads them. A family whose source cannot be read is left out
// of that scrape.
func NewProcessCollector() Collector { return processCollector{proc: "/proc"} }

type procStat struct{ name, help, typ string }

var procStats = []procStat{
	{"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", TypeCounter},
	{"process_max_fds", "Maximum number of open file descriptors.", TypeGauge},
	{"process_open_fds", "Number of open file descriptors.", TypeGauge},
	{"process_resident_memory_bytes", "Resident memory size in bytes.", TypeGauge},
	{"process_start_time_seconds", "Start time of the process since unix epoch in seconds.", TypeGauge},
	{"process_virtual_memory_bytes", "Virtual memory size in bytes.", TypeGauge},
	{"process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", TypeGauge},
}

func (processCollector) Describe() []Desc {
	var ds []Desc
	for _, s := range procStats {
		ds = append(ds, Desc{Name: s.name, Help: s.help, Type: s.typ})
	}
	return ds
}

func (processCollector) check() error { return nil }

// userHZ is the kernel's clock tick for /proc's times (procfs assumes 100
// too: USER_HZ is 100 on every Linux architecture kluisd runs on).
const userHZ = 100

func (p processCollector) collect(out *families) {
	vals := map[string]float64{}
	if st, err := os.ReadFile(p.proc + "/self/stat"); err == nil {
		// Fields after the command's closing parenthesis (which may hold
		// spaces): state is field 3; utime 14, stime 15, starttime 22,
		// vsize 23, rss 24 (pages).
		if i := bytes.LastIndexByte(st, ')'); i >= 0 {
			f := bytes.Fields(st[i+1:])
			field := func(n int) float64 {
				if n-3 >= len(f) {
					return 0
				}
				v, _ := strconv.ParseFloat(string(f[n-3]), 64)
				return v
			}
			if len(f) >= 22 {
				vals["process_cpu_seconds_total"] = (field(14) + field(15)) / userHZ
				vals["process_virtual_memory_bytes"] = field(23)
				vals["process_resident_memory_bytes"] = field(24) * float64(os.Getpagesize())
				if bt, ok := p.bootTime(); ok {
					vals["process_start_time_seconds"] = bt + field(22)/userHZ
				}
			}
		}
	}
	if fds, err := os.ReadDir(p.proc + "/self/fd"); err == nil {
		vals["process_open_fds"] = float64(len(fds))
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		vals["process_max_fds"] = float64(rl.Cur)
	}
	if syscall.Getrlimit(syscall.RLIMIT_AS, &rl) == nil {
		vals["process_virtual_memory_max_bytes"] = float64(rl.Cur)
	}
	for _, s := range procStats {
		if v, ok := vals[s.name]; ok {
			out.add(s.name, s.help, s.typ).sample(s.name, "", "", 0, v)
		}
	}
}

// bootTime reads btime (seconds since the epoch) from /proc/stat.
func (p processCollector) bootTime() (float64, bool) {
	b, err := os.ReadFile(p.proc + "/stat")
	if err != nil {
		return 0, false
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			v, err := strconv.ParseFloat(string(bytes.TrimSpace(rest)), 64)
			return v, err == nil
		}
	}
	return 0, false
}
