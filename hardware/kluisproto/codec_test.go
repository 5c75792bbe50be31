package kluisproto

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
)

func mustEncode(t testing.TB, addr byte, m Message) []byte {
	t.Helper()
	b, err := EncodeMessage(addr, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEncodeLimits(t *testing.T) {
	if _, err := (Frame{Addr: 32, Cmd: 1}).Encode(); !errors.Is(err, ErrAddress) {
		t.Fatalf("addr 32: %v", err)
	}
	if _, err := (Frame{Addr: 1, Cmd: 1, Payload: make([]byte, 65)}).Encode(); !errors.Is(err, ErrOversize) {
		t.Fatalf("65 bytes: %v", err)
	}
	b, err := (Frame{Addr: 31, Cmd: 1, Payload: make([]byte, 64)}).Encode()
	if err != nil || len(b) != MaxFrame {
		t.Fatalf("max frame: %d %v", len(b), err)
	}
	if _, err := NewFrame(40, &InfoRequest{}); !errors.Is(err, ErrAddress) {
		t.Fatalf("NewFrame addr 40: %v", err)
	}
	if _, err := (EventsReply{Events: make([]Event, 9)}).MarshalBinary(); err == nil {
		t.Fatal("9 events encoded")
	}
	if _, err := (StatusReply{Channels: 49}).MarshalBinary(); err == nil {
		t.Fatal("49 channels encoded")
	}
}

func TestDecodeErrors(t *testing.T) {
	good := mustEncode(t, 3, &UnlockRequest{Channel: 1, DurationMS: 300, ID: 9})
	for i := 0; i < len(good); i++ {
		if _, _, err := Decode(good[:i]); !errors.Is(err, ErrShort) {
			t.Fatalf("prefix %d: %v", i, err)
		}
	}
	if _, _, err := Decode(append([]byte{0}, good...)); !errors.Is(err, ErrNoStart) {
		t.Fatalf("no start: %v", err)
	}
	for i := 1; i < len(good); i++ {
		bad := bytes.Clone(good)
		bad[i] ^= 0x10
		_, _, err := Decode(bad)
		if err == nil {
			t.Fatalf("flip byte %d decoded", i)
		}
	}
}

func TestRoundTripAllMessages(t *testing.T) {
	for name, ex := range examples {
		if ex.Msg == nil {
			continue
		}
		b := mustEncode(t, ex.Addr, ex.Msg)
		f, n, err := Decode(b)
		if err != nil || n != len(b) {
			t.Fatalf("%s: %v", name, err)
		}
		m, err := ParseReply(f)
		if ex.Request {
			m, err = ParseRequest(f)
		}
		if err != nil || !reflect.DeepEqual(m, ex.Msg) {
			t.Fatalf("%s: %#v %v", name, m, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	if _, err := ParseRequest(Frame{Cmd: CmdUnlock | ReplyBit}); !errors.Is(err, CodeUnknownCmd) {
		t.Fatalf("reply as request: %v", err)
	}
	if _, err := ParseReply(Frame{Cmd: CmdUnlock}); !errors.Is(err, CodeUnknownCmd) {
		t.Fatalf("request as reply: %v", err)
	}
	if _, err := ParseRequest(Frame{Cmd: CmdInfo, Payload: []byte{1}}); !errors.Is(err, CodeBadLength) {
		t.Fatalf("info with payload: %v", err)
	}
	if _, err := ParseReply(Frame{Cmd: CmdEvents | ReplyBit, Payload: make([]byte, 7+7*9)}); !errors.Is(err, CodeBadLength) {
		t.Fatalf("9 events: %v", err)
	}
	if _, err := ParseReply(Frame{Cmd: CmdEvents | ReplyBit, Payload: []byte{0, 0, 0, 0, 0, 0, 2, 1}}); !errors.Is(err, CodeBadLength) {
		t.Fatalf("short events: %v", err)
	}
	var n error = &Nak{Cmd: CmdUnlock, Code: CodeBusy, Arg: 3}
	if !errors.Is(n, CodeBusy) {
		t.Fatal("Nak does not unwrap to its code")
	}
	if (UnlockRequest{Channel: 0, DurationMS: 20, ID: 1}).Check() == nil ||
		(UnlockRequest{Channel: 0, DurationMS: 500, ID: 0}).Check() == nil ||
		(UnlockRequest{Channel: 0, DurationMS: 500, ID: 1}).Check() != nil {
		t.Fatal("UnlockRequest.Check")
	}
}

func TestDecoderChunksAndGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var stream []byte
	var want []Frame
	for i := 0; i < 500; i++ {
		// Garbage without start bytes, so every valid frame must be found.
		for j := rng.IntN(5); j > 0; j-- {
			b := byte(rng.IntN(256))
			if b == SOF {
				b = 0
			}
			stream = append(stream, b)
		}
		p := make([]byte, rng.IntN(MaxPayload+1))
		for j := range p {
			p[j] = byte(rng.IntN(256))
		}
		f := Frame{Addr: byte(rng.IntN(32)), Cmd: byte(rng.IntN(256)), Payload: p}
		b, _ := f.Encode()
		stream = append(stream, b...)
		want = append(want, f)
	}
	var d Decoder
	var got []Frame
	for len(stream) > 0 {
		n := min(len(stream), 1+rng.IntN(40))
		d.Write(stream[:n])
		stream = stream[n:]
		for {
			f, ok := d.Next()
			if !ok {
				break
			}
			got = append(got, f)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d (stats %+v)", len(got), len(want), d.Stats())
	}
	for i := range want {
		if got[i].Addr != want[i].Addr || got[i].Cmd != want[i].Cmd || !bytes.Equal(got[i].Payload, want[i].Payload) {
			t.Fatalf("frame %d: %v, want %v", i, got[i], want[i])
		}
	}
	if st := d.Stats(); st.BadCRC != 0 || st.Oversize != 0 || st.Frames != uint64(len(want)) {
		t.Fatalf("stats %+v", st)
	}
}

func TestDecoderResyncAfterDamage(t *testing.T) {
	a := mustEncode(t, 1, &StatusRequest{})
	b := mustEncode(t, 2, &UnlockRequest{Channel: 3, DurationMS: 400, ID: 77})
	c := mustEncode(t, 4, &EventsRequest{})
	var errs []error
	d := Decoder{OnError: func(err error) { errs = append(errs, err) }}

	// A frame with a bad CRC, then a good one.
	bad := bytes.Clone(b)
	bad[5] ^= 0xFF
	d.Write(bad)
	d.Write(a)
	f, ok := d.Next()
	if !ok || f.Addr != 1 || f.Cmd != CmdStatus {
		t.Fatalf("after bad CRC: %v %v", f, ok)
	}
	if st := d.Stats(); st.BadCRC != 1 {
		t.Fatalf("stats %+v", st)
	}

	// A truncated frame (its LEN promises more bytes than come) followed by
	// a good frame: the good one is found without waiting, payload intact.
	d.Write(b[:6])
	d.Write(c)
	f, ok = d.Next()
	if !ok || f.Addr != 4 || f.Cmd != CmdEvents {
		t.Fatalf("after truncated: %v %v", f, ok)
	}
	if st := d.Stats(); st.Truncated != 1 {
		t.Fatalf("stats %+v", st)
	}
	big, _ := Frame{Addr: 1, Cmd: 2, Payload: make([]byte, 60)}.Encode()
	d.Write(big[:9])
	d.Write(b)
	f, ok = d.Next()
	if !ok || f.Addr != 2 || f.Cmd != CmdUnlock || !bytes.Equal(f.Payload, b[HeaderLen:len(b)-CRCLen]) {
		t.Fatalf("after truncated: %v %v", f, ok)
	}
	if st := d.Stats(); st.Truncated != 2 {
		t.Fatalf("stats %+v", st)
	}
	d.Reset()

	// A partial frame dropped by Reset (the line went quiet).
	d.Write(b[:5])
	if _, ok := d.Next(); ok {
		t.Fatal("frame from partial bytes")
	}
	d.Reset()
	if st := d.Stats(); st.Truncated != 3 || d.Buffered() != 0 {
		t.Fatalf("stats %+v buffered %d", st, d.Buffered())
	}

	// Oversized length, then a good frame.
	d.Write([]byte{SOF, 0x01, 0x82, 0xFF})
	d.Write(a)
	if f, ok = d.Next(); !ok || f.Addr != 1 {
		t.Fatalf("after oversize: %v %v", f, ok)
	}
	if st := d.Stats(); st.Oversize != 1 {
		t.Fatalf("stats %+v", st)
	}
	if len(errs) == 0 {
		t.Fatal("OnError never called")
	}
}

type chunkReader struct {
	data []byte
	n    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errors.New("timeout")
	}
	n := min(len(p), r.n, len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func TestReader(t *testing.T) {
	a := mustEncode(t, 1, &StatusRequest{})
	b := mustEncode(t, 2, &InfoRequest{})
	r := NewReader(&chunkReader{data: append(append([]byte{1, 2, 3}, a...), b[:3]...), n: 2})
	f, err := r.ReadFrame()
	if err != nil || f.Addr != 1 {
		t.Fatalf("%v %v", f, err)
	}
	if _, err := r.ReadFrame(); err == nil || err.Error() != "timeout" {
		t.Fatalf("want timeout, got %v", err)
	}
	r.Reset()
	if st := r.Dec.Stats(); st.Truncated != 1 || st.Garbage != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestIDCache(t *testing.T) {
	var c IDCache
	if m, err := c.Lookup(CmdUnlock, 5); m != nil || err != nil {
		t.Fatal("empty cache found something")
	}
	c.Remember(5, &UnlockReply{Channel: 2, DurationMS: 300, ID: 5})
	m, err := c.Lookup(CmdUnlock, 5)
	if err != nil || !reflect.DeepEqual(m, &UnlockReply{Channel: 2, DurationMS: 300, ID: 5, Repeat: true}) {
		t.Fatalf("%#v %v", m, err)
	}
	if _, err := c.Lookup(CmdPresent, 5); !errors.Is(err, CodeBadArgument) {
		t.Fatalf("cross-command: %v", err)
	}
	for i := uint32(100); i < 100+IDCacheSize; i++ {
		c.Remember(i, &PresentReply{Slot: 1, ID: i})
	}
	if m, _ := c.Lookup(CmdUnlock, 5); m != nil {
		t.Fatal("oldest id not forgotten")
	}
	if m, _ := c.Lookup(CmdPresent, 100); m == nil {
		t.Fatal("recent id forgotten")
	}
}

func TestEventQueue(t *testing.T) {
	var q EventQueue
	for i := 0; i < 10; i++ {
		if s := q.Push(EvDoorOpened, byte(i), 0); s != uint32(i+1) {
			t.Fatalf("seq %d", s)
		}
	}
	r := q.Reply(7)
	if r.Pending != 10 || len(r.Events) != MaxEventsPerReply || r.Events[0].Seq != 1 {
		t.Fatalf("%+v", r)
	}
	if left := q.Ack(8); left != 2 {
		t.Fatalf("left %d", left)
	}
	if left := q.Ack(3); left != 2 {
		t.Fatalf("old ack removed events: %d", left)
	}
	for q.Push(EvDoorClosed, 0, 0) != 0 {
	}
	q.Ack(0) // an ACK before any reply showed the flag keeps it
	if r := q.Reply(7); r.Flags&EvFlagOverflow == 0 {
		t.Fatal("no overflow flag")
	}
	// That reply was lost: the retry shows the flag again.
	if r := q.Reply(7); r.Flags&EvFlagOverflow == 0 {
		t.Fatal("overflow flag lost with a reply")
	}
	q.Ack(20)
	if r := q.Reply(7); r.Flags&EvFlagOverflow != 0 || q.Overflowed() {
		t.Fatal("overflow flag not lowered by the ACK")
	}
}

func TestBitmap(t *testing.T) {
	var b Bitmap
	b = b.Set(47, true).Set(0, true).Set(64, true).Set(-1, true)
	if !b.Get(47) || !b.Get(0) || b.Get(1) || b.Get(64) {
		t.Fatal(b)
	}
	b = b.Set(47, false)
	if b.Get(47) {
		t.Fatal("clear")
	}
}

func TestOnBadCRC(t *testing.T) {
	b := mustEncode(t, 3, &UnlockRequest{Channel: 4, DurationMS: 500, ID: 1})
	b[len(b)-1] ^= 1
	var seen []byte
	d := Decoder{OnBadCRC: func(raw []byte) { seen = bytes.Clone(raw) }}
	d.Write(b)
	if _, ok := d.Next(); ok {
		t.Fatal("decoded a bad frame")
	}
	if !bytes.Equal(seen, b) {
		t.Fatalf("OnBadCRC saw % X", seen)
	}
}
