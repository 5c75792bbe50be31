package kluisproto

import (
	"bytes"
	"io"
)

// Stats counts what a Decoder saw. All counts are cumulative.
type Stats struct {
	Frames    uint64 // valid frames returned
	BadCRC    uint64 // frames whose CRC did not match
	Oversize  uint64 // start bytes followed by LEN > MaxPayload
	Truncated uint64 // partial frames dropped by Reset or overtaken by a later valid frame
	Garbage   uint64 // runs of bytes skipped while looking for a start byte
	Skipped   uint64 // bytes skipped in total (garbage, bad frames)
}

// Errors returns the number of framing errors: bad CRC, oversize, truncated
// and garbage runs.
func (s Stats) Errors() uint64 { return s.BadCRC + s.Oversize + s.Truncated + s.Garbage }

// Decoder turns a byte stream into frames. Feed it bytes with Write and take
// frames with Next. It resynchronises after noise: a bad CRC or an oversized
// LEN drops only the start byte and the search for the next start byte
// begins at the byte after it, so a valid frame that follows garbage (or
// hides inside a damaged frame) is still found. It never panics and keeps at
// most a few frames' worth of bytes. The zero Decoder is ready to use; it is
// not safe for concurrent use.
type Decoder struct {
	buf   []byte
	stats Stats
	// OnError, when set, is called for every framing error with ErrBadCRC,
	// ErrOversize, ErrTruncated or ErrNoStart (a garbage run).
	OnError func(err error)
	// OnBadCRC, when set, is called with the raw bytes (SOF to CRC) of every
	// complete frame whose CRC did not match, before it is dropped; a board
	// uses it to answer NAK BAD_CRC (firmware-protocol.md, section 5). The
	// slice is only valid during the call.
	OnBadCRC func(raw []byte)
	// inGarbage is true while the bytes being skipped continue one run.
	inGarbage bool
}

// NewDecoder returns an empty Decoder.
func NewDecoder() *Decoder { return &Decoder{} }

// Write appends bytes received from the line. It never fails.
func (d *Decoder) Write(p []byte) (int, error) {
	d.buf = append(d.buf, p...)
	return len(p), nil
}

// Buffered is the number of bytes held that did not yet form a frame.
func (d *Decoder) Buffered() int { return len(d.buf) }

// Stats returns the counts so far.
func (d *Decoder) Stats() Stats { return d.stats }

func (d *Decoder) fail(err error) {
	switch err {
	case ErrBadCRC:
		d.stats.BadCRC++
	case ErrOversize:
		d.stats.Oversize++
	case ErrTruncated:
		d.stats.Truncated++
	case ErrNoStart:
		d.stats.Garbage++
	}
	if d.OnError != nil {
		d.OnError(err)
	}
}

// skip drops n bytes from the front of the buffer.
func (d *Decoder) skip(n int) {
	d.stats.Skipped += uint64(n)
	d.drop(n)
}

func (d *Decoder) drop(n int) {
	rest := copy(d.buf, d.buf[n:])
	d.buf = d.buf[:rest]
}

// Next returns the next valid frame, or ok=false when the bytes held so far
// do not complete one. The frame's payload is a copy, valid after later
// calls.
func (d *Decoder) Next() (f Frame, ok bool) {
	for len(d.buf) > 0 {
		if d.buf[0] != SOF {
			i := bytes.IndexByte(d.buf, SOF)
			if i < 0 {
				i = len(d.buf)
			}
			if !d.inGarbage {
				d.inGarbage = true
				d.fail(ErrNoStart)
			}
			d.skip(i)
			continue
		}
		fr, n, err := Decode(d.buf)
		switch err {
		case nil:
			d.inGarbage = false
			fr.Payload = append([]byte(nil), fr.Payload...)
			d.drop(n)
			d.stats.Frames++
			return fr, true
		case ErrShort:
			// A valid frame further on means this start byte was noise or
			// the head of a frame that lost bytes.
			if j, fr, n, ok := d.lookahead(); ok {
				d.inGarbage = false
				fr.Payload = append([]byte(nil), fr.Payload...) // before the buffer moves
				d.fail(ErrTruncated)
				d.skip(j)
				d.drop(n)
				d.stats.Frames++
				return fr, true
			}
			return Frame{}, false
		default: // ErrBadCRC, ErrOversize
			if err == ErrBadCRC && d.OnBadCRC != nil {
				d.OnBadCRC(d.buf[:HeaderLen+int(d.buf[3])+CRCLen])
			}
			d.inGarbage = true // the rest of the bad frame is not a new garbage run
			d.fail(err)
			d.skip(1)
		}
	}
	return Frame{}, false
}

// lookahead finds the first complete valid frame at a start byte after
// position 0.
func (d *Decoder) lookahead() (j int, f Frame, n int, ok bool) {
	for j = 1; j < len(d.buf); j++ {
		if d.buf[j] != SOF {
			continue
		}
		f, n, err := Decode(d.buf[j:])
		if err == nil {
			return j, f, n, true
		}
	}
	return 0, Frame{}, 0, false
}

// Reset drops every byte held. A partial frame (bytes starting with SOF) is
// counted as truncated, other bytes as garbage. Call it when the line has
// been quiet longer than a frame takes (the inter-byte timeout), so a frame
// cut off by noise cannot swallow the next one.
func (d *Decoder) Reset() {
	if len(d.buf) > 0 {
		if d.buf[0] == SOF {
			d.fail(ErrTruncated)
		} else if !d.inGarbage {
			d.fail(ErrNoStart)
		}
		d.skip(len(d.buf))
	}
	d.inGarbage = false
}

// Reader reads frames from an io.Reader (a serial port) through a Decoder.
type Reader struct {
	r   io.Reader
	Dec Decoder
	buf [256]byte
}

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// ReadFrame returns the next valid frame. It reads from the underlying
// reader until a frame is complete; a read error (a timeout of the serial
// port, io.EOF) is returned as is, and the bytes held so far stay for the
// next call unless Reset is called. ReadFrame never returns a frame with a
// bad CRC: those are counted in Dec.Stats and skipped.
func (r *Reader) ReadFrame() (Frame, error) {
	for {
		if f, ok := r.Dec.Next(); ok {
			return f, nil
		}
		n, err := r.r.Read(r.buf[:])
		if n > 0 {
			r.Dec.Write(r.buf[:n])
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

// Reset drops a partial frame (see Decoder.Reset).
func (r *Reader) Reset() { r.Dec.Reset() }
