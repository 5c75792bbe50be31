package simulator

import (
	"testing"
	"time"

	"kluis/hardware/kluisproto"
)

// Garbage never panics the Kerong responder and never pulses a lock that no
// valid unlock frame in the input asked for.
func FuzzKerongResponder(f *testing.F) {
	f.Add([]byte{0x02, 0x00, 0x31, 0x03, 0x36})
	f.Add([]byte{0x02, 0x00, 0x30, 0x03, 0x35, 0x02, 0x13, 0x31, 0x03, 0x49})
	f.Add([]byte{0xff, 0x02, 0x02, 0x00, 0x31, 0x03, 0x36, 0x03})
	f.Fuzz(func(t *testing.T, in []byte) {
		clk := NewManualClock(time.Unix(0, 0))
		d, _ := New(Options{Boards: 2, Channels: 16, Clock: clk})
		k, err := NewKerong(d, KerongOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// feed in two pieces to exercise partial frames
		out := k.Handle(in[:len(in)/2])
		out = append(out, k.Handle(in[len(in)/2:])...)
		valid := 0
		for i := 0; i+5 <= len(in); i++ {
			w := in[i : i+5]
			if w[0] == 0x02 && w[2] == KerongCmdUnlock && w[3] == 0x03 && w[0]+w[1]+w[2]+w[3] == w[4] && int(w[1]>>4) < 2 {
				valid++
			}
		}
		if n := len(d.Pulses()); n > valid {
			t.Fatalf("%d pulses from %d valid unlock frames in % X", n, valid, in)
		}
		// replies are whole, well-summed frames of 6 or 9 bytes
		for len(out) > 0 {
			n := 0
			switch {
			case len(out) >= 6 && out[2] == KerongCmdUnlock:
				n = 6
			case len(out) >= 9 && out[2] == KerongRspStatus:
				n = 9
			default:
				t.Fatalf("reply bytes are not whole frames: % X", out)
			}
			fr := KerongFrame(out[1], out[2], out[3:n-2]...)
			if string(fr) != string(out[:n]) {
				t.Fatalf("reply % X badly framed", out[:n])
			}
			out = out[n:]
		}
	})
}

// Garbage never panics the Kluis responder and never pulses a lock that no
// valid UNLOCK frame in the input asked for.
func FuzzKluisResponder(f *testing.F) {
	for _, m := range []kluisproto.Message{&kluisproto.UnlockRequest{Channel: 4, DurationMS: 500, ID: 7},
		&kluisproto.EventsRequest{}, &kluisproto.AckRequest{BootID: 1, Seq: 3}, &kluisproto.PresentRequest{Slot: 1, ID: 2}} {
		b, _ := kluisproto.EncodeMessage(1, m)
		f.Add(b)
	}
	f.Add([]byte{0x00, 0xFF, 0xA5, 0x1F, 0x90, 0xA5, 0x03, 0x01, 0x00, 0x80, 0x50})
	f.Fuzz(func(t *testing.T, in []byte) {
		clk := NewManualClock(time.Unix(0, 0))
		d, _ := New(Options{Boards: 2, Channels: 8, Clock: clk})
		k, err := NewKluis(d)
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		out := k.Handle(in[:len(in)/2])
		out = append(out, k.Handle(in[len(in)/2:])...)
		valid := 0
		for i := range in {
			fr, _, err := kluisproto.Decode(in[i:])
			if err != nil || fr.Cmd != kluisproto.CmdUnlock || fr.Addr >= 2 {
				continue
			}
			if _, err := kluisproto.ParseRequest(fr); err == nil {
				valid++
			}
		}
		if n := len(d.Pulses()); n > valid {
			t.Fatalf("%d pulses from %d valid unlock frames in % X", n, valid, in)
		}
		dec := kluisproto.NewDecoder()
		_, _ = dec.Write(out)
		for {
			fr, ok := dec.Next()
			if !ok {
				break
			}
			if _, err := kluisproto.ParseReply(fr); err != nil {
				t.Fatalf("unparseable reply %v: %v", fr, err)
			}
		}
		if st := dec.Stats(); st.Errors() != 0 || dec.Buffered() != 0 {
			t.Fatalf("reply stream has framing errors %+v: % X", st, out)
		}
	})
}
