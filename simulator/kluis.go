package simulator

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"kluis/hardware"
	"kluis/hardware/kluisproto"
)

// Kluis is the board side of the Kluis lock-board protocol
// (firmware-protocol.md) for every board of a device: board b answers
// address b. It uses hardware/kluisproto for framing and messages and keeps
// per board the remembered command ids (lost when the device's boot id
// changes) and the watchdog; the event queue and boot id live in the
// Device. Handle is called by one line reader at a time.
type Kluis struct {
	dev *Device
	dec *kluisproto.Decoder
	out []byte

	mu     sync.Mutex
	boards []*kluisBoard

	ignored uint64     // valid frames for no board here (Handle's goroutine)
	statMu  sync.Mutex // guards stats, the snapshot LineStats returns
	stats   LineStats
}

type kluisBoard struct {
	bootID   uint32
	ids      kluisproto.IDCache
	wdTimout time.Duration
	wdStop   func() bool
	wdGen    int
}

// FirmwareVersion is what simulated Kluis boards report in INFO.
var firmwareVersion = [3]byte{1, 0, 0}

// NewKluis builds the responder. dev may have at most 32 boards and, for
// automatons, 255 slots.
func NewKluis(dev *Device) (*Kluis, error) {
	if dev.NumBoards() > kluisproto.MaxAddr+1 || dev.NumChannels() > kluisproto.MaxChannels || dev.Options().Slots > 255 {
		return nil, fmt.Errorf("kluis protocol: at most 32 boards, 48 channels, 255 slots: %w", ErrBadInput)
	}
	k := &Kluis{dev: dev, dec: kluisproto.NewDecoder()}
	for b := 0; b < dev.NumBoards(); b++ {
		k.boards = append(k.boards, &kluisBoard{wdTimout: 30 * time.Second})
	}
	k.dec.OnBadCRC = k.badCRC
	return k, nil
}

func newKluisResponder(dev *Device) (Responder, error) { return NewKluis(dev) }

func (k *Kluis) badCRC(raw []byte) {
	// raw is SOF ADDR CMD LEN ... CRC: a complete frame, LEN <= 64
	if len(raw) < kluisproto.MinFrame {
		return
	}
	addr, cmd := int(raw[1]), raw[2]
	if addr >= k.dev.NumBoards() || cmd < kluisproto.CmdInfo || cmd > kluisproto.CmdHatch {
		return
	}
	k.reply(byte(addr), &kluisproto.Nak{Cmd: cmd, Code: kluisproto.CodeBadCRC})
}

// Partial reports whether a partial frame is held.
func (k *Kluis) Partial() bool { return k.dec.Buffered() > 0 }

// Idle is called by the line after the inter-byte timeout of silence: a
// partial frame is dropped.
func (k *Kluis) Idle() {
	if k.dec.Buffered() > 0 {
		k.dec.Reset()
		k.snapshot()
	}
}

// snapshot publishes the counts for LineStats; called by the line's
// goroutine after it fed the decoder.
func (k *Kluis) snapshot() {
	st := k.dec.Stats()
	k.statMu.Lock()
	k.stats = LineStats{Frames: st.Frames, Garbage: st.Garbage, BadFrames: st.BadCRC, Oversize: st.Oversize,
		Truncated: st.Truncated, Ignored: k.ignored}
	k.statMu.Unlock()
}

// LineStats returns what the boards heard so far.
func (k *Kluis) LineStats() LineStats {
	k.statMu.Lock()
	defer k.statMu.Unlock()
	return k.stats
}

// Handle implements Responder.
func (k *Kluis) Handle(in []byte) []byte {
	k.out = nil
	_, _ = k.dec.Write(in)
	for i := 0; i < 1000; i++ {
		f, ok := k.dec.Next()
		if !ok {
			break
		}
		k.frame(f)
	}
	k.snapshot()
	return k.out
}

func (k *Kluis) reply(addr byte, m kluisproto.Message) {
	b, err := kluisproto.EncodeMessage(addr, m)
	if err == nil {
		k.out = append(k.out, b...)
	}
}

