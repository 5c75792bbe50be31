package kluisbus

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"kluis/hardware"
	"kluis/hardware/kluisproto"
)

// linePort is an in-memory Port: Read hands out a fixed answer once per
// Write, then times out.
type linePort struct {
	mu      sync.Mutex
	answer  []byte
	pending []byte
	writes  int
}

func (p *linePort) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writes++
	p.pending = append(p.pending[:0], p.answer...)
	return len(b), nil
}

func (p *linePort) Read(b []byte) (int, error) {
	p.mu.Lock()
	n := copy(b, p.pending)
	p.pending = p.pending[n:]
	p.mu.Unlock()
	if n == 0 {
		time.Sleep(100 * time.Microsecond)
		return 0, fmt.Errorf("fake: %w", hardware.ErrTimeout)
	}
	return n, nil
}

func (p *linePort) Close() error                       { return nil }
func (p *linePort) Flush() error                       { return nil }
func (p *linePort) SetReadTimeout(time.Duration) error { return nil }

// FuzzPulseReply gives arbitrary bytes as the board's answer to an UNLOCK:
// the driver never panics, and it reports success only when those bytes
// hold a valid UNLOCK reply from the right board for the right channel and
// command id.
func FuzzPulseReply(f *testing.F) {
	good, _ := kluisproto.EncodeMessage(2, &kluisproto.UnlockReply{Channel: 4, DurationMS: 500, ID: 0x12345678})
	f.Add(good)
	f.Add(append([]byte{0xA5, 0x02, 0x83, 0x40}, good...))
	nak, _ := kluisproto.EncodeMessage(2, &kluisproto.Nak{Cmd: kluisproto.CmdUnlock, Code: kluisproto.CodeBusy, Arg: 3})
	f.Add(nak)
	other, _ := kluisproto.EncodeMessage(3, &kluisproto.UnlockReply{Channel: 4, DurationMS: 500, ID: 0x12345678})
	f.Add(other)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, answer []byte) {
		if len(answer) > 512 {
			return
		}
		lp := &linePort{answer: answer}
		d, err := New(Options{Port: "fuzz", Baud: 115200, Boards: []int{2}, Timeout: time.Millisecond, Retries: -1,
			Open: func(string, int) (Port, error) { return lp, nil }})
		if err != nil {
			t.Fatal(err)
		}
		err = d.Pulse(context.Background(), hardware.Address{Board: 2, Channel: 4}, 500*time.Millisecond, 0x12345678)
		if err == nil && !holdsReply(answer) {
			t.Fatalf("Pulse succeeded on % X", answer)
		}
	})
}

func holdsReply(b []byte) bool {
	for i := range b {
		f, _, err := kluisproto.Decode(b[i:])
		if err != nil || f.Addr != 2 || f.Cmd != kluisproto.CmdUnlock|kluisproto.ReplyBit {
			continue
		}
		m, err := kluisproto.ParseReply(f)
		if err != nil {
			continue
		}
		r := m.(*kluisproto.UnlockReply)
		if r.Channel == 4 && r.ID == 0x12345678 {
			return true
		}
	}
	return false
}
