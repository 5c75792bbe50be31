package kluisproto

import (
	"errors"
	"fmt"
)

// Frame layout constants (firmware-protocol.md, "Framing").
const (
	// SOF starts every frame.
	SOF byte = 0xA5
	// MaxPayload bounds the LEN byte; a longer LEN is a framing error.
	MaxPayload = 64
	// HeaderLen is SOF, ADDR, CMD and LEN.
	HeaderLen = 4
	// CRCLen is the two CRC bytes, low byte first.
	CRCLen = 2
	// MinFrame and MaxFrame bound a whole frame on the wire.
	MinFrame = HeaderLen + CRCLen
	MaxFrame = HeaderLen + MaxPayload + CRCLen
	// MaxAddr is the highest board address (32 boards, 0-31).
	MaxAddr = 31
	// MaxChannels is the most channels one board has (0-47 on the wire).
	MaxChannels = 48
	// ReplyBit is set in the CMD byte of every reply.
	ReplyBit byte = 0x80
)

// Framing errors. Decode and the Decoder report these; they wrap nothing so
// errors.Is works directly.
var (
	// ErrShort: the bytes end before the frame does (need more bytes).
	ErrShort = errors.New("kluisproto: incomplete frame")
	// ErrNoStart: the first byte is not SOF.
	ErrNoStart = errors.New("kluisproto: no start byte")
	// ErrOversize: LEN exceeds MaxPayload.
	ErrOversize = errors.New("kluisproto: length exceeds maximum")
	// ErrBadCRC: the CRC does not match.
	ErrBadCRC = errors.New("kluisproto: bad CRC")
	// ErrTruncated: a frame was cut off (the line went quiet mid-frame).
	ErrTruncated = errors.New("kluisproto: truncated frame")
	// ErrAddress: an address outside 0-31 was given to the encoder.
	ErrAddress = errors.New("kluisproto: address out of range")
)

// Frame is one frame without its SOF, LEN and CRC: the board address, the
// command byte (bit 7 set in replies) and the payload.
type Frame struct {
	Addr    byte
	Cmd     byte
	Payload []byte
}

// IsReply reports whether the frame is a reply (CMD bit 7 set).
func (f Frame) IsReply() bool { return f.Cmd&ReplyBit != 0 }

// String formats the frame for logs.
func (f Frame) String() string {
	return fmt.Sprintf("addr=%d cmd=%#02x len=%d payload=% X", f.Addr, f.Cmd, len(f.Payload), f.Payload)
}

// Append appends the encoded frame to dst. It fails if Addr > MaxAddr or the
// payload is longer than MaxPayload.
func (f Frame) Append(dst []byte) ([]byte, error) {
	if f.Addr > MaxAddr {
		return dst, fmt.Errorf("%w: %d", ErrAddress, f.Addr)
	}
	if len(f.Payload) > MaxPayload {
		return dst, fmt.Errorf("%w: %d bytes", ErrOversize, len(f.Payload))
	}
	start := len(dst)
	dst = append(dst, SOF, f.Addr, f.Cmd, byte(len(f.Payload)))
	dst = append(dst, f.Payload...)
	crc := CRC16(dst[start+1:])
	return append(dst, byte(crc), byte(crc>>8)), nil
}

// Encode returns the frame's bytes on the wire.
func (f Frame) Encode() ([]byte, error) {
	return f.Append(make([]byte, 0, MinFrame+len(f.Payload)))
}

// Decode decodes one frame at the start of b. It returns the frame and the
// number of bytes it used. Errors: ErrNoStart (b[0] is not SOF), ErrShort (b
// holds only part of a frame), ErrOversize, ErrBadCRC. On error n is 0. The
// returned payload aliases b. Decode never panics; an address above MaxAddr
// is returned as is (a board not on this bus, the caller decides).
func Decode(b []byte) (f Frame, n int, err error) {
	if len(b) == 0 {
		return Frame{}, 0, ErrShort
	}
	if b[0] != SOF {
		return Frame{}, 0, ErrNoStart
	}
	if len(b) < HeaderLen {
		return Frame{}, 0, ErrShort
	}
	l := int(b[3])
	if l > MaxPayload {
		return Frame{}, 0, ErrOversize
	}
	total := HeaderLen + l + CRCLen
	if len(b) < total {
		return Frame{}, 0, ErrShort
	}
	crc := CRC16(b[1 : HeaderLen+l])
	if byte(crc) != b[HeaderLen+l] || byte(crc>>8) != b[HeaderLen+l+1] {
		return Frame{}, 0, ErrBadCRC
	}
	return Frame{Addr: b[1], Cmd: b[2], Payload: b[HeaderLen : HeaderLen+l]}, total, nil
}
