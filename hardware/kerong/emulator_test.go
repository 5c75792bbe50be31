package kerong

import (
	"math/rand"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/creack/pty"
	"golang.org/x/term"
)

// emulator is a small KR-CU16 bus on the master side of a pty: it answers
// status and unlock requests for its boards, counts pulses and can add
// noise. Lock bits are "set = closed" (Options.OpenBitClear).
type emulator struct {
	t      testing.TB
	master *os.File
	slave  *os.File

	mu     sync.Mutex
	boards map[int]*Status
	pulses map[[2]int]int
	rng    *rand.Rand
	// corruptPct corrupts that percentage of bytes in both directions.
	corruptPct int
	// noise: before each answer send garbage, a truncated frame and a
	// frame for a board that was not asked; after it the start of a frame
	// that never ends.
	noise bool
	// statusUnlockReply answers unlocks with a status frame instead of the
	// one-byte unlock reply.
	statusUnlockReply bool
	// dropUnlockReplies carries out unlocks but never answers them.
	dropUnlockReplies bool
	// jammed locks take the unlock but stay closed.
	jammed map[[2]int]bool
	// silent boards do not answer at all.
	silent   map[int]bool
	done     chan struct{}
	stopOnce sync.Once
}

func newEmulator(t *testing.T, boards ...int) *emulator { return newEmulatorTB(t, boards...) }

func newEmulatorTB(t testing.TB, boards ...int) *emulator {
	t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	if _, err := term.MakeRaw(int(slave.Fd())); err != nil {
		t.Fatalf("raw pty: %v", err)
	}
	master = pollable(t, master)
	e := &emulator{
		t: t, master: master, slave: slave,
		boards: map[int]*Status{},
		pulses: map[[2]int]int{},
		rng:    rand.New(rand.NewSource(1)),
		silent: map[int]bool{},
		jammed: map[[2]int]bool{},
		done:   make(chan struct{}),
	}
	for _, b := range boards {
		st := &Status{Board: b, Lock: [2]byte{0xff, 0xff}}
		e.boards[b] = st
	}
	go e.run()
	t.Cleanup(e.stop)
	return e
}

// pollable returns a non-blocking duplicate of f so that Close interrupts
// a pending Read (pty.Open leaves the master in blocking mode).
func pollable(t testing.TB, f *os.File) *os.File {
	t.Helper()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatalf("dup: %v", err)
	}
	_ = f.Close()
	if err := syscall.SetNonblock(fd, true); err != nil {
		t.Fatalf("nonblock: %v", err)
	}
	return os.NewFile(uintptr(fd), "ptmx")
}

func (e *emulator) path() string { return e.slave.Name() }

func (e *emulator) stop() {
	e.stopOnce.Do(func() {
		_ = e.master.Close()
		<-e.done
		_ = e.slave.Close()
	})
}

// corruptingReader flips bytes with the emulator's seeded generator.
type corruptingReader struct{ e *emulator }

func (c corruptingReader) Read(b []byte) (int, error) {
	n, err := c.e.master.Read(b)
	c.e.mu.Lock()
	for i := 0; i < n; i++ {
		if c.e.corruptPct > 0 && c.e.rng.Intn(100) < c.e.corruptPct {
			b[i] ^= byte(1 + c.e.rng.Intn(255))
		}
	}
	c.e.mu.Unlock()
	return n, err
}

func (e *emulator) run() {
	defer close(e.done)
	rd := NewReader(corruptingReader{e}, ToBoard)
	for {
		f, err := rd.Next()
		if err != nil {
			return // master closed
		}
		out := e.handle(f)
		if len(out) > 0 {
			if _, err := e.master.Write(out); err != nil {
				return
			}
		}
	}
}

func (e *emulator) handle(f Frame) []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := f.Board()
	st, ok := e.boards[b]
	if !ok || e.silent[b] {
		return nil
	}
	var reply []byte
	switch f.Cmd {
	case CmdStatus:
		if f.Lock() != 0 {
			return nil
		}
		reply = Encode(StatusReply(*st))
	case CmdUnlock:
		e.pulses[[2]int{b, f.Lock()}]++
		if !e.jammed[[2]int{b, f.Lock()}] {
			st.SetLockBit(f.Lock(), false) // the spring opens the door
		}
		if e.dropUnlockReplies {
			return nil
		}
		if e.statusUnlockReply {
			reply = Encode(StatusReply(*st))
		} else {
			reply = Encode(Frame{Addr: f.Addr, Cmd: CmdUnlockReply, Data: []byte{0x00}})
		}
	default:
		return nil
	}
	var out []byte
	if e.noise {
		out = append(out, 0xff, 0x13, 0x37)
		other := Encode(StatusReply(Status{Board: (b + 1) % 16}))
		out = append(out, other[:5]...) // truncated
		out = append(out, Encode(StatusReply(Status{Board: (b + 5) % 16}))...)
	}
	out = append(out, reply...)
	if e.noise {
		out = append(out, 0x02, byte(b<<4)) // the start of a frame that never ends
	}
	for i := range out {
		if e.corruptPct > 0 && e.rng.Intn(100) < e.corruptPct {
			out[i] ^= byte(1 + e.rng.Intn(255))
		}
	}
	return out
}

func (e *emulator) set(fn func(boards map[int]*Status)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fn(e.boards)
}

func (e *emulator) pulseCount(board, lock int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pulses[[2]int{board, lock}]
}

func (e *emulator) totalPulses() map[[2]int]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[[2]int]int{}
	for k, v := range e.pulses {
		out[k] = v
	}
	return out
}
