// Package kluisproto is the codec of the Kluis lock-board protocol, version
// 1 (firmware-protocol.md at the repository root), for both ends of the
// line: the master (hardware/kluisbus) and a board (the simulator, test
// emulators).
//
// # API (stable)
//
// Framing:
//
//	Frame{Addr, Cmd, Payload}          one frame without SOF, LEN and CRC
//	Frame.Encode() / Frame.Append(dst) the bytes on the wire (SOF ... CRC)
//	Decode(b) (Frame, n, error)        one frame at the start of b: ErrShort,
//	                                   ErrNoStart, ErrOversize, ErrBadCRC
//	CRC16(p)                           CRC-16/MODBUS, check value 0x4B37
//	Decoder: Write(bytes), Next() (Frame, ok), Reset(), Stats(), OnError
//	                                   streaming, resynchronising, counting
//	                                   BadCRC, Oversize, Truncated, Garbage
//	Reader: NewReader(io.Reader).ReadFrame(), Reset()
//	                                   a Decoder over a serial port
//
// Messages: every request and reply is a struct implementing Message
// (Command() byte, MarshalBinary, UnmarshalBinary of the payload):
//
//	InfoRequest      InfoReply{Protocol, FwMajor, FwMinor, FwPatch, Channels, Caps, Slots, BootID}
//	StatusRequest    StatusReply{BootID, Channels, Locked, DoorOpen, ItemPresent Bitmap}
//	UnlockRequest{Channel, DurationMS, ID, BootID} UnlockReply{Channel, DurationMS, ID, Repeat}
//	EventsRequest    EventsReply{BootID, Pending, Flags, Events []Event{Seq, Kind, Channel, Arg}}
//	AckRequest{BootID, Seq}                  AckReply{BootID, Pending}
//	WatchdogRequest{TimeoutS}                WatchdogReply{BootID, TimeoutS}
//	RelockAllRequest RelockAllReply
//	PresentRequest{Slot, ID, BootID}           PresentReply{Slot, ID, Repeat}
//	HatchRequest     HatchReply{Open, Locked, Busy, Fault, ItemAtHatch, Slot, FaultCode}
//	Nak{Cmd, Code ErrorCode, Arg}            (also an error; errors.Is(nak, CodeBusy))
//
//	NewFrame(addr, msg) / EncodeMessage(addr, msg)   message -> frame / bytes
//	ParseRequest(frame) (Message, error)   board side; the error is an ErrorCode to NAK with
//	ParseReply(frame) (Message, error)     master side; *Nak is a reply like the others
//
// Board-side helpers that implement the specification's memory rules:
// IDCache (the 32 most recent accepted command ids and their replies, for
// REPEAT answers) and EventQueue (sequence numbers from 1, Reply, Ack,
// overflow flag). UnlockRequest.Check applies the duration and id rules.
//
// A board's loop, in short:
//
//	f, err := reader.ReadFrame()           // on a 20 ms read timeout: reader.Reset()
//	if f.Addr != myAddr || f.IsReply() { continue }
//	req, err := kluisproto.ParseRequest(f) // err.(kluisproto.ErrorCode) -> Nak{Cmd: f.Cmd, Code: code}
//	... build the reply, kluisproto.EncodeMessage(myAddr, reply), write it.
//
// A frame with a bad CRC never reaches the caller; a board that answers NAK
// BAD_CRC (section 5 of the specification) sets Decoder.OnBadCRC, which
// sees the damaged frame's bytes (check raw[1] is its address and raw[2] a
// request command before answering).
//
// Every worked example of firmware-protocol.md is checked byte for byte by
// this package's tests, which read them from the document.
package kluisproto
