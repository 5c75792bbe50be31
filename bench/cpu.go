package bench

import (
	"bytes"
	"os"
	"path/filepath"
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
}

// StartBackendCPU starts sampling every 50 ms the backends of database db.
func StartBackendCPU(db string) *BackendCPU {
	s := &BackendCPU{db: db, stop: make(chan struct{}), done: make(chan struct{}), first: map[int]int64{}, last: map[int]int64{}}
	s.sample(true)
	go func() {
		defer close(s.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				s.sample(false)
				return
			case <-t.C:
				s.sample(false)
			}
		}
	}()
	return s
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
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	want := []byte(" " + s.db + " ")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range dirs {
		cmd, err := os.ReadFile(p)
		if err != nil || !bytes.HasPrefix(cmd, []byte("postgres: ")) || !bytes.Contains(cmd, want) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		t, ok := procTicks(filepath.Join(filepath.Dir(p), "stat"))
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
}

// procTicks is utime + stime of /proc/<pid>/stat.
func procTicks(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 { // state(0) ... utime(11) stime(12)
		return 0, false
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, true
}
