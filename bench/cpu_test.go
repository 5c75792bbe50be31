package bench

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// BackendCPU counts the CPU of its own database's backends, also of one
// that connects after it started, and not another database's.
func TestBackendCPUCountsItsDatabaseOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbName := func(u string) string {
		p, err := url.Parse(u)
		require.NoError(t, err)
		return strings.TrimPrefix(p.Path, "/")
	}
	busyURL, dropBusy, err := TempDatabase(ctx, DefaultAdminURL(), "cpubusy")
	require.NoError(t, err)
	defer dropBusy()
	idle := tempConn(t, ctx, "cpuidle")

	busyCPU, idleCPU := StartBackendCPU(dbName(busyURL)), StartBackendCPU(idle.Config().Database)
	busy, err := pgx.Connect(ctx, busyURL) // after the start: counted from its first sample
	require.NoError(t, err)
	defer busy.Close(context.Background())
	var n int64
	require.NoError(t, busy.QueryRow(ctx, "SELECT count(*) FROM generate_series(1, 4000000)").Scan(&n))
	require.Equal(t, int64(4000000), n)
	used, other := busyCPU.Stop(), idleCPU.Stop() // Stop samples once more
	require.GreaterOrEqual(t, used, 50*time.Millisecond, "4 million rows counted take CPU")
	require.Less(t, other, 30*time.Millisecond, "the idle database's backend did nothing")
}

// Own is the sampling thread's CPU time alone: some (it lists /proc every
// 50 ms), and not the time another thread of the process burns meanwhile.
// The busy loop runs on a thread of its own and measures that thread, so
// the check holds at any load: the sampler's Own and the busy thread's time
// are disjoint parts of the process's (a load of 45 once gave the busy loop
// 23 ms of CPU in 300 ms of wall time, less than twice the sampler's own
// listing of 900 processes, when the check compared the two).
func TestBackendCPUOwnIsTheSamplersAlone(t *testing.T) {
	s := StartBackendCPU("kluis_bench_no_such_database")
	self0 := SelfCPU()
	busy := make(chan time.Duration)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		t0 := threadCPU()
		deadline := time.Now().Add(20 * time.Second) // bounded on a starved machine
		for x := 0; threadCPU()-t0 < 100*time.Millisecond && time.Now().Before(deadline); x++ {
			_ = x * x
		}
		busy <- threadCPU() - t0
	}()
	busyThread := <-busy
	s.Stop()
	burnt := SelfCPU() - self0
	require.GreaterOrEqual(t, busyThread, 100*time.Millisecond, "the busy thread got its CPU within 20 s")
	require.Greater(t, s.Own(), time.Duration(0), "listing /proc takes some CPU")
	// Counted the whole process, Own would hold the busy thread's 100 ms.
	require.LessOrEqual(t, s.Own()+busyThread, burnt+5*time.Millisecond, "the busy loop is not the sampler's")
}

// ProcCPU and ProcRSS read a process's own figures: this one's, which
// burns CPU and holds memory, and nothing for a process that is gone.
func TestProcCPUAndRSS(t *testing.T) {
	pid := os.Getpid()
	before := ProcCPU(pid)
	deadline := time.Now().Add(300 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	require.Greater(t, ProcCPU(pid), before, "a 300 ms busy loop shows in /proc")
	held := make([]byte, 64<<20)
	for i := range held {
		held[i] = 1
	}
	require.Greater(t, ProcRSS(pid), float64(64<<20), "64 MB touched are resident")
	require.Equal(t, byte(1), held[len(held)-1])
	require.Zero(t, ProcRSS(1<<30), "no such process")
	require.Zero(t, ProcCPU(1<<30), "no such process")
}

// LoadAvg gives the three load averages as numbers.
func TestLoadAvgIsThreeNumbers(t *testing.T) {
	f := strings.Fields(LoadAvg())
	require.Len(t, f, 3)
	for _, s := range f {
		v, err := strconv.ParseFloat(s, 64)
		require.NoError(t, err, s)
		require.GreaterOrEqual(t, v, 0.0)
	}
}

// BenchmarkBackendCPUSample is one sample of a database with a backend
// (what the verify bench's sampler does every 50 ms), its CPU and its
// allocations: go test -run XXX -bench BackendCPUSample -benchmem ./bench/
func BenchmarkBackendCPUSample(b *testing.B) {
	conn := tempConn(b, context.Background(), "cpusample")
	s := newBackendCPU(conn.Config().Database) // sampled here, not by a goroutine of its own
	defer s.closeFiles()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s.sample(true)
	require.Len(b, s.last, 1, "the backend found")
	b.ReportAllocs()
	b.ResetTimer()
	t0 := threadCPU()
	for range b.N {
		s.sample(false)
	}
	b.ReportMetric(float64(threadCPU()-t0)/float64(b.N), "cpu-ns/op")
}

// tempConn is a connection to a throw-away database (name its prefix),
// both gone when tb ends.
func tempConn(tb testing.TB, ctx context.Context, name string) *pgx.Conn {
	tb.Helper()
	u, drop, err := TempDatabase(ctx, DefaultAdminURL(), name)
	require.NoError(tb, err)
	tb.Cleanup(drop)
	c, err := pgx.Connect(ctx, u)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// The sampler's candidates are the pids its children file lists (none
// when it is empty); a children file it cannot read (the postmaster gone)
// is closed and /proc listed instead.
func TestBackendCPUCandidates(t *testing.T) {
	open := func(path string) int {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		require.NoError(t, err)
		return fd
	}
	dir := t.TempDir()
	list, empty := filepath.Join(dir, "children"), filepath.Join(dir, "none")
	require.NoError(t, os.WriteFile(list, []byte("12 345 6\n"), 0o600))
	require.NoError(t, os.WriteFile(empty, nil, 0o600))

	s := newBackendCPU("x")
	defer s.closeFiles()
	s.children = open(list)
	require.Equal(t, []int{12, 345, 6}, s.candidates())
	require.NoError(t, syscall.Close(s.children))
	s.children = open(empty)
	require.Empty(t, s.candidates(), "no children")
	require.NoError(t, syscall.Close(s.children))
	s.children = open(dir) // not readable: EISDIR
	require.Contains(t, s.candidates(), os.Getpid(), "/proc listed")
	require.Equal(t, -1, s.children)
}