func (k *Kluis) nak(addr, cmd byte, code kluisproto.ErrorCode, arg byte) {
	k.reply(addr, &kluisproto.Nak{Cmd: cmd, Code: code, Arg: arg})
}

// sync notices a reboot of the device's board (a new boot id): remembered
// ids are gone and the watchdog is back at its default.
func (k *Kluis) sync(b int) *kluisBoard {
	kb := k.boards[b]
	q, _ := k.dev.Queue(b)
	if q.BootID != kb.bootID {
		kb.bootID = q.BootID
		kb.ids.Clear()
		kb.wdTimout = 30 * time.Second
	}
	return kb
}

// feed restarts board b's watchdog.
func (k *Kluis) feed(b int, kb *kluisBoard) {
	if kb.wdStop != nil {
		kb.wdStop()
		kb.wdStop = nil
	}
	if kb.wdTimout <= 0 {
		return
	}
	kb.wdGen++
	gen := kb.wdGen
	kb.wdStop = k.dev.Clock().AfterFunc(kb.wdTimout, func() {
		k.mu.Lock()
		live := kb.wdGen == gen
		k.mu.Unlock()
		if live {
			_ = k.dev.RelockAll(b, true)
		}
	})
}

// Close stops the watchdog timers.
func (k *Kluis) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, kb := range k.boards {
		kb.wdGen++
		if kb.wdStop != nil {
			kb.wdStop()
		}
	}
}

func waitArg(err error) byte {
	var be *BusyError
	if errors.As(err, &be) && be.Wait > 0 {
		n := (be.Wait + 99*time.Millisecond) / (100 * time.Millisecond)
		return byte(min(n, 255))
	}
	return 0
}

