package kerong

import (
	"errors"
	"fmt"
	"io"
)

// Frame bytes and commands of the KR-CU16 protocol.
const (
	STX = 0x02
	ETX = 0x03

	// CmdStatus asks one board for its lock and item inputs (host to board,
	// ADDR = board<<4).
	CmdStatus = 0x30
	// CmdUnlock pulses one lock (host to board, ADDR = board<<4 | lock).
	CmdUnlock = 0x31
	// CmdStatusReply is the board's answer to CmdStatus: four data bytes
	// L1-8, L9-16, IR1-8, IR9-16.
	CmdStatusReply = 0x35
	// CmdUnlockReply is the board's answer to CmdUnlock on boards that
	// answer with one status byte for the lock: 02 ADDR 31 STATUS 03 SUM.
	// (Other boards answer an unlock with a CmdStatusReply frame; the
	// driver accepts both.)
	CmdUnlockReply = 0x31
)

// Limits of the addressing scheme.
const (
	MaxBoards = 16
	Locks     = 16
)

// Direction says who sent a frame; the same command byte has different
// lengths in the two directions (0x31 carries no data to the board and one
// status byte back).
type Direction int

// The two directions on the line.
const (
	ToBoard Direction = iota
	FromBoard
)

// Frame is one decoded frame: 02 Addr Cmd Data... 03 SUM.
type Frame struct {
	Addr byte
	Cmd  byte
	Data []byte
}

// Board returns the board nibble of the address.
func (f Frame) Board() int { return int(f.Addr >> 4) }

// Lock returns the lock nibble of the address (0-15).
func (f Frame) Lock() int { return int(f.Addr & 0x0f) }

// Errors of the codec. Decode wraps them with details; callers test with
// errors.Is.
var (
	// ErrIncomplete: buf holds the start of a frame but not all of it yet.
	ErrIncomplete = errors.New("kerong: incomplete frame")
	// ErrGarbage: bytes before the next STX were skipped.
	ErrGarbage = errors.New("kerong: garbage before frame start")
	// ErrUnknownCommand: the command byte is not one this codec knows for
	// the direction, so the frame length is unknown.
	ErrUnknownCommand = errors.New("kerong: unknown command")
	// ErrFraming: the byte where ETX belongs is something else.
	ErrFraming = errors.New("kerong: missing ETX")
	// ErrChecksum: the SUM byte does not match.
	ErrChecksum = errors.New("kerong: checksum mismatch")
)

// dataLen returns the number of data bytes cmd carries in dir, or -1.
func dataLen(dir Direction, cmd byte) int {
	if dir == ToBoard {
		switch cmd {
		case CmdStatus, CmdUnlock:
			return 0
		}
		return -1
	}
	switch cmd {
	case CmdStatusReply:
		return 4
	case CmdUnlockReply:
		return 1
	}
	return -1
}

// Sum returns the low byte of the sum of b.
func Sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

// Encode returns the bytes of f: 02 Addr Cmd Data 03 SUM.
func Encode(f Frame) []byte {
	out := make([]byte, 0, 5+len(f.Data))
	out = append(out, STX, f.Addr, f.Cmd)
	out = append(out, f.Data...)
	out = append(out, ETX)
	return append(out, Sum(out))
}

// Addr builds the address byte for board and lock; it fails when either is
// out of range 0-15.
func Addr(board, lock int) (byte, error) {
	if board < 0 || board >= MaxBoards || lock < 0 || lock >= Locks {
		return 0, fmt.Errorf("kerong: board %d lock %d out of range 0-15", board, lock)
	}
	return byte(board<<4 | lock), nil
}

// UnlockFrame returns the frame that unlocks lock (0-15) on board (0-15).
func UnlockFrame(board, lock int) (Frame, error) {
	a, err := Addr(board, lock)
	if err != nil {
		return Frame{}, err
	}
	return Frame{Addr: a, Cmd: CmdUnlock}, nil
}

// StatusFrame returns the frame that asks board (0-15) for its status.
func StatusFrame(board int) (Frame, error) {
	a, err := Addr(board, 0)
	if err != nil {
		return Frame{}, err
	}
	return Frame{Addr: a, Cmd: CmdStatus}, nil
}

// Decode examines buf from its first byte. It returns a valid frame and the
// number of bytes it used, or an error and the number of bytes to drop
// before trying again:
//
//   - ErrGarbage: buf does not start with STX; n is the count of bytes before
//     the next STX (all of buf when there is none);
//   - ErrIncomplete: the frame is not complete yet; n is 0, read more;
//   - ErrUnknownCommand, ErrFraming, ErrChecksum: the STX was not the start of
//     a valid frame; n is 1, so a real frame starting inside it is found next.
//
// Decode never panics and never returns n > len(buf).
func Decode(buf []byte, dir Direction) (Frame, int, error) {
	if len(buf) == 0 {
		return Frame{}, 0, ErrIncomplete
	}
	if buf[0] != STX {
		n := 1
		for n < len(buf) && buf[n] != STX {
			n++
		}
		return Frame{}, n, fmt.Errorf("%w: %d bytes", ErrGarbage, n)
	}
	if len(buf) < 3 {
		return Frame{}, 0, ErrIncomplete
	}
	dl := dataLen(dir, buf[2])
	if dl < 0 {
		return Frame{}, 1, fmt.Errorf("%w 0x%02x", ErrUnknownCommand, buf[2])
	}
	total := 3 + dl + 2
	if len(buf) < total {
		return Frame{}, 0, ErrIncomplete
	}
	if buf[total-2] != ETX {
		return Frame{}, 1, fmt.Errorf("%w: got 0x%02x", ErrFraming, buf[total-2])
	}
	if want := Sum(buf[:total-1]); buf[total-1] != want {
		return Frame{}, 1, fmt.Errorf("%w: got 0x%02x, want 0x%02x", ErrChecksum, buf[total-1], want)
	}
	f := Frame{Addr: buf[1], Cmd: buf[2]}
	if dl > 0 {
		f.Data = append([]byte(nil), buf[3:3+dl]...)
	}
	return f, total, nil
}

