package kluisbus

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/term"

	"kluis/deploy/dev/testenv"
	"kluis/hardware/kluisproto"
)

// The board emulator: Kluis boards behind the master end of a
// pseudo-terminal, built on kluisproto's board side, with knobs for line
// noise and misbehaviour.

type pulseRec struct {
	board byte
	ch    byte
	id    uint32
}

type emuBoard struct {
	addr     byte
	channels int
	caps     byte
	slots    int
	boot     uint32

	locked, door, item kluisproto.Bitmap
	queue              kluisproto.EventQueue
	ids                kluisproto.IDCache
	cooldown           [kluisproto.MaxChannels]time.Time
	watchdog           uint8
	watchdogSets       int
	frames             int // frames addressed to the board, heard or not
	polls              int // EVENTS requests answered
	relocks            int
	silent             bool

	// automaton
	hatchSlot int
	busy      bool
	fault     byte
	moves     int
}

type emulator struct {
	t      *testing.T
	master *os.File
	path   string

	mu     sync.Mutex
	boards map[byte]*emuBoard
	pulses []pulseRec
	// requests counts UNLOCK frames received per command id.
	requests map[uint32]int
	rng      *rand.Rand
	// corrupt is the probability that any byte on the line, either way,
	// is replaced by a random one.
	corrupt float64
	// prefix is sent before every reply (garbage, broken frames).
	prefix func() []byte
	// replay is the probability that a reply is preceded by an earlier
	// reply, byte for byte, of any board and boot (a stale or replayed
	// frame: good CRC, old content); sent keeps every reply sent.
	replay float64
	sent   [][]byte
	// dropReplies swallows the next n replies (the board acts, the answer
	// is lost).
	dropReplies int
	// lag holds every reply back this long (a board process starved of
	// the CPU answers late); lagged counts the replies sent after it.
	lag      time.Duration
	lagged   int
	nextBoot uint32
	dec      kluisproto.Decoder
	out      [][]byte
	done     chan struct{}
	// stop closes the pty: the device vanishes (an unplugged adapter).
	stop func()
}

func newEmulator(t *testing.T, seed uint64) *emulator {
	t.Helper()
	master, tty, err := pty.Open()
	if err != nil {
		// Fail, not skip: a machine without ptys must not pass by
		// running none of the driver tests.
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	if _, err := term.MakeRaw(int(tty.Fd())); err != nil {
		t.Fatal(err)
	}
	// A non-blocking master in Go's poller, so that closing it ends a
	// pending Read (stop, while the driver still holds the slave open).
	fd, err := syscall.Dup(int(master.Fd()))
	master.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	master = os.NewFile(uintptr(fd), "/dev/ptmx")
	e := &emulator{
		t: t, master: master, path: tty.Name(),
		boards:   map[byte]*emuBoard{},
		requests: map[uint32]int{},
		rng:      rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15)),
		nextBoot: 100,
		done:     make(chan struct{}),
	}
	// Keep a descriptor of the slave end open: while no slave descriptor
	// is open, reads on the master fail with EIO (before the driver opens
	// the device, between its reopens).
	e.dec.OnBadCRC = e.badCRC
	go e.run()
	e.stop = sync.OnceFunc(func() {
		master.Close()
		tty.Close()
		<-e.done
	})
	t.Cleanup(e.stop)
	return e
}

func (e *emulator) addBoard(addr byte, channels int) *emuBoard {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nextBoot++
	b := &emuBoard{addr: addr, channels: channels, caps: kluisproto.CapDoorSensor | kluisproto.CapItemSensor,
		boot: e.nextBoot, locked: kluisproto.Bitmap(1)<<channels - 1, watchdog: 30, hatchSlot: -1}
	e.boards[addr] = b
	return b
}

func (e *emulator) addAutomaton(addr byte, slots int) *emuBoard {
	b := e.addBoard(addr, 1)
	e.mu.Lock()
	b.caps |= kluisproto.CapMechanism
	b.slots = slots
	e.mu.Unlock()
	return b
}