func (k *Kluis) frame(f kluisproto.Frame) {
	if int(f.Addr) >= k.dev.NumBoards() || f.IsReply() {
		k.ignored++
		return
	}
	b := int(f.Addr)
	if k.dev.MaybeReboot(b) {
		return // restarting: this frame is lost
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	kb := k.sync(b)
	k.feed(b, kb)
	auto := k.dev.Kind() == Automaton
	if !auto && (f.Cmd == kluisproto.CmdPresent || f.Cmd == kluisproto.CmdHatch) {
		// not a command of a board without a mechanism: UNKNOWN_COMMAND
		// comes before the length check (firmware-protocol.md 4)
		k.nak(f.Addr, f.Cmd, kluisproto.CodeUnknownCmd, 0)
		return
	}
	req, err := kluisproto.ParseRequest(f)
	if err != nil {
		code := kluisproto.CodeBadLength
		var c kluisproto.ErrorCode
		if errors.As(err, &c) {
			code = c
		}
		k.nak(f.Addr, f.Cmd, code, 0)
		return
	}
	switch m := req.(type) {
	case *kluisproto.InfoRequest:
		caps := kluisproto.CapDoorSensor | kluisproto.CapItemSensor
		if !k.dev.Options().NoBootCheck {
			caps |= kluisproto.CapBootCheck
		}
		if auto {
			caps |= kluisproto.CapMechanism
		}
		k.reply(f.Addr, &kluisproto.InfoReply{Protocol: kluisproto.ProtocolVersion, FwMajor: firmwareVersion[0],
			FwMinor: firmwareVersion[1], FwPatch: firmwareVersion[2], Channels: uint8(k.dev.NumChannels()),
			Caps: caps, Slots: uint8(k.dev.Options().Slots), BootID: kb.bootID})
	case *kluisproto.StatusRequest:
		rs, _ := k.dev.Readings(b)
		r := &kluisproto.StatusReply{BootID: kb.bootID, Channels: uint8(len(rs))}
		for c, x := range rs {
			r.Locked = r.Locked.Set(c, x.Locked)
			r.DoorOpen = r.DoorOpen.Set(c, x.DoorOpen)
			r.ItemPresent = r.ItemPresent.Set(c, x.ItemPresent)
		}
		k.reply(f.Addr, r)
	case *kluisproto.UnlockRequest:
		k.unlock(f, b, kb, m, auto)
	case *kluisproto.EventsRequest:
		q, _ := k.dev.Queue(b)
		r := &kluisproto.EventsReply{BootID: kb.bootID, Pending: uint8(min(len(q.Events), 255))}
		for _, e := range q.Events[:min(len(q.Events), kluisproto.MaxEventsPerReply)] {
			r.Events = append(r.Events, toWireEvent(e))
		}
		if k.dev.ShowOverflow(b) {
			r.Flags |= kluisproto.EvFlagOverflow
		}
		k.reply(f.Addr, r)
	case *kluisproto.AckRequest:
		if m.BootID != kb.bootID {
			k.nak(f.Addr, f.Cmd, kluisproto.CodeBootMismatch, 0)
			return
		}
		_ = k.dev.Ack(b, m.Seq)
		q, _ := k.dev.Queue(b)
		k.reply(f.Addr, &kluisproto.AckReply{BootID: kb.bootID, Pending: uint8(min(len(q.Events), 255))})
	case *kluisproto.WatchdogRequest:
		kb.wdTimout = time.Duration(m.TimeoutS) * time.Second
		k.feed(b, kb)
		k.reply(f.Addr, &kluisproto.WatchdogReply{BootID: kb.bootID, TimeoutS: m.TimeoutS})
	case *kluisproto.RelockAllRequest:
		_ = k.dev.RelockAll(b, false)
		k.reply(f.Addr, &kluisproto.RelockAllReply{})
	case *kluisproto.PresentRequest:
		if !auto {
			k.nak(f.Addr, f.Cmd, kluisproto.CodeUnknownCmd, 0)
			return
		}
		k.present(f, b, kb, m)
	case *kluisproto.HatchRequest:
		if !auto {
			k.nak(f.Addr, f.Cmd, kluisproto.CodeUnknownCmd, 0)
			return
		}
		h, _ := k.dev.Hatch(b)
		r := &kluisproto.HatchReply{Open: h.Open, Locked: h.Locked, Busy: h.Busy, Fault: h.Fault, ItemAtHatch: h.ItemAtHatch, Slot: kluisproto.SlotNone}
		if h.Slot >= 0 {
			r.Slot = uint8(h.Slot)
		}
		if h.Fault {
			r.FaultCode = kluisproto.FaultJam
		}
		k.reply(f.Addr, r)
	default:
		k.nak(f.Addr, f.Cmd, kluisproto.CodeUnknownCmd, 0)
	}
}

// staleBoot applies the boot check of UNLOCK and PRESENT
// (firmware-protocol.md 4.3.1) and answers the NAK it calls for: BAD_LENGTH
// from firmware without it, STALE_BOOT for a boot id that is not this
// boot's. It reports whether the request was refused.
func (k *Kluis) staleBoot(f kluisproto.Frame, kb *kluisBoard, boot uint32) bool {
	if boot == 0 {
		return false
	}
	if k.dev.Options().NoBootCheck {
		k.nak(f.Addr, f.Cmd, kluisproto.CodeBadLength, 0)
		return true
	}
	if boot != kb.bootID {
		k.nak(f.Addr, f.Cmd, kluisproto.CodeStaleBoot, 0)
		return true
	}
	return false
}

func (k *Kluis) unlock(f kluisproto.Frame, b int, kb *kluisBoard, m *kluisproto.UnlockRequest, auto bool) {
	if k.staleBoot(f, kb, m.BootID) {
		return
	}
	if prev, err := kb.ids.Lookup(kluisproto.CmdUnlock, m.ID); err != nil {
		k.nak(f.Addr, f.Cmd, kluisproto.CodeBadArgument, 0)
		return
	} else if prev != nil {
		k.reply(f.Addr, prev)
		return
	}
	if int(m.Channel) >= k.dev.NumChannels() {
		k.nak(f.Addr, f.Cmd, kluisproto.CodeOutOfRange, 0)
		return
	}
	if err := m.Check(); err != nil {
		k.nak(f.Addr, f.Cmd, kluisproto.CodeBadArgument, 0)
		return
	}
	if auto && m.Channel == 0 {
		h, _ := k.dev.Hatch(b)
		if h.Fault {
			k.nak(f.Addr, f.Cmd, kluisproto.CodeFault, kluisproto.FaultJam)
			return
		}
		if h.Busy {
			k.nak(f.Addr, f.Cmd, kluisproto.CodeBusy, 0)
			return
		}
	}
	err := k.dev.Pulse(PulseRequest{Board: b, Channel: int(m.Channel), Duration: time.Duration(m.DurationMS) * time.Millisecond, CommandID: m.ID, Via: ProtoKluis})
	if err != nil {
		if errors.Is(err, hardware.ErrBusy) {
			k.nak(f.Addr, f.Cmd, kluisproto.CodeBusy, waitArg(err))
		} else {
			k.nak(f.Addr, f.Cmd, kluisproto.CodeBadArgument, 0)
		}
		return
	}
	r := &kluisproto.UnlockReply{Channel: m.Channel, DurationMS: m.DurationMS, ID: m.ID}
	kb.ids.Remember(m.ID, r)
	if k.dev.rebootAfterCommand(b) {
		k.sync(b) // the restart forgets the ids; the reply never goes out
		return
	}
	k.reply(f.Addr, r)
}

func (k *Kluis) present(f kluisproto.Frame, b int, kb *kluisBoard, m *kluisproto.PresentRequest) {
	if k.staleBoot(f, kb, m.BootID) {
		return
	}
	if prev, err := kb.ids.Lookup(kluisproto.CmdPresent, m.ID); err != nil {
		k.nak(f.Addr, f.Cmd, kluisproto.CodeBadArgument, 0)
		return
	} else if prev != nil {
		k.reply(f.Addr, prev)
		return
	}
	if int(m.Slot) >= k.dev.Options().Slots {
		k.nak(f.Addr, f.Cmd, kluisproto.CodeOutOfRange, 0)
		return
	}
	if m.ID == 0 {
		k.nak(f.Addr, f.Cmd, kluisproto.CodeBadArgument, 0)
		return
	}
	err := k.dev.Present(b, int(m.Slot), m.ID, ProtoKluis)
	switch {
	case errors.Is(err, hardware.ErrFault):
		k.nak(f.Addr, f.Cmd, kluisproto.CodeFault, kluisproto.FaultJam)
		return
	case errors.Is(err, hardware.ErrBusy):
		k.nak(f.Addr, f.Cmd, kluisproto.CodeBusy, 0)
		return
	case err != nil:
		k.nak(f.Addr, f.Cmd, kluisproto.CodeBadArgument, 0)
		return
	}
	r := &kluisproto.PresentReply{Slot: m.Slot, ID: m.ID}
	kb.ids.Remember(m.ID, r)
	if k.dev.rebootAfterCommand(b) {
		k.sync(b)
		return
	}
	k.reply(f.Addr, r)
}

// toWireEvent maps a queued event to the protocol's event.
func toWireEvent(e QueuedEvent) kluisproto.Event {
	w := kluisproto.Event{Seq: e.Seq, Channel: kluisproto.ChannelNone}
	if e.Channel >= 0 {
		w.Channel = uint8(e.Channel)
	}
	switch e.Kind {
	case hardware.DoorOpened:
		w.Kind = kluisproto.EvDoorOpened
	case hardware.DoorClosed:
		w.Kind = kluisproto.EvDoorClosed
	case hardware.ItemPlaced:
		w.Kind = kluisproto.EvItemPlaced
	case hardware.ItemRemoved:
		w.Kind = kluisproto.EvItemRemoved
	case hardware.Unlocked:
		w.Kind = kluisproto.EvUnlocked
	case hardware.SlotPresented:
		w.Kind, w.Channel, w.Arg = kluisproto.EvSlotPresented, kluisproto.ChannelNone, uint8(e.Slot)
	case hardware.HatchOpened:
		w.Kind, w.Channel = kluisproto.EvHatchOpened, 0
	case hardware.HatchClosed:
		w.Kind, w.Channel = kluisproto.EvHatchClosed, 0
	case hardware.MechanismFault:
		w.Kind, w.Channel, w.Arg = kluisproto.EvMechanismFault, kluisproto.ChannelNone, kluisproto.FaultJam
	case WatchdogRelock:
		w.Kind, w.Channel = kluisproto.EvWatchdog, kluisproto.ChannelNone
	default:
		w.Kind = 0
	}
	return w
}
