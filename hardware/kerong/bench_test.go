package kerong

import (
	"bytes"
	"context"
	"testing"
	"time"

	"kluis/controller/promtext"
)

func BenchmarkDecodeStatusReply(b *testing.B) {
	raw := Encode(StatusReply(Status{Board: 3, Lock: [2]byte{0xaa, 0x55}, IR: [2]byte{1, 2}}))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, _, err := Decode(raw, FromBoard); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReaderStream(b *testing.B) {
	frame := Encode(StatusReply(Status{Board: 1}))
	stream := bytes.Repeat(append([]byte{0xff}, frame...), 1000)
	b.SetBytes(int64(len(stream)))
	for i := 0; i < b.N; i++ {
		rd := NewReader(bytes.NewReader(stream), FromBoard)
		for {
			if _, err := rd.Next(); err != nil {
				break
			}
		}
	}
}

// BenchmarkStatusOverPty measures one status request and answer through a
// real pseudo-terminal against the test emulator.
func BenchmarkStatusOverPty(b *testing.B) {
	emu := newEmulatorTB(b, 0)
	d, err := New(Options{Port: emu.path(), Registry: promtext.NewRegistry(), Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.States(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