func (e *emulator) run() {
	defer close(e.done)
	chunks := make(chan []byte, 64)
	go func() {
		defer close(chunks)
		buf := make([]byte, 512)
		for {
			n, err := e.master.Read(buf)
			if n > 0 {
				chunks <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				return
			}
		}
	}()
	quiet := time.NewTimer(time.Hour)
	for {
		select {
		case c, ok := <-chunks:
			if !ok {
				return
			}
			e.mu.Lock()
			e.mangle(c)
			e.dec.Write(c)
			for {
				f, ok := e.dec.Next()
				if !ok {
					break
				}
				e.handle(f)
			}
			out := e.out
			e.out = nil
			lag := e.lag
			e.mu.Unlock()
			for _, b := range out {
				time.Sleep(time.Millisecond + lag) // turnaround
				if _, err := e.master.Write(b); err != nil {
					return
				}
				if lag > 0 {
					e.mu.Lock()
					e.lagged++
					e.mu.Unlock()
				}
			}
			quiet.Reset(20 * time.Millisecond)
		case <-quiet.C:
			// The inter-byte timeout: a partial frame is dropped.
			e.mu.Lock()
			e.dec.Reset()
			e.mu.Unlock()
		}
	}
}

// mangle corrupts bytes with probability e.corrupt; e.mu held.
func (e *emulator) mangle(b []byte) {
	if e.corrupt <= 0 {
		return
	}
	for i := range b {
		if e.rng.Float64() < e.corrupt {
			b[i] ^= byte(1 + e.rng.IntN(255))
		}
	}
}

// send queues a reply from board addr; e.mu held.
func (e *emulator) send(addr byte, m kluisproto.Message) {
	if e.dropReplies > 0 {
		e.dropReplies--
		return
	}
	b, err := kluisproto.EncodeMessage(addr, m)
	if err != nil {
		e.t.Errorf("emulator encode: %v", err)
		return
	}
	var out []byte
	if e.prefix != nil {
		out = append(out, e.prefix()...)
	}
	if e.replay > 0 && len(e.sent) > 0 && e.rng.Float64() < e.replay {
		out = append(out, e.sent[e.rng.IntN(len(e.sent))]...)
	}
	e.sent = append(e.sent, b)
	out = append(out, b...)
	e.mangle(out)
	e.out = append(e.out, out)
}

func isRequestCmd(c byte) bool { return c >= kluisproto.CmdInfo && c <= kluisproto.CmdHatch }

// badCRC answers NAK BAD_CRC to a damaged frame clearly meant for a board.
func (e *emulator) badCRC(raw []byte) {
	b, ok := e.boards[raw[1]]
	if !ok || b.silent || !isRequestCmd(raw[2]) {
		return
	}
	e.send(b.addr, &kluisproto.Nak{Cmd: raw[2], Code: kluisproto.CodeBadCRC})
}

func (e *emulator) handle(f kluisproto.Frame) {
	b, ok := e.boards[f.Addr]
	if ok && !f.IsReply() {
		b.frames++
	}
	if !ok || f.IsReply() || b.silent {
		return
	}
	req, err := kluisproto.ParseRequest(f)
	if err != nil {
		e.send(b.addr, &kluisproto.Nak{Cmd: f.Cmd, Code: err.(kluisproto.ErrorCode)})
		return
	}
	if r := e.process(b, req); r != nil {
		e.send(b.addr, r)
	}
}

func nak(cmd byte, code kluisproto.ErrorCode, arg byte) *kluisproto.Nak {
	return &kluisproto.Nak{Cmd: cmd, Code: code, Arg: arg}
}

