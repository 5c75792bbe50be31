package bench

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times (100 on
// Linux everywhere).
const clockTick = 100

// SelfCPU is the CPU time (user + system) this process has used.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BackendCPU samples the CPU time of the PostgreSQL backends serving one
// database (processes titled "postgres: <user> <database> ..."), also of
// those that start and end while it runs (pgbench's), to within one
// sampling interval of each one's end. The server is shared: only this
// database's backends count.
type BackendCPU struct {
	db    string
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	first map[int]int64 // ticks when first seen (0 for backends started meanwhile)
	last  map[int]int64
	// other holds the processes known not to be this database's backends
	// (only read by the sampling goroutine): their command line is read
	// once, not every 50 ms. Reading every process's command line through
	// filepath.Glob (a directory read per process) every 50 ms cost this
	// process more CPU than the backend it measured.
	other map[int]bool
	// own is the sampling thread's CPU time (set when it ends): reading
	// /proc every 50 ms is the bench's work, not the measured process's.
	own time.Duration
}

// StartBackendCPU starts sampling every 50 ms the backends of database db.
// The sampling runs on a thread of its own, whose CPU time Own reports.
func StartBackendCPU(db string) *BackendCPU {
	s := &BackendCPU{db: db, stop: make(chan struct{}), done: make(chan struct{}), first: map[int]int64{}, last: map[int]int64{}, other: map[int]bool{}}
	ready := make(chan struct{})
	go func() {
		defer close(s.done)
		// Locked and never unlocked: the thread ends with the goroutine,
		// so no other goroutine's work is counted as the sampler's.
		runtime.LockOSThread()
		t0 := threadCPU()
		s.sample(true)
		close(ready)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				s.sample(false)
				s.mu.Lock()
				s.own = threadCPU() - t0
				s.mu.Unlock()
				return
			case <-t.C:
				s.sample(false)
			}
		}
	}()
	<-ready
	return s
}

// threadCPU is the CPU time (user + system) the calling thread has used
// (RUSAGE_THREAD, Linux; 0 when it cannot be read).
func threadCPU() time.Duration {
	const rusageThread = 1 // RUSAGE_THREAD, which package syscall does not name
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Own is the CPU time the sampling itself used, in this process (known
// after Stop): a caller that measures its own process's CPU (SelfCPU)
// while sampling subtracts it. On a shared machine with about 900
// processes, listing /proc every 50 ms cost about 12% of the verify
// bench's process CPU (docs/performance.md, "The bench's own sampler").
func (s *BackendCPU) Own() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.own
}

// Stop ends sampling and returns the CPU time the database's backends used
// since the start.
func (s *BackendCPU) Stop() time.Duration {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	var ticks int64
	for pid, l := range s.last {
		ticks += l - s.first[pid]
	}
	return time.Duration(ticks) * time.Second / clockTick
}

func (s *BackendCPU) sample(initial bool) {
	d, err := os.Open("/proc")
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	want := []byte(" " + s.db + " ")
	alive := make(map[int]bool, len(names))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		alive[pid] = true
		if s.other[pid] {
			continue
		}
		dir := "/proc/" + name
		if _, ours := s.last[pid]; !ours {
			cmd, err := os.ReadFile(dir + "/cmdline")
			if err != nil {
				continue
			}
			if !bytes.HasPrefix(cmd, []byte("postgres: ")) || !bytes.Contains(cmd, want) {
				// A backend just forked still shows the postmaster's
				// command line until it sets its title: look again.
				if !bytes.Contains(cmd, []byte("postgres")) || bytes.HasPrefix(cmd, []byte("postgres: ")) {
					s.other[pid] = true
				}
				continue
			}
		}
		t, ok := procTicks(dir + "/stat")
		if !ok {
			continue
		}
		if _, seen := s.first[pid]; !seen {
			if initial {
				s.first[pid] = t
			} else {
				s.first[pid] = 0
			}
		}
		s.last[pid] = t
	}
	// A number that disappeared may come back as another process.
	for pid := range s.other {
		if !alive[pid] {
			delete(s.other, pid)
		}
	}
}

// StatFields splits a /proc/<pid>/stat line into its fields after the
// command name (field 2, which may hold spaces and parentheses): the
// first is field 3 (state), so field n of proc(5) is at n-3. It is an
// error unless at least min fields follow the name.
func StatFields(stat string, min int) ([]string, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, fmt.Errorf("stat: no command name in %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < min {
		return nil, fmt.Errorf("stat: %d fields after the command name, want %d", len(f), min)
	}
	return f, nil
}

// procTicks is utime + stime of /proc/<pid>/stat.
func procTicks(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	f, err := StatFields(string(b), 13) // state(0) ... utime(11) stime(12)
	if err != nil {
		return 0, false
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, true
}

// ProcCPU is the CPU time (user + system) process pid has used so far
// (0 when it cannot be read).
func ProcCPU(pid int) time.Duration {
	t, _ := procTicks("/proc/" + strconv.Itoa(pid) + "/stat")
	return time.Duration(t) * time.Second / clockTick
}

// ProcRSS is process pid's resident memory in bytes (VmRSS; 0 when it
// cannot be read).
func ProcRSS(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	return 0
}

// LoadAvg is /proc/loadavg's 1-, 5- and 15-minute load averages, e.g.
// "3.10 5.22 6.01" ("unknown" when it cannot be read). Runs note it: on a
// shared machine a figure means little without the load it was taken at.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
