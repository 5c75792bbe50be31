package kluisproto

import (
	"encoding"
	"encoding/binary"
	"fmt"
)

// ProtocolVersion is the version of firmware-protocol.md this package speaks.
const ProtocolVersion = 1

// Command bytes of requests. A reply carries the request's command with
// ReplyBit set; a NAK carries CmdNak.
const (
	CmdInfo      byte = 0x01
	CmdStatus    byte = 0x02
	CmdUnlock    byte = 0x03
	CmdEvents    byte = 0x04
	CmdAck       byte = 0x05
	CmdWatchdog  byte = 0x06
	CmdRelockAll byte = 0x07
	CmdPresent   byte = 0x08
	CmdHatch     byte = 0x09
	CmdNak       byte = 0xFF
)

// CmdName names a command byte (request or reply) for logs.
func CmdName(c byte) string {
	if c == CmdNak {
		return "NAK"
	}
	name := map[byte]string{CmdInfo: "INFO", CmdStatus: "STATUS", CmdUnlock: "UNLOCK", CmdEvents: "EVENTS",
		CmdAck: "ACK", CmdWatchdog: "WATCHDOG", CmdRelockAll: "RELOCK_ALL", CmdPresent: "PRESENT", CmdHatch: "HATCH"}[c&^ReplyBit]
	if name == "" {
		name = fmt.Sprintf("0x%02X", c&^ReplyBit)
	}
	if c&ReplyBit != 0 {
		return name + "_REPLY"
	}
	return name
}

// ErrorCode is the code of a NAK. It is an error, so a board-side parser
// can return it and the board answers NAK with it.
type ErrorCode byte

// NAK codes (firmware-protocol.md, "NAK and error codes").
const (
	CodeBadCRC       ErrorCode = 0x01 // frame for this board with a bad CRC
	CodeUnknownCmd   ErrorCode = 0x02 // command not implemented by this board
	CodeBadLength    ErrorCode = 0x03 // LEN wrong for the command
	CodeOutOfRange   ErrorCode = 0x04 // channel or slot beyond what the board has
	CodeBadArgument  ErrorCode = 0x05 // duration out of range, command id 0, id reused for another command
	CodeBusy         ErrorCode = 0x06 // cooling down, too many locks energised, mechanism moving; Arg = retry after, 100 ms units
	CodeFault        ErrorCode = 0x07 // mechanism fault; Arg = fault code
	CodeBootMismatch ErrorCode = 0x08 // ACK for another boot id
	CodeStaleBoot    ErrorCode = 0x09 // UNLOCK or PRESENT for another boot id (CapBootCheck): nothing done
)

var codeNames = map[ErrorCode]string{
	CodeBadCRC: "BAD_CRC", CodeUnknownCmd: "UNKNOWN_COMMAND", CodeBadLength: "BAD_LENGTH",
	CodeOutOfRange: "OUT_OF_RANGE", CodeBadArgument: "BAD_ARGUMENT", CodeBusy: "BUSY",
	CodeFault: "FAULT", CodeBootMismatch: "BOOT_MISMATCH", CodeStaleBoot: "STALE_BOOT",
}

func (c ErrorCode) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("CODE_0x%02X", byte(c))
}

func (c ErrorCode) Error() string { return "kluisproto: " + c.String() }

