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
	// The sampling goroutine's own: each backend's stat file, open (read
	// again at offset 0 every sample: no open, no path, no allocation);
	// the postmaster's children file once a backend named it (the
	// processes to look at, instead of listing /proc's 300 to 900
	// entries); the buffer they are read into; the pids seen in a sample.
	stats    map[int]int
	children int // -1: not known (or not readable): /proc is listed
	buf      []byte
	alive    map[int]bool
	pids     []int
	// own is the sampling thread's CPU time (set when it ends): reading
	// /proc every 50 ms is the bench's work, not the measured process's.
	own time.Duration
}

// StartBackendCPU starts sampling every 50 ms the backends of database db.
// The sampling runs on a thread of its own, whose CPU time Own reports.
func StartBackendCPU(db string) *BackendCPU {
	s := newBackendCPU(db)
	ready := make(chan struct{})
	go func() {
		defer close(s.done)
		defer s.closeFiles()
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

func newBackendCPU(db string) *BackendCPU {
	return &BackendCPU{db: db, stop: make(chan struct{}), done: make(chan struct{}), first: map[int]int64{}, last: map[int]int64{},
		other: map[int]bool{}, stats: map[int]int{}, children: -1, buf: make([]byte, 4096), alive: map[int]bool{}}
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
// bench's process CPU (docs/performance.md, "The bench's own sampler");
// since the sixteenth pass it reads the postmaster's children and keeps
// each backend's stat file open.
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

func (s *BackendCPU) closeFiles() {
	for pid, fd := range s.stats {
		_ = syscall.Close(fd)
		delete(s.stats, pid)
	}
	if s.children >= 0 {
		_ = syscall.Close(s.children)
		s.children = -1
	}
}

// readAt reads fd's whole content from offset 0 into s.buf (grown as
// needed) and returns it (empty for an empty file); false when it cannot
// be read (its process is gone). /proc files are made again at each read.
func (s *BackendCPU) readAt(fd int) ([]byte, bool) {
	for {
		n, err := syscall.Pread(fd, s.buf, 0)
		if err != nil || n < 0 {
			return nil, false
		}
		if n < len(s.buf) {
			return s.buf[:n], true
		}
		s.buf = make([]byte, 2*len(s.buf))
	}
}

// candidates are the pids to look at: the postmaster's children when
// known, else every process.
func (s *BackendCPU) candidates() []int {
	s.pids = s.pids[:0]
	if s.children >= 0 {
		if b, ok := s.readAt(s.children); ok { // empty: no children
			pid := -1
			for _, c := range b {
				switch {
				case c >= '0' && c <= '9':
					pid = max(pid, 0)*10 + int(c-'0')
				case pid >= 0:
					s.pids = append(s.pids, pid)
					pid = -1
				}
			}
			if pid >= 0 {
				s.pids = append(s.pids, pid)
			}
			return s.pids
		}
		_ = syscall.Close(s.children) // the postmaster is gone: list /proc
		s.children = -1
	}
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, name := range names {
		if pid, err := strconv.Atoi(name); err == nil {
			s.pids = append(s.pids, pid)
		}
	}
	return s.pids
}

func (s *BackendCPU) sample(initial bool) {
	pids := s.candidates()
	clear(s.alive)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pid := range pids {
		s.alive[pid] = true
		if s.other[pid] {
			continue
		}
		fd, open := s.stats[pid]
		if !open {
			dir := "/proc/" + strconv.Itoa(pid)
			cmd, err := os.ReadFile(dir + "/cmdline")
			if err != nil {
				continue
			}
			if !bytes.HasPrefix(cmd, []byte("postgres: ")) || !bytes.Contains(cmd, []byte(" "+s.db+" ")) {
				// A backend just forked still shows the postmaster's
				// command line until it sets its title: look again.
				if !bytes.Contains(cmd, []byte("postgres")) || bytes.HasPrefix(cmd, []byte("postgres: ")) {
					s.other[pid] = true
				}
				continue
			}
			if fd, err = syscall.Open(dir+"/stat", syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err != nil {
				continue
			}
			s.stats[pid] = fd
		}
		b, ok := s.readAt(fd)
		if !ok {
			_ = syscall.Close(fd) // the backend ended: its last sample stands
			delete(s.stats, pid)
			continue
		}
		t, ppid, ok := statTicks(b)
		if !ok {
			continue
		}
		if s.children < 0 && ppid > 1 {
			p := "/proc/" + strconv.Itoa(ppid) + "/task/" + strconv.Itoa(ppid) + "/children"
			if c, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err == nil {
				s.children = c
			}
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
		if !s.alive[pid] {
			delete(s.other, pid)
		}
	}
	for pid, fd := range s.stats {
		if !s.alive[pid] {
			_ = syscall.Close(fd)
			delete(s.stats, pid)
		}
	}
}

// statTicks is utime + stime and the parent's pid of a /proc/<pid>/stat
// line, read in place (fields after the command name, see StatFields:
// ppid is field 1, utime 11, stime 12).
func statTicks(b []byte) (ticks int64, ppid int, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	var utime int64
	field, n, in := -1, int64(0), false
	for _, c := range b[i+1:] {
		if c == ' ' || c == '\n' {
			if in {
				switch field {
				case 1:
					ppid = int(n)
				case 11:
					utime = n
				case 12:
					return utime + n, ppid, true
				}
				in = false
			}
			continue
		}
		if !in {
			in, n = true, 0
			field++
		}
		n = n*10 + int64(c-'0') // the state (field 0) is a letter: its number is not used
	}
	return 0, 0, false
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
