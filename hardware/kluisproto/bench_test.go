package kluisproto

import (
	"bytes"
	"testing"
)

// benchEvents is a full EVENTS reply (8 events, the longest reply a board
// sends in normal operation).
func benchEvents() *EventsReply {
	r := &EventsReply{BootID: 7, Pending: 12}
	for i := range MaxEventsPerReply {
		r.Events = append(r.Events, Event{Seq: uint32(100 + i), Kind: EvDoorOpened, Channel: uint8(i)})
	}
	return r
}

// BenchmarkCRC16 measures the bitwise CRC-16/MODBUS over a maximal frame.
func BenchmarkCRC16(b *testing.B) {
	p := bytes.Repeat([]byte{0xA5, 0x5A}, (HeaderLen+MaxPayload)/2)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		_ = CRC16(p)
	}
}

// BenchmarkEncodeEventsReply measures marshalling and framing a full
// EVENTS reply.
func BenchmarkEncodeEventsReply(b *testing.B) {
	m := benchEvents()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeMessage(3, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEventsReply measures finding, checking and parsing a full
// EVENTS reply.
func BenchmarkDecodeEventsReply(b *testing.B) {
	raw, err := EncodeMessage(3, benchEvents())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		f, _, err := Decode(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ParseReply(f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecoderNoisyStream measures the streaming Decoder on a line
// where every frame is preceded by garbage and a false start, fed in
// 16-byte chunks as a UART driver hands them over.
func BenchmarkDecoderNoisyStream(b *testing.B) {
	status, _ := EncodeMessage(3, &StatusReply{BootID: 7, Channels: 24, Locked: 0xFFFFFF})
	var stream []byte
	for range 200 {
		stream = append(stream, 0x00, 0xFF, SOF, 0x1F, 0x90) // noise, false start (LEN 0x90 > 64)
		stream = append(stream, status...)
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		var d Decoder
		frames := 0
		for i := 0; i < len(stream); i += 16 {
			d.Write(stream[i:min(i+16, len(stream))])
			for {
				if _, ok := d.Next(); !ok {
					break
				}
				frames++
			}
		}
		if frames != 200 {
			b.Fatalf("%d frames, want 200", frames)
		}
	}
}
