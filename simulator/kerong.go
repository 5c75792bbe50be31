package simulator

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"kluis/hardware"
)

// Kerong KR-CU16 framing: STX ADDR CMD [DATA...] ETX SUM, SUM the low byte
// of the sum of every preceding byte.
const (
	kerongSTX       = 0x02
	kerongETX       = 0x03
	KerongCmdStatus = 0x30 // ask one board's status
	KerongCmdUnlock = 0x31 // pulse one lock
	KerongRspStatus = 0x35 // the board's status answer
)

// KerongOptions configure the Kerong responder.
type KerongOptions struct {
	// OpenBitClear inverts the feedback polarity: by default a set lock
	// bit means the door is open; with OpenBitClear a clear bit does.
	OpenBitClear bool
	// PulseTime is how long the board energises a lock on 0x31; default
	// 500ms (the board's own unlock time, not sent on the wire).
	PulseTime time.Duration
}

// Kerong is the board side of the Kerong CU16 protocol for every board of a
// device: board b answers ADDR b<<4 | lock. It is not safe for concurrent
// Handle calls (one line, one reader).
type Kerong struct {
	dev *Device
	o   KerongOptions
	buf []byte

	counts  LineStats  // Handle's goroutine
	statMu  sync.Mutex // guards stats, the snapshot LineStats returns
	stats   LineStats
	garbage bool // the bytes being skipped continue one garbage run
}

// LineStats returns what the boards heard so far.
func (k *Kerong) LineStats() LineStats {
	k.statMu.Lock()
	defer k.statMu.Unlock()
	return k.stats
}

// NewKerong builds the responder; dev may have at most 16 boards of 16
// channels.
func NewKerong(dev *Device, o KerongOptions) (*Kerong, error) {
	if dev.NumBoards() > 16 || dev.NumChannels() > 16 {
		return nil, fmt.Errorf("kerong-cu16 addresses 16 boards of 16 locks, device has %d of %d: %w", dev.NumBoards(), dev.NumChannels(), ErrBadInput)
	}
	if o.PulseTime <= 0 {
		o.PulseTime = 500 * time.Millisecond
	}
	return &Kerong{dev: dev, o: o}, nil
}

// KerongFrame builds a frame STX addr cmd data... ETX SUM.
func KerongFrame(addr, cmd byte, data ...byte) []byte {
	f := append([]byte{kerongSTX, addr, cmd}, data...)
	f = append(f, kerongETX)
	var s byte
	for _, b := range f {
		s += b
	}
	return append(f, s)
}

// Handle implements Responder.
func (k *Kerong) Handle(in []byte) []byte {
	k.buf = append(k.buf, in...)
	var out []byte
	for i := 0; i < 10000; i++ {
		// resync on STX
		j := 0
		for j < len(k.buf) && k.buf[j] != kerongSTX {
			j++
		}
		if j > 0 && !k.garbage {
			k.garbage = true
			k.counts.Garbage++
		}
		k.buf = k.buf[j:]
		if len(k.buf) < 5 {
			break
		}
		f := k.buf[:5]
		if f[3] != kerongETX || f[0]+f[1]+f[2]+f[3] != f[4] {
			k.counts.BadFrames++
			k.garbage = true // the rest of the bad frame is not a new run
			k.buf = k.buf[1:]
			continue
		}
		k.garbage = false
		k.counts.Frames++
		k.buf = k.buf[5:]
		reply := k.frame(f[1], f[2])
		if reply == nil {
			k.counts.Ignored++
		}
		out = append(out, reply...)
	}
	if len(k.buf) > 64 {
		k.buf = k.buf[len(k.buf)-64:]
	}
	k.statMu.Lock()
	k.stats = k.counts
	k.statMu.Unlock()
	return out
}

func (k *Kerong) frame(addr, cmd byte) []byte {
	b, lock := int(addr>>4), int(addr&0x0F)
	if b >= k.dev.NumBoards() {
		return nil
	}
	if cmd != KerongCmdStatus && cmd != KerongCmdUnlock {
		return nil
	}
	if k.dev.MaybeReboot(b) {
		return nil // the board restarts and misses this frame
	}
	l1, l2, ir1, ir2 := k.status(b)
	switch cmd {
	case KerongCmdStatus:
		return KerongFrame(addr, KerongRspStatus, l1, l2, ir1, ir2)
	default:
		if k.dev.Kind() == Automaton {
			return k.automatonUnlock(addr, b, lock)
		}
		if lock >= k.dev.NumChannels() {
			return nil
		}
		err := k.dev.Pulse(PulseRequest{Board: b, Channel: lock, Duration: k.o.PulseTime, Via: ProtoKerong})
		if err != nil && !errors.Is(err, hardware.ErrBusy) {
			return nil
		}
		l1, l2, _, _ = k.status(b)
		return KerongFrame(addr, KerongCmdUnlock, bit(l1, l2, lock))
	}
}

func bit(l1, l2 byte, i int) byte {
	if i < 8 {
		return (l1 >> i) & 1
	}
	return (l2 >> (i - 8)) & 1
}

// automatonUnlock: lock 0 pulses the hatch, lock s+1 starts slot s.
func (k *Kerong) automatonUnlock(addr byte, b, lock int) []byte {
	if lock == 0 {
		_ = k.dev.Pulse(PulseRequest{Board: b, Channel: 0, Duration: k.o.PulseTime, Via: ProtoKerong})
	} else if lock-1 < k.dev.Options().Slots {
		_ = k.dev.Present(b, lock-1, 0, ProtoKerong)
	} else {
		return nil
	}
	l1, l2, _, _ := k.status(b)
	return KerongFrame(addr, KerongCmdUnlock, bit(l1, l2, lock))
}

// status returns the four status bytes of board b.
func (k *Kerong) status(b int) (l1, l2, ir1, ir2 byte) {
	var lock, ir uint16
	if k.dev.Kind() == Automaton {
		h, err := k.dev.Hatch(b)
		if err != nil {
			return
		}
		for i, on := range []bool{h.Open, h.Busy, h.ItemAtHatch, h.Fault} {
			if on {
				lock |= 1 << i
			}
		}
		if h.ItemAtHatch {
			ir = 1
		}
	} else {
		rs, err := k.dev.Readings(b)
		if err != nil {
			return
		}
		for i, r := range rs {
			if r.DoorOpen {
				lock |= 1 << i
			}
			if r.ItemPresent {
				ir |= 1 << i
			}
		}
	}
	if k.o.OpenBitClear {
		lock = ^lock
	}
	return byte(lock), byte(lock >> 8), byte(ir), byte(ir >> 8)
}