// Message is a typed request or reply: its command byte and its payload
// encoding. Marshal with MarshalBinary (the payload only; NewFrame builds
// the frame), unmarshal with UnmarshalBinary, which returns CodeBadLength
// for a payload of the wrong size and CodeBadArgument for a field that
// cannot be right.
type Message interface {
	Command() byte
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

// NewFrame builds the frame carrying m to or from board addr.
func NewFrame(addr byte, m Message) (Frame, error) {
	p, err := m.MarshalBinary()
	if err != nil {
		return Frame{}, err
	}
	if addr > MaxAddr {
		return Frame{}, fmt.Errorf("%w: %d", ErrAddress, addr)
	}
	return Frame{Addr: addr, Cmd: m.Command(), Payload: p}, nil
}

// EncodeMessage returns the bytes on the wire of m to or from board addr.
func EncodeMessage(addr byte, m Message) ([]byte, error) {
	f, err := NewFrame(addr, m)
	if err != nil {
		return nil, err
	}
	return f.Encode()
}

// ParseRequest decodes a request frame (board side). The error is an
// ErrorCode to answer with NAK: CodeUnknownCmd, CodeBadLength or
// CodeBadArgument.
func ParseRequest(f Frame) (Message, error) {
	var m Message
	switch f.Cmd {
	case CmdInfo:
		m = &InfoRequest{}
	case CmdStatus:
		m = &StatusRequest{}
	case CmdUnlock:
		m = &UnlockRequest{}
	case CmdEvents:
		m = &EventsRequest{}
	case CmdAck:
		m = &AckRequest{}
	case CmdWatchdog:
		m = &WatchdogRequest{}
	case CmdRelockAll:
		m = &RelockAllRequest{}
	case CmdPresent:
		m = &PresentRequest{}
	case CmdHatch:
		m = &HatchRequest{}
	default:
		return nil, CodeUnknownCmd
	}
	if err := m.UnmarshalBinary(f.Payload); err != nil {
		return nil, err
	}
	return m, nil
}

// ParseReply decodes a reply frame (master side): one of the *...Reply
// types or *Nak. The error is an ErrorCode (CodeUnknownCmd for a command
// byte that is not a reply, CodeBadLength, CodeBadArgument).
func ParseReply(f Frame) (Message, error) {
	var m Message
	switch f.Cmd {
	case CmdInfo | ReplyBit:
		m = &InfoReply{}
	case CmdStatus | ReplyBit:
		m = &StatusReply{}
	case CmdUnlock | ReplyBit:
		m = &UnlockReply{}
	case CmdEvents | ReplyBit:
		m = &EventsReply{}
	case CmdAck | ReplyBit:
		m = &AckReply{}
	case CmdWatchdog | ReplyBit:
		m = &WatchdogReply{}
	case CmdRelockAll | ReplyBit:
		m = &RelockAllReply{}
	case CmdPresent | ReplyBit:
		m = &PresentReply{}
	case CmdHatch | ReplyBit:
		m = &HatchReply{}
	case CmdNak:
		m = &Nak{}
	default:
		return nil, CodeUnknownCmd
	}
	if err := m.UnmarshalBinary(f.Payload); err != nil {
		return nil, err
	}
	return m, nil
}

var le = binary.LittleEndian

func wantLen(p []byte, n int) error {
	if len(p) != n {
		return CodeBadLength
	}
	return nil
}

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// ---- INFO 0x01 ----

// InfoRequest asks a board to describe itself. Payload: none.
type InfoRequest struct{}

func (InfoRequest) Command() byte                   { return CmdInfo }
func (InfoRequest) MarshalBinary() ([]byte, error)  { return []byte{}, nil }
func (*InfoRequest) UnmarshalBinary(p []byte) error { return wantLen(p, 0) }

// Capability bits of InfoReply.Caps.
const (
	CapDoorSensor byte = 1 << 0 // every channel has a door sensor
	CapItemSensor byte = 1 << 1 // every channel has an item-present sensor
	CapMechanism  byte = 1 << 2 // automaton: carousel + hatch (PRESENT, HATCH)
	// CapBootCheck: UNLOCK and PRESENT may carry the boot id they are
	// meant for; a board whose boot id differs answers NAK STALE_BOOT and
	// does nothing (firmware-protocol.md 4.3.1).
	CapBootCheck byte = 1 << 3
)

// InfoReply describes a board. Payload (11 bytes): protocol, firmware
// major, minor, patch, channels, caps, slots, boot id (u32 LE).
type InfoReply struct {
	Protocol                  uint8
	FwMajor, FwMinor, FwPatch uint8
	Channels                  uint8 // 1-48
	Caps                      uint8 // Cap* bits
	Slots                     uint8 // automaton carousel slots, 0 for plain lock boards
	BootID                    uint32
}

func (InfoReply) Command() byte { return CmdInfo | ReplyBit }
func (m InfoReply) MarshalBinary() ([]byte, error) {
	p := []byte{m.Protocol, m.FwMajor, m.FwMinor, m.FwPatch, m.Channels, m.Caps, m.Slots}
	return le.AppendUint32(p, m.BootID), nil
}
func (m *InfoReply) UnmarshalBinary(p []byte) error {
	if err := wantLen(p, 11); err != nil {
		return err
	}
	*m = InfoReply{p[0], p[1], p[2], p[3], p[4], p[5], p[6], le.Uint32(p[7:])}
	if m.Channels > MaxChannels {
		return CodeBadArgument
	}
	return nil
}

// Firmware formats the firmware version as "major.minor.patch".
func (m InfoReply) Firmware() string {
	return fmt.Sprintf("%d.%d.%d", m.FwMajor, m.FwMinor, m.FwPatch)
}

// ---- STATUS 0x02 ----

// StatusRequest asks for the state of every channel. Payload: none.
type StatusRequest struct{}

func (StatusRequest) Command() byte                   { return CmdStatus }
func (StatusRequest) MarshalBinary() ([]byte, error)  { return []byte{}, nil }
func (*StatusRequest) UnmarshalBinary(p []byte) error { return wantLen(p, 0) }

// Bitmap holds one bit per channel: channel n is bit n (byte n/8, bit n%8
// on the wire, 6 bytes).
type Bitmap uint64

// Get reports channel ch's bit.
func (b Bitmap) Get(ch int) bool { return ch >= 0 && ch < 64 && b&(1<<uint(ch)) != 0 }

// Set returns b with channel ch's bit set to v.
func (b Bitmap) Set(ch int, v bool) Bitmap {
	if ch < 0 || ch >= 64 {
		return b
	}
	if v {
		return b | 1<<uint(ch)
	}
	return b &^ (1 << uint(ch))
}

func (b Bitmap) append(p []byte) []byte {
	for i := 0; i < 6; i++ {
		p = append(p, byte(b>>(8*i)))
	}
	return p
}

func bitmapFrom(p []byte) Bitmap {
	var b Bitmap
	for i := 0; i < 6; i++ {
		b |= Bitmap(p[i]) << (8 * i)
	}
	return b
}

// StatusReply is every channel's state. Payload (23 bytes): boot id (u32
// LE), channels, then three 6-byte bitmaps: locked, door open, item
// present. Bits at or above Channels are 0 on the wire and ignored.
type StatusReply struct {
	BootID      uint32
	Channels    uint8
	Locked      Bitmap // 1 = locked (not energised)
	DoorOpen    Bitmap // 1 = door open (door sensor)
	ItemPresent Bitmap // 1 = item present (item sensor)
}

func (StatusReply) Command() byte { return CmdStatus | ReplyBit }
func (m StatusReply) MarshalBinary() ([]byte, error) {
	if m.Channels > MaxChannels {
		return nil, CodeBadArgument
	}
	mask := Bitmap(1)<<m.Channels - 1
	p := le.AppendUint32(make([]byte, 0, 23), m.BootID)
	p = append(p, m.Channels)
	p = (m.Locked & mask).append(p)
	p = (m.DoorOpen & mask).append(p)
	return (m.ItemPresent & mask).append(p), nil
}
func (m *StatusReply) UnmarshalBinary(p []byte) error {
	if err := wantLen(p, 23); err != nil {
		return err
	}
	if p[4] > MaxChannels {
		return CodeBadArgument
	}
	mask := Bitmap(1)<<p[4] - 1
	*m = StatusReply{BootID: le.Uint32(p), Channels: p[4],
		Locked: bitmapFrom(p[5:]) & mask, DoorOpen: bitmapFrom(p[11:]) & mask, ItemPresent: bitmapFrom(p[17:]) & mask}
	return nil
}

// ---- UNLOCK 0x03 ----

// Pulse duration bounds of UNLOCK, in milliseconds.
const (
	MinPulseMS = 50
	MaxPulseMS = 10000
)

// UnlockRequest energises one lock for DurationMS, once per ID. Payload (7
// bytes): channel, duration ms (u16 LE), command id (u32 LE); with a
// non-zero BootID (11 bytes, boards with CapBootCheck) the boot id the
// command is meant for follows (u32 LE): a board whose boot id differs
// answers NAK STALE_BOOT and does nothing.
type UnlockRequest struct {
	Channel    uint8
	DurationMS uint16
	ID         uint32
	BootID     uint32 // 0: not carried (the 7-byte form)
}

func (UnlockRequest) Command() byte { return CmdUnlock }
func (m UnlockRequest) MarshalBinary() ([]byte, error) {
	p := le.AppendUint16([]byte{m.Channel}, m.DurationMS)
	p = le.AppendUint32(p, m.ID)
	if m.BootID != 0 {
		p = le.AppendUint32(p, m.BootID)
	}
	return p, nil
}
func (m *UnlockRequest) UnmarshalBinary(p []byte) error {
	if len(p) != 7 && len(p) != 11 {
		return CodeBadLength
	}
	*m = UnlockRequest{Channel: p[0], DurationMS: le.Uint16(p[1:]), ID: le.Uint32(p[3:])}
	if len(p) == 11 {
		m.BootID = le.Uint32(p[7:])
		if m.BootID == 0 {
			return CodeBadArgument // boot ids are never 0
		}
	}
	return nil
}

// Check applies the board's argument rules other than the channel range:
// id non-zero, duration within MinPulseMS-MaxPulseMS. It returns
// CodeBadArgument or nil.
func (m UnlockRequest) Check() error {
	if m.ID == 0 || m.DurationMS < MinPulseMS || m.DurationMS > MaxPulseMS {
		return CodeBadArgument
	}
	return nil
}

// UnlockReply accepts an UNLOCK. Payload (8 bytes): channel, duration ms
// (u16 LE), command id (u32 LE), repeat (0: pulsed now; 1: this id was
// already carried out, not pulsed again).
type UnlockReply struct {
	Channel    uint8
	DurationMS uint16
	ID         uint32
	Repeat     bool
}

func (UnlockReply) Command() byte { return CmdUnlock | ReplyBit }
func (m UnlockReply) MarshalBinary() ([]byte, error) {
	p := le.AppendUint16([]byte{m.Channel}, m.DurationMS)
	return append(le.AppendUint32(p, m.ID), b2u(m.Repeat)), nil
}
func (m *UnlockReply) UnmarshalBinary(p []byte) error {
	if err := wantLen(p, 8); err != nil {
		return err
	}
	*m = UnlockReply{p[0], le.Uint16(p[1:]), le.Uint32(p[3:]), p[7] != 0}
	return nil
}

// ---- EVENTS 0x04 ----

// EventsRequest reads the oldest unacknowledged events without removing
// them. Payload: none.
type EventsRequest struct{}

func (EventsRequest) Command() byte                   { return CmdEvents }
func (EventsRequest) MarshalBinary() ([]byte, error)  { return []byte{}, nil }
func (*EventsRequest) UnmarshalBinary(p []byte) error { return wantLen(p, 0) }

// EventKind is the kind byte of an Event.
type EventKind uint8

// Event kinds.
const (
	EvDoorOpened     EventKind = 0x01
	EvDoorClosed     EventKind = 0x02
	EvItemPlaced     EventKind = 0x03
	EvItemRemoved    EventKind = 0x04
	EvUnlocked       EventKind = 0x05 // a pulse began
	EvSlotPresented  EventKind = 0x06 // Arg = slot now at the hatch
	EvHatchOpened    EventKind = 0x07
	EvHatchClosed    EventKind = 0x08
	EvMechanismFault EventKind = 0x09 // Arg = fault code
	EvWatchdog       EventKind = 0x0A // the watchdog relocked everything
)

var evNames = map[EventKind]string{
	EvDoorOpened: "DOOR_OPENED", EvDoorClosed: "DOOR_CLOSED", EvItemPlaced: "ITEM_PLACED",
	EvItemRemoved: "ITEM_REMOVED", EvUnlocked: "UNLOCKED", EvSlotPresented: "SLOT_PRESENTED",
	EvHatchOpened: "HATCH_OPENED", EvHatchClosed: "HATCH_CLOSED", EvMechanismFault: "MECHANISM_FAULT",
	EvWatchdog: "WATCHDOG",
}

func (k EventKind) String() string {
	if s, ok := evNames[k]; ok {
		return s
	}
	return fmt.Sprintf("EVENT_0x%02X", byte(k))
}

// ChannelNone is the channel byte of board-wide events.
const ChannelNone byte = 0xFF

// SlotNone is the slot byte of HatchReply when no slot is at the hatch.
const SlotNone byte = 0xFF

// Mechanism fault codes (Arg of EvMechanismFault, NAK FAULT, HatchReply).
const (
	FaultNone     byte = 0x00
	FaultJam      byte = 0x01 // the carousel could not move
	FaultPosition byte = 0x02 // position lost; needs homing
	FaultMotor    byte = 0x03 // motor overcurrent or driver fault
	FaultHatch    byte = 0x04 // hatch obstructed or sensor implausible
	FaultOther    byte = 0xFF
)

// Event is one queued event: seq (u32 LE), kind, channel, arg (7 bytes).
type Event struct {
	Seq     uint32
	Kind    EventKind
	Channel uint8 // ChannelNone for board-wide events
	Arg     uint8
}

// EventSize is the size of one Event on the wire.
const EventSize = 7

// MaxEventsPerReply bounds EventsReply.Events.
const MaxEventsPerReply = 8

// Flags of EventsReply.
const (
	EvFlagOverflow byte = 1 << 0 // the queue was full and events were lost since the last EVENTS reply
)

// EventsReply carries up to 8 of the oldest unacknowledged events, oldest
// first. Payload (7 + 7n bytes): boot id (u32 LE), pending (events queued
// including these, saturating at 255), flags, n, then n events.
type EventsReply struct {
	BootID  uint32
	Pending uint8
	Flags   uint8
	Events  []Event
}

func (EventsReply) Command() byte { return CmdEvents | ReplyBit }
func (m EventsReply) MarshalBinary() ([]byte, error) {
	if len(m.Events) > MaxEventsPerReply {
		return nil, CodeBadArgument
	}
	p := le.AppendUint32(make([]byte, 0, 7+EventSize*len(m.Events)), m.BootID)
	p = append(p, m.Pending, m.Flags, byte(len(m.Events)))
	for _, e := range m.Events {
		p = le.AppendUint32(p, e.Seq)
		p = append(p, byte(e.Kind), e.Channel, e.Arg)
	}
	return p, nil
}
func (m *EventsReply) UnmarshalBinary(p []byte) error {
	if len(p) < 7 {
		return CodeBadLength
	}
	n := int(p[6])
	if n > MaxEventsPerReply || len(p) != 7+EventSize*n {
		return CodeBadLength
	}
	*m = EventsReply{BootID: le.Uint32(p), Pending: p[4], Flags: p[5]}
	if n > 0 {
		m.Events = make([]Event, n)
	}
	for i := range m.Events {
		q := p[7+EventSize*i:]
		m.Events[i] = Event{Seq: le.Uint32(q), Kind: EventKind(q[4]), Channel: q[5], Arg: q[6]}
	}
	return nil
}

// ---- ACK 0x05 ----

// AckRequest removes every queued event with a sequence number up to and
// including Seq, if BootID is the board's current boot id. Payload (8
// bytes): boot id (u32 LE), seq (u32 LE).
type AckRequest struct {
	BootID uint32
	Seq    uint32
}

func (AckRequest) Command() byte { return CmdAck }
func (m AckRequest) MarshalBinary() ([]byte, error) {
	return le.AppendUint32(le.AppendUint32(nil, m.BootID), m.Seq), nil
}
func (m *AckRequest) UnmarshalBinary(p []byte) error {
	if err := wantLen(p, 8); err != nil {
		return err
	}
	*m = AckRequest{le.Uint32(p), le.Uint32(p[4:])}
	return nil
}

// AckReply confirms an ACK. Payload (5 bytes): boot id (u32 LE), pending.
type AckReply struct {
	BootID  uint32
	Pending uint8
}

func (AckReply) Command() byte { return CmdAck | ReplyBit }
func (m AckReply) MarshalBinary() ([]byte, error) {
	return append(le.AppendUint32(nil, m.BootID), m.Pending), nil
}
func (m *AckReply) UnmarshalBinary(p []byte) error {
	if err := wantLen(p, 5); err != nil {
		return err
	}
	*m = AckReply{le.Uint32(p), p[4]}
	return nil
}

// ---- WATCHDOG 0x06 ----

// WatchdogRequest sets the link watchdog: when no valid frame addressed to
// the board arrives for TimeoutS seconds, the board relocks everything. 0
// disables it. Payload (1 byte): timeout seconds.
type WatchdogRequest struct{ TimeoutS uint8 }

func (WatchdogRequest) Command() byte                    { return CmdWatchdog }
func (m WatchdogRequest) MarshalBinary() ([]byte, error) { return []byte{m.TimeoutS}, nil }
func (m *WatchdogRequest) UnmarshalBinary(p []byte) error {
	if err := wantLen(p, 1); err != nil {
		return err
	}
	m.TimeoutS = p[0]
	return nil
}

// WatchdogReply confirms the watchdog setting. Payload (5 bytes): boot id
// (u32 LE), timeout seconds.
type WatchdogReply struct {
	BootID   uint32
	TimeoutS uint8
}

func (WatchdogReply) Command() byte { return CmdWatchdog | ReplyBit }
func (m WatchdogReply) MarshalBinary() ([]byte, error) {
	return append(le.AppendUint32(nil, m.BootID), m.TimeoutS), nil
}
func (m *WatchdogReply) UnmarshalBinary(p []byte) error {
	if err := wantLen(p, 5); err != nil {
		return err
	}
	*m = WatchdogReply{le.Uint32(p), p[4]}
	return nil
}

// ---- RELOCK_ALL 0x07 ----

// RelockAllRequest de-energises every lock at once and stops the mechanism.
// Payload: none.
type RelockAllRequest struct{}

func (RelockAllRequest) Command() byte                   { return CmdRelockAll }
func (RelockAllRequest) MarshalBinary() ([]byte, error)  { return []byte{}, nil }
func (*RelockAllRequest) UnmarshalBinary(p []byte) error { return wantLen(p, 0) }

// RelockAllReply confirms RELOCK_ALL. Payload: none.
type RelockAllReply struct{}

func (RelockAllReply) Command() byte                   { return CmdRelockAll | ReplyBit }
func (RelockAllReply) MarshalBinary() ([]byte, error)  { return []byte{}, nil }
func (*RelockAllReply) UnmarshalBinary(p []byte) error { return wantLen(p, 0) }

// ---- PRESENT 0x08 ----

// PresentRequest starts bringing Slot to the hatch, once per ID. Payload (5
// bytes): slot, command id (u32 LE); with a non-zero BootID (9 bytes,
// boards with CapBootCheck) the boot id it is meant for follows, as for
// UnlockRequest.
type PresentRequest struct {
	Slot   uint8
	ID     uint32
	BootID uint32 // 0: not carried (the 5-byte form)
}

func (PresentRequest) Command() byte { return CmdPresent }
func (m PresentRequest) MarshalBinary() ([]byte, error) {
	p := le.AppendUint32([]byte{m.Slot}, m.ID)
	if m.BootID != 0 {
		p = le.AppendUint32(p, m.BootID)
	}
	return p, nil
}
func (m *PresentRequest) UnmarshalBinary(p []byte) error {
	if len(p) != 5 && len(p) != 9 {
		return CodeBadLength
	}
	*m = PresentRequest{Slot: p[0], ID: le.Uint32(p[1:])}
	if len(p) == 9 {
		m.BootID = le.Uint32(p[5:])
		if m.BootID == 0 {
			return CodeBadArgument
		}
	}
	return nil
}

// PresentReply accepts a PRESENT (the movement started or, with Repeat,
// had already been started for this id). Payload (6 bytes): slot, command
// id (u32 LE), repeat.
type PresentReply struct {
	Slot   uint8
	ID     uint32
	Repeat bool
}

func (PresentReply) Command() byte { return CmdPresent | ReplyBit }
func (m PresentReply) MarshalBinary() ([]byte, error) {
	return append(le.AppendUint32([]byte{m.Slot}, m.ID), b2u(m.Repeat)), nil
}
func (m *PresentReply) UnmarshalBinary(p []byte) error {
	if err := wantLen(p, 6); err != nil {
		return err
	}
	*m = PresentReply{p[0], le.Uint32(p[1:]), p[5] != 0}
	return nil
}

// ---- HATCH 0x09 ----

// HatchRequest reads an automaton's hatch and mechanism. Payload: none.
type HatchRequest struct{}

func (HatchRequest) Command() byte                   { return CmdHatch }
func (HatchRequest) MarshalBinary() ([]byte, error)  { return []byte{}, nil }
func (*HatchRequest) UnmarshalBinary(p []byte) error { return wantLen(p, 0) }

// Flag bits of HatchReply's first byte.
const (
	HatchOpen   byte = 1 << 0
	HatchLocked byte = 1 << 1
	HatchBusy   byte = 1 << 2
	HatchFault  byte = 1 << 3
	HatchItem   byte = 1 << 4
)

// HatchReply is the hatch and mechanism state. Payload (3 bytes): flags
// (open, locked, busy, fault, item at hatch), slot at the hatch (SlotNone
// when none), fault code.
type HatchReply struct {
	Open, Locked, Busy, Fault, ItemAtHatch bool
	Slot                                   uint8
	FaultCode                              uint8
}

func (HatchReply) Command() byte { return CmdHatch | ReplyBit }
func (m HatchReply) MarshalBinary() ([]byte, error) {
	f := b2u(m.Open) | b2u(m.Locked)<<1 | b2u(m.Busy)<<2 | b2u(m.Fault)<<3 | b2u(m.ItemAtHatch)<<4
	return []byte{f, m.Slot, m.FaultCode}, nil
}
func (m *HatchReply) UnmarshalBinary(p []byte) error {
	if err := wantLen(p, 3); err != nil {
		return err
	}
	f := p[0]
	*m = HatchReply{Open: f&HatchOpen != 0, Locked: f&HatchLocked != 0, Busy: f&HatchBusy != 0,
		Fault: f&HatchFault != 0, ItemAtHatch: f&HatchItem != 0, Slot: p[1], FaultCode: p[2]}
	return nil
}

// ---- NAK 0xFF ----

// Nak refuses a request. Payload (3 bytes): the request's command byte, the
// error code, an argument (BUSY: retry after, in 100 ms units, 0 unknown;
// FAULT: fault code; otherwise 0).
type Nak struct {
	Cmd  byte
	Code ErrorCode
	Arg  byte
}

func (Nak) Command() byte { return CmdNak }
func (m Nak) MarshalBinary() ([]byte, error) {
	return []byte{m.Cmd, byte(m.Code), m.Arg}, nil
}
func (m *Nak) UnmarshalBinary(p []byte) error {
	if err := wantLen(p, 3); err != nil {
		return err
	}
	*m = Nak{p[0], ErrorCode(p[1]), p[2]}
	return nil
}

// Error makes a received NAK usable as an error.
func (m Nak) Error() string {
	return fmt.Sprintf("kluisproto: NAK %s for %s (arg %d)", m.Code, CmdName(m.Cmd), m.Arg)
}

// Unwrap returns the code, so errors.Is(err, CodeBusy) works on a *Nak.
func (m Nak) Unwrap() error { return m.Code }