// Stats counts what a Reader saw.
type Stats struct {
	Frames   uint64 // valid frames
	Garbage  uint64 // runs of bytes skipped before an STX
	Unknown  uint64 // unknown command bytes
	Framing  uint64 // missing ETX
	Checksum uint64 // bad SUM
}

// Errors returns the number of decoding errors of every kind.
func (s Stats) Errors() uint64 { return s.Garbage + s.Unknown + s.Framing + s.Checksum }

// Reader decodes a stream of frames from r, skipping noise: garbage up to
// the next STX, frames with a bad command, ETX or SUM. Each is counted in
// Stats and reported to OnError when set. A Reader is not safe for
// concurrent use.
type Reader struct {
	r   io.Reader
	dir Direction
	buf []byte
	st  Stats
	// OnError, when set, is called with every decoding error (wrapping one
	// of the codec's sentinel errors) before the bad bytes are skipped.
	OnError func(error)
}

// NewReader returns a Reader of frames sent in direction dir.
func NewReader(r io.Reader, dir Direction) *Reader {
	return &Reader{r: r, dir: dir, buf: make([]byte, 0, 256)}
}

// maxBuffer bounds the bytes a Reader keeps; a longer unframed run is
// garbage by construction (the longest frame has 9 bytes).
const maxBuffer = 4096

// Next returns the next valid frame. It returns the underlying reader's
// error (such as a timeout) when that fails before a frame is complete;
// bytes already read stay buffered for the next call.
func (rd *Reader) Next() (Frame, error) {
	var chunk [64]byte
	for {
		for len(rd.buf) > 0 {
			f, n, err := Decode(rd.buf, rd.dir)
			if err == nil {
				rd.drop(n)
				rd.st.Frames++
				return f, nil
			}
			if errors.Is(err, ErrIncomplete) {
				break
			}
			switch {
			case errors.Is(err, ErrGarbage):
				rd.st.Garbage++
			case errors.Is(err, ErrUnknownCommand):
				rd.st.Unknown++
			case errors.Is(err, ErrFraming):
				rd.st.Framing++
			case errors.Is(err, ErrChecksum):
				rd.st.Checksum++
			}
			if rd.OnError != nil {
				rd.OnError(err)
			}
			rd.drop(n)
		}
		n, err := rd.r.Read(chunk[:])
		if n > 0 {
			rd.buf = append(rd.buf, chunk[:n]...)
			if len(rd.buf) > maxBuffer {
				rd.drop(len(rd.buf) - maxBuffer)
			}
			continue
		}
		if err != nil {
			return Frame{}, err
		}
		if n == 0 {
			return Frame{}, io.ErrNoProgress
		}
	}
}

func (rd *Reader) drop(n int) {
	rd.buf = append(rd.buf[:0], rd.buf[n:]...)
}

// Reset forgets buffered bytes (before a new request, so a late answer to
// an earlier one is not taken for the next one's). It returns how many
// bytes it dropped.
func (rd *Reader) Reset() int {
	n := len(rd.buf)
	rd.buf = rd.buf[:0]
	return n
}

// Stats returns the counts so far.
func (rd *Reader) Stats() Stats { return rd.st }

// Status is a board's answer to CmdStatus.
type Status struct {
	Board int
	// Lock holds the lock feedback bits: bit 0 of Lock[0] is lock 1.
	Lock [2]byte
	// IR holds the item sensor bits (set = item present).
	IR [2]byte
}

// ParseStatus reads a CmdStatusReply frame.
func ParseStatus(f Frame) (Status, error) {
	if f.Cmd != CmdStatusReply || len(f.Data) != 4 {
		return Status{}, fmt.Errorf("kerong: not a status reply (cmd 0x%02x, %d data bytes): %w", f.Cmd, len(f.Data), ErrUnknownCommand)
	}
	return Status{
		Board: f.Board(),
		Lock:  [2]byte{f.Data[0], f.Data[1]},
		IR:    [2]byte{f.Data[2], f.Data[3]},
	}, nil
}

// StatusReply builds the frame a board sends for s (used by emulators).
func StatusReply(s Status) Frame {
	return Frame{Addr: byte(s.Board<<4) & 0xf0, Cmd: CmdStatusReply, Data: []byte{s.Lock[0], s.Lock[1], s.IR[0], s.IR[1]}}
}

// LockBit returns the lock feedback bit of lock (0-15).
func (s Status) LockBit(lock int) bool { return bit(s.Lock, lock) }

// IRBit returns the item sensor bit of lock (0-15).
func (s Status) IRBit(lock int) bool { return bit(s.IR, lock) }

// SetLockBit sets or clears the lock feedback bit of lock (0-15).
func (s *Status) SetLockBit(lock int, v bool) { setBit(&s.Lock, lock, v) }

// SetIRBit sets or clears the item sensor bit of lock (0-15).
func (s *Status) SetIRBit(lock int, v bool) { setBit(&s.IR, lock, v) }

func bit(b [2]byte, i int) bool {
	if i < 0 || i >= Locks {
		return false
	}
	return b[i/8]&(1<<(i%8)) != 0
}

func setBit(b *[2]byte, i int, v bool) {
	if i < 0 || i >= Locks {
		return
	}
	if v {
		b[i/8] |= 1 << (i % 8)
	} else {
		b[i/8] &^= 1 << (i % 8)
	}
}
