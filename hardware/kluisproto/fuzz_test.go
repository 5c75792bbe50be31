package kluisproto

import (
	"bytes"
	"reflect"
	"testing"
)

func seedFrames(f *testing.F) {
	for name, ex := range examples {
		f.Add(exampleBytes(f, name, ex))
	}
	f.Add([]byte{})
	f.Add([]byte{SOF})
	f.Add([]byte{SOF, SOF, SOF, 0x40, SOF})
}

// FuzzDecode feeds arbitrary bytes, in chunks, to the Decoder and to
// Decode: they must never panic, and every frame they return must be a
// valid frame that encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if fr, n, err := Decode(data); err == nil {
			if n < MinFrame || n > len(data) || n > MaxFrame {
				t.Fatalf("n = %d", n)
			}
			if fr.Addr <= MaxAddr {
				b, err := fr.Encode()
				if err != nil || !bytes.Equal(b, data[:n]) {
					t.Fatalf("re-encode %x != %x (%v)", b, data[:n], err)
				}
			}
		}
		chunk := 1
		if len(data) > 0 {
			chunk = int(data[0]%16) + 1
		}
		var d Decoder
		frames := 0
		for i := 0; i < len(data); i += chunk {
			d.Write(data[i:min(i+chunk, len(data))])
			for {
				fr, ok := d.Next()
				if !ok {
					break
				}
				frames++
				if len(fr.Payload) > MaxPayload {
					t.Fatalf("payload %d", len(fr.Payload))
				}
				fr.Addr &= MaxAddr
				b, err := fr.Encode()
				if err != nil {
					t.Fatal(err)
				}
				if g, _, err := Decode(b); err != nil || g.Cmd != fr.Cmd || !bytes.Equal(g.Payload, fr.Payload) {
					t.Fatalf("round trip: %v", err)
				}
			}
			if d.Buffered() > len(data) {
				t.Fatalf("buffered %d of %d bytes", d.Buffered(), len(data))
			}
		}
		d.Reset()
		st := d.Stats()
		if st.Frames != uint64(frames) || d.Buffered() != 0 {
			t.Fatalf("stats %+v, frames %d, buffered %d", st, frames, d.Buffered())
		}
	})
}

// fuzzMessage checks that parsing never panics and that a parsed message
// marshals to a payload that parses to the same message.
func fuzzMessage(t *testing.T, cmd byte, payload []byte, parse func(Frame) (Message, error)) {
	m, err := parse(Frame{Addr: 1, Cmd: cmd, Payload: payload})
	if err != nil {
		return
	}
	if m.Command() != cmd {
		t.Fatalf("command %#x from %#x", m.Command(), cmd)
	}
	p, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("marshal parsed %#v: %v", m, err)
	}
	m2, err := parse(Frame{Addr: 1, Cmd: cmd, Payload: p})
	if err != nil || !reflect.DeepEqual(m, m2) {
		t.Fatalf("round trip %#v -> %#v (%v)", m, m2, err)
	}
	if len(p) > MaxPayload {
		t.Fatalf("payload %d bytes", len(p))
	}
}

// FuzzParseRequest is the board side's parser.
func FuzzParseRequest(f *testing.F) {
	for _, ex := range examples {
		if ex.Request && ex.Msg != nil {
			p, _ := ex.Msg.MarshalBinary()
			f.Add(ex.Msg.Command(), p)
		}
	}
	f.Fuzz(func(t *testing.T, cmd byte, payload []byte) { fuzzMessage(t, cmd, payload, ParseRequest) })
}

// FuzzParseReply is the master side's parser.
func FuzzParseReply(f *testing.F) {
	for _, ex := range examples {
		if !ex.Request && ex.Msg != nil {
			p, _ := ex.Msg.MarshalBinary()
			f.Add(ex.Msg.Command(), p)
		}
	}
	f.Fuzz(func(t *testing.T, cmd byte, payload []byte) { fuzzMessage(t, cmd, payload, ParseReply) })
}