func (e *emulator) process(b *emuBoard, req kluisproto.Message) kluisproto.Message {
	now := time.Now()
	mech := b.caps&kluisproto.CapMechanism != 0
	switch r := req.(type) {
	case *kluisproto.InfoRequest:
		return &kluisproto.InfoReply{Protocol: 1, FwMajor: 1, FwMinor: 2, Channels: uint8(b.channels), Caps: b.caps, Slots: uint8(b.slots), BootID: b.boot}
	case *kluisproto.StatusRequest:
		return &kluisproto.StatusReply{BootID: b.boot, Channels: uint8(b.channels), Locked: b.locked, DoorOpen: b.door, ItemPresent: b.item}
	case *kluisproto.UnlockRequest:
		e.requests[r.ID]++
		if m, err := b.ids.Lookup(kluisproto.CmdUnlock, r.ID); err != nil {
			return nak(kluisproto.CmdUnlock, err.(kluisproto.ErrorCode), 0)
		} else if m != nil {
			return m
		}
		if int(r.Channel) >= b.channels {
			return nak(kluisproto.CmdUnlock, kluisproto.CodeOutOfRange, 0)
		}
		if err := r.Check(); err != nil {
			return nak(kluisproto.CmdUnlock, kluisproto.CodeBadArgument, 0)
		}
		if until := b.cooldown[r.Channel]; now.Before(until) {
			return nak(kluisproto.CmdUnlock, kluisproto.CodeBusy, byte(min((until.Sub(now)+99*time.Millisecond)/(100*time.Millisecond), 255)))
		}
		d := time.Duration(r.DurationMS) * time.Millisecond
		b.cooldown[r.Channel] = now.Add(d + 200*time.Millisecond)
		b.locked = b.locked.Set(int(r.Channel), false)
		ch, boot := int(r.Channel), b.boot
		time.AfterFunc(d, func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			if b.boot == boot {
				b.locked = b.locked.Set(ch, true)
			}
		})
		e.pulses = append(e.pulses, pulseRec{b.addr, r.Channel, r.ID})
		b.queue.Push(kluisproto.EvUnlocked, r.Channel, 0)
		reply := &kluisproto.UnlockReply{Channel: r.Channel, DurationMS: r.DurationMS, ID: r.ID}
		b.ids.Remember(r.ID, reply)
		return reply
	case *kluisproto.EventsRequest:
		b.polls++
		return b.queue.Reply(b.boot)
	case *kluisproto.AckRequest:
		if r.BootID != b.boot {
			return nak(kluisproto.CmdAck, kluisproto.CodeBootMismatch, 0)
		}
		left := b.queue.Ack(r.Seq)
		return &kluisproto.AckReply{BootID: b.boot, Pending: uint8(min(left, 255))}
	case *kluisproto.WatchdogRequest:
		b.watchdog = r.TimeoutS
		b.watchdogSets++
		return &kluisproto.WatchdogReply{BootID: b.boot, TimeoutS: b.watchdog}
	case *kluisproto.RelockAllRequest:
		b.locked = kluisproto.Bitmap(1)<<b.channels - 1
		b.relocks++
		b.busy = false
		return &kluisproto.RelockAllReply{}
	case *kluisproto.PresentRequest:
		if !mech {
			return nak(kluisproto.CmdPresent, kluisproto.CodeUnknownCmd, 0)
		}
		if m, err := b.ids.Lookup(kluisproto.CmdPresent, r.ID); err != nil {
			return nak(kluisproto.CmdPresent, err.(kluisproto.ErrorCode), 0)
		} else if m != nil {
			return m
		}
		if int(r.Slot) >= b.slots {
			return nak(kluisproto.CmdPresent, kluisproto.CodeOutOfRange, 0)
		}
		if r.ID == 0 {
			return nak(kluisproto.CmdPresent, kluisproto.CodeBadArgument, 0)
		}
		if b.fault != 0 {
			return nak(kluisproto.CmdPresent, kluisproto.CodeFault, b.fault)
		}
		if b.busy || b.door.Get(0) {
			return nak(kluisproto.CmdPresent, kluisproto.CodeBusy, 1)
		}
		b.busy = true
		b.moves++
		b.hatchSlot = -1
		slot, boot := int(r.Slot), b.boot
		time.AfterFunc(30*time.Millisecond, func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			if b.boot != boot || !b.busy {
				return
			}
			b.busy = false
			b.hatchSlot = slot
			b.queue.Push(kluisproto.EvSlotPresented, kluisproto.ChannelNone, byte(slot))
		})
		reply := &kluisproto.PresentReply{Slot: r.Slot, ID: r.ID}
		b.ids.Remember(r.ID, reply)
		return reply
	case *kluisproto.HatchRequest:
		if !mech {
			return nak(kluisproto.CmdHatch, kluisproto.CodeUnknownCmd, 0)
		}
		slot := kluisproto.SlotNone
		if b.hatchSlot >= 0 {
			slot = byte(b.hatchSlot)
		}
		return &kluisproto.HatchReply{Open: b.door.Get(0), Locked: b.locked.Get(0), Busy: b.busy, Fault: b.fault != 0,
			ItemAtHatch: b.item.Get(0), Slot: slot, FaultCode: b.fault}
	}
	return nak(req.Command(), kluisproto.CodeUnknownCmd, 0)
}

