package tap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"kluis/bench"
)

// The floor of kluisd's start, measured in the same run as the starts and
// interleaved with them (docs/performance.md, "kluisd's start and
// memory"): the start of an empty Go program (exec and the Go runtime's
// start, what any Go daemon pays), the start of `kluisd --version` (the
// same binary's exec, runtime start and package init, none of kluisd's own
// start), the minor page faults of each and what one page fault costs on
// this machine. A page fault's cost differs between machines by more than
// ten times (a paravirtualized VM: 11-17 µs for an anonymous page, about
// 1 µs on bare metal), and a Go program's start is mostly page faults, so
// READY=1 alone cannot be compared between machines; against this floor
// it can.

// execSample is one start of a program that exits at once.
type execSample struct {
	wall   time.Duration // fork/exec to exit, as seen by the bench
	minflt int64         // the child's minor page faults (getrusage)
}

// execOnce runs bin with args to its exit and measures it. An exit
// status other than 0 is measured too (a kluisd older than --version
// exits 2 after the same runtime start and package init).
func execOnce(ctx context.Context, bin string, args ...string) (execSample, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	t0 := time.Now()
	err := cmd.Run()
	wall := time.Since(t0)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return execSample{}, fmt.Errorf("floor: %s: %w", filepath.Base(bin), err)
	}
	s := execSample{wall: wall}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.minflt = ru.Minflt
	}
	return s, nil
}

// emptyGo is the floor's Go program: it does nothing.
const emptyGo = "package main\n\nfunc main() {}\n"

// buildEmpty builds the empty Go program to out as kluisd is built
// (CGO_ENABLED=0, -trimpath) with the same toolchain.
func buildEmpty(ctx context.Context, out string) error {
	src := filepath.Join(filepath.Dir(out), "empty-go-src")
	if err := os.MkdirAll(src, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(emptyGo), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module emptygo\n\ngo 1.22\n"), 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("floor: go build of the empty program: %w\n%s", err, b)
	}
	return nil
}

// faultCost is what one minor page fault costs this process, measured by
// touching fresh pages on one OS thread and counting that thread's faults.
type faultCost struct {
	anon time.Duration // a first write to an anonymous page (the heap, stacks)
	file time.Duration // a first read of a page of the binary, mapped privately as exec maps it (the kernel maps up to 16 cached pages around each fault)
}

// measureFaultCost writes to pages fresh anonymous pages and reads every
// page of the file bin (kluisd's binary, in the page cache since its last
// start; the bench's own when bin is a small script that execs kluisd)
// mapped privately, and divides the time each took by its faults.
// A file written just before is no measure of the binary's faults: the
// kernel caches it in large folios and maps megabytes per fault.
func measureFaultCost(bin string, pages int) (faultCost, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	anon, err := unix.Mmap(-1, 0, pages*os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return faultCost{}, fmt.Errorf("fault cost: mmap: %w", err)
	}
	d, n, err := touch(anon, true)
	_ = unix.Munmap(anon)
	if err != nil {
		return faultCost{}, err
	}
	var c faultCost
	c.anon = perFault(d, n)

	if st, err := os.Stat(bin); err != nil || st.Size() < 1<<20 {
		// A script that execs kluisd (-bin): map the bench's own binary.
		if bin, err = os.Executable(); err != nil {
			return faultCost{}, fmt.Errorf("fault cost: %w", err)
		}
	}
	f, err := os.Open(bin)
	if err != nil {
		return faultCost{}, fmt.Errorf("fault cost: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return faultCost{}, fmt.Errorf("fault cost: %w", err)
	}
	size := int(st.Size()) / os.Getpagesize() * os.Getpagesize()
	// Its pages that exec never read (symbols, debug data) come into the
	// page cache first: the faults measured are minor, as a start's are.
	if _, err := io.CopyBuffer(io.Discard, f, make([]byte, 64<<10)); err != nil {
		return faultCost{}, fmt.Errorf("fault cost: read %s: %w", bin, err)
	}
	file, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		return faultCost{}, fmt.Errorf("fault cost: mmap %s: %w", bin, err)
	}
	d, n, err = touch(file, false)
	_ = unix.Munmap(file)
	if err != nil {
		return faultCost{}, err
	}
	c.file = perFault(d, n)
	return c, nil
}

