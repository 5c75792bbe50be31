package simulator

import (
	"testing"
	"time"

	"kluis/hardware/kluisproto"
)

// BenchmarkKluisStatusRoundTrip measures one STATUS request handled by the
// board responder (framing, world read, reply encoding), without a line.
func BenchmarkKluisStatusRoundTrip(b *testing.B) {
	d, _ := New(Options{Boards: 4, Channels: 24, Clock: NewManualClock(time.Unix(0, 0))})
	k, _ := NewKluis(d)
	defer k.Close()
	req, _ := kluisproto.EncodeMessage(3, &kluisproto.StatusRequest{})
	b.ReportAllocs()
	for b.Loop() {
		if len(k.Handle(req)) == 0 {
			b.Fatal("no reply")
		}
	}
}

// BenchmarkKerongStatusRoundTrip is the same for a Kerong status request.
func BenchmarkKerongStatusRoundTrip(b *testing.B) {
	d, _ := New(Options{Boards: 2, Channels: 16, Clock: NewManualClock(time.Unix(0, 0))})
	k, _ := NewKerong(d, KerongOptions{})
	req := KerongFrame(0x10, KerongCmdStatus)
	b.ReportAllocs()
	for b.Loop() {
		if len(k.Handle(req)) == 0 {
			b.Fatal("no reply")
		}
	}
}

// BenchmarkLineFault measures the per-byte fault draw of a noisy line.
func BenchmarkLineFault(b *testing.B) {
	d, _ := New(Options{Seed: 1})
	_ = d.SetFaults(Faults{Line: LineFaults{Drop: 0.01, Corrupt: 0.01, Delay: 0.01}})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d.LineFault(ToBoard, byte(i))
	}
}