// ---- the physical world ----

func (e *emulator) setDoor(addr byte, ch int, open bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := e.boards[addr]
	if b.door.Get(ch) == open {
		return
	}
	b.door = b.door.Set(ch, open)
	kind := map[bool]kluisproto.EventKind{true: kluisproto.EvDoorOpened, false: kluisproto.EvDoorClosed}[open]
	if ch == 0 && b.caps&kluisproto.CapMechanism != 0 {
		kind = map[bool]kluisproto.EventKind{true: kluisproto.EvHatchOpened, false: kluisproto.EvHatchClosed}[open]
	}
	b.queue.Push(kind, byte(ch), 0)
}

func (e *emulator) setItem(addr byte, ch int, present bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := e.boards[addr]
	if b.item.Get(ch) == present {
		return
	}
	b.item = b.item.Set(ch, present)
	b.queue.Push(map[bool]kluisproto.EventKind{true: kluisproto.EvItemPlaced, false: kluisproto.EvItemRemoved}[present], byte(ch), 0)
}

// reboot restarts a board: new boot id, empty queue, ids forgotten, every
// lock locked; doors and items stay as they physically are.
func (e *emulator) reboot(addr byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rebootLocked(addr)
}

func (e *emulator) rebootLocked(addr byte) {
	b := e.boards[addr]
	e.nextBoot++
	b.boot = e.nextBoot
	b.queue.Clear()
	b.ids.Clear()
	b.locked = kluisproto.Bitmap(1)<<b.channels - 1
	b.watchdog = 30
	b.busy = false
}

func (e *emulator) setSilent(addr byte, silent bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.boards[addr].silent = silent
}

// setLag holds every reply back by lag from now on.
func (e *emulator) setLag(lag time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lag = lag
}

// laggedReplies returns how many replies went out held back.
func (e *emulator) laggedReplies() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lagged
}

func (e *emulator) with(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f()
}

func (e *emulator) pulseLog() []pulseRec {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]pulseRec(nil), e.pulses...)
}

func (e *emulator) queued(addr byte) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.boards[addr].queue.Len()
}

func (e *emulator) framesTo(addr byte) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.boards[addr].frames
}

// polled reports whether every board in addrs was asked for its events at
// least once: Watch has prepared it (INFO, WATCHDOG, STATUS) and polls it.
func (e *emulator) polled(addrs ...byte) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range addrs {
		if e.boards[a].polls == 0 {
			return false
		}
	}
	return true
}

// waitPolled waits (bounded) until Watch polls every board in addrs.
func (e *emulator) waitPolled(t *testing.T, addrs ...byte) {
	t.Helper()
	testenv.EventuallyWithin(t, 5*time.Second, fmt.Sprintf("Watch polling boards %v", addrs), func() bool { return e.polled(addrs...) })
}