// touch writes (or reads) one byte of every page of mem and returns the
// time it took and the calling thread's minor faults meanwhile. The caller
// has locked its OS thread.
func touch(mem []byte, write bool) (time.Duration, int64, error) {
	var r0, r1 unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &r0); err != nil {
		return 0, 0, fmt.Errorf("fault cost: getrusage: %w", err)
	}
	page := os.Getpagesize()
	t0 := time.Now()
	var x byte
	for i := 0; i < len(mem); i += page {
		if write {
			mem[i] = 1
		} else {
			x ^= mem[i]
		}
	}
	runtime.KeepAlive(x)
	d := time.Since(t0)
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &r1); err != nil {
		return 0, 0, fmt.Errorf("fault cost: getrusage: %w", err)
	}
	// A major fault (a page read from disk) is counted too, so that its
	// time is not charged to the minor ones.
	return d, r1.Minflt - r0.Minflt + r1.Majflt - r0.Majflt, nil
}

// perFault is d spread over n faults (0 when there were none).
func perFault(d time.Duration, n int64) time.Duration {
	if n <= 0 {
		return 0
	}
	return d / time.Duration(n)
}

// faultTime estimates how much of a start went to page faults: each
// resident anonymous page (anonBytes, RssAnon) was one anonymous fault
// (no transparent huge pages for Go's heap), the other faults were of
// the binary's file-backed pages.
func faultTime(minflt int64, anonBytes float64, c faultCost) time.Duration {
	anon := min(int64(anonBytes)/int64(os.Getpagesize()), minflt)
	return time.Duration(anon)*c.anon + time.Duration(minflt-anon)*c.file
}

// procFaults is the minor and major page faults process pid has taken so
// far, from /proc/<pid>/stat.
func procFaults(pid int) (minflt, majflt int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseStatFaults(string(b))
}

// parseStatFaults reads minflt and majflt (fields 10 and 12) from a
// /proc/<pid>/stat line.
func parseStatFaults(stat string) (minflt, majflt int64, err error) {
	f, err := bench.StatFields(stat, 10)
	if err != nil {
		return 0, 0, err
	}
	// f[0] is field 3 (state): minflt is field 10, majflt field 12.
	if minflt, err = strconv.ParseInt(f[7], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stat: minflt: %w", err)
	}
	if majflt, err = strconv.ParseInt(f[9], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stat: majflt: %w", err)
	}
	return minflt, majflt, nil
}

// floorFigures are the figures of one binary's starts against the floor
// measured next to them (name is appended to each figure's name).
func floorFigures(name string, ss []startSample) []bench.Figure {
	var ready, version, empty, faultT, beyond, costAnon, costFile []time.Duration
	var flt, vflt, eflt []float64
	for _, s := range ss {
		ready, version, empty = append(ready, s.notified), append(version, s.version.wall), append(empty, s.empty.wall)
		ft := faultTime(s.minflt, s.anon, s.cost)
		faultT, beyond = append(faultT, ft), append(beyond, s.notified-ft)
		costAnon, costFile = append(costAnon, s.cost.anon), append(costFile, s.cost.file)
		flt, vflt, eflt = append(flt, float64(s.minflt)), append(vflt, float64(s.version.minflt)), append(eflt, float64(s.empty.minflt))
	}
	med := func(ds []time.Duration) time.Duration { return bench.Percentile(ds, 50) }
	return []bench.Figure{
		{Name: "kluisd start, exec to READY=1 against `kluisd --version` (the same binary's exec, runtime start and package init), median" + name,
			Unit: "ms", LowerIsBetter: true, Value: msf(med(ready)), Floor: msf(med(version)),
			Notes: fmt.Sprintf("measured in turn with each start; an empty Go program (exec and runtime start): median %s; READY=1 less its estimated page-fault time (below): median %s",
				ms(med(empty)), ms(med(beyond)))},
		{Name: "kluisd start, minor page faults to READY=1, median" + name,
			Unit: "faults", LowerIsBetter: true, Value: bench.Median(flt), Floor: bench.Median(vflt),
			Notes: fmt.Sprintf("floor: `kluisd --version`'s; an empty Go program: %.0f; at this machine's cost of a fault (anonymous median %s, file-backed %s; %d pages touched per measure) READY=1's faults took about %s (median; anonymous faults counted as RssAnon's pages)",
				bench.Median(eflt), us(med(costAnon)), us(med(costFile)), faultPages, ms(med(faultT)))},
	}
}

// faultPages is how many pages measureFaultCost touches of each kind.
const faultPages = 1024

// us formats d in microseconds.
func us(d time.Duration) string {
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}
