package simulator

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kluis/hardware/kluisproto"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newKluisBoard(t *testing.T, o Options) (*Device, *Kluis, *ManualClock) {
	t.Helper()
	clk := NewManualClock(time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC))
	o.Clock = clk
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKluis(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return d, k, clk
}

func parseReplies(t *testing.T, b []byte) []kluisproto.Message {
	t.Helper()
	var out []kluisproto.Message
	dec := kluisproto.NewDecoder()
	_, _ = dec.Write(b)
	for {
		f, ok := dec.Next()
		if !ok {
			break
		}
		m, err := kluisproto.ParseReply(f)
		if err != nil {
			t.Fatalf("reply %v: %v", f, err)
		}
		out = append(out, m)
	}
	return out
}

func request(t *testing.T, addr byte, m kluisproto.Message) []byte {
	t.Helper()
	b, err := kluisproto.EncodeMessage(addr, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The worked examples of firmware-protocol.md, answered byte for byte.
func TestKluisSpecExamples(t *testing.T) {
	d, k, clk := newKluisBoard(t, Options{Boards: 4, Channels: 24, Cooldown: time.Second})
	for _, c := range []struct{ name, req, want string }{
		{"unlock", "A5 03 03 07 04 F4 01 78 56 34 12 D6 17", "A5 03 83 08 04 F4 01 78 56 34 12 00 D0 86"},
		{"unlock retry", "A5 03 03 07 04 F4 01 78 56 34 12 D6 17", "A5 03 83 08 04 F4 01 78 56 34 12 01 11 46"},
		{"corrupt", "A5 03 03 07 04 F4 01 78 56 34 12 D6 16", "A5 03 FF 03 03 01 00 E5 E8"},
		{"unknown command", "A5 03 42 00 B1 60", "A5 03 FF 03 42 02 00 B5 0C"},
		{"bad length", "A5 03 03 06 04 F4 01 78 56 34 37 D6", "A5 03 FF 03 03 03 00 E4 88"},
		{"out of range", "A5 03 03 07 2F F4 01 79 56 34 12 4C E9", "A5 03 FF 03 03 04 00 E6 B8"},
		{"other board's address", "A5 1F 01 00 00 00", ""},
		{"noise and a false start then relock-all", "00 FF A5 1F 90 A5 03 07 00 83 F0", "A5 03 87 00 E2 30"},
		{"watchdog", "A5 03 06 01 0A 61 F6", ""},
	} {
		got := k.Handle(unhex(t, c.req))
		if c.name == "watchdog" {
			ms := parseReplies(t, got)
			if len(ms) != 1 || ms[0].(*kluisproto.WatchdogReply).TimeoutS != 10 {
				t.Errorf("watchdog: %v", ms)
			}
			continue
		}
		if !bytes.Equal(got, unhex(t, c.want)) {
			t.Errorf("%s: got % X, want %s", c.name, got, c.want)
		}
	}
	ms := parseReplies(t, k.Handle(request(t, 3, &kluisproto.PresentRequest{Slot: 17, ID: 0xA001})))
	if len(ms) != 1 || !errors.Is(ms[0].(*kluisproto.Nak), kluisproto.CodeUnknownCmd) {
		t.Errorf("present on a locker board: %v", ms)
	}
	// UNKNOWN_COMMAND comes before BAD_LENGTH: PRESENT and HATCH with the
	// wrong length are still unknown to a board without a mechanism.
	for _, f := range []kluisproto.Frame{{Addr: 3, Cmd: kluisproto.CmdPresent, Payload: []byte{1}}, {Addr: 3, Cmd: kluisproto.CmdHatch, Payload: []byte{1}}} {
		raw, err := f.Encode()
		if err != nil {
			t.Fatal(err)
		}
		ms := parseReplies(t, k.Handle(raw))
		if len(ms) != 1 || !errors.Is(ms[0].(*kluisproto.Nak), kluisproto.CodeUnknownCmd) {
			t.Errorf("cmd %#x with a bad length on a locker board: %v, want UNKNOWN_COMMAND", f.Cmd, ms)
		}
	}
	if ps := d.Pulses(); len(ps) != 1 || ps[0].Board != 3 || ps[0].Channel != 4 || ps[0].CommandID != 0x12345678 {
		t.Fatalf("pulses %+v, want exactly one on b3/c4", ps)
	}
	// the relock-all ended the pulse before the door sprang (mechanical delay)
	clk.Advance(time.Second)
	if x, _ := d.Channel(3, 4); x.Energised || x.DoorOpen {
		t.Fatalf("after relock-all: %+v", x)
	}
}

func TestKluisEventsAckRebootBusy(t *testing.T) {
	d, k, clk := newKluisBoard(t, Options{Boards: 1, Channels: 8, Cooldown: time.Second})
	info := parseReplies(t, k.Handle(request(t, 0, &kluisproto.InfoRequest{})))[0].(*kluisproto.InfoReply)
	if info.Channels != 8 || info.Caps != kluisproto.CapDoorSensor|kluisproto.CapItemSensor|kluisproto.CapBootCheck || info.BootID == 0 {
		t.Fatalf("info %+v", info)
	}
	_ = d.Load(0, 2, 0, "licence")
	r := parseReplies(t, k.Handle(request(t, 0, &kluisproto.UnlockRequest{Channel: 2, DurationMS: 500, ID: 1})))
	if _, ok := r[0].(*kluisproto.UnlockReply); !ok {
		t.Fatalf("unlock: %v", r)
	}
	// a new id while energised: BUSY with the wait in 100 ms units
	r = parseReplies(t, k.Handle(request(t, 0, &kluisproto.UnlockRequest{Channel: 2, DurationMS: 500, ID: 2})))
	nak, ok := r[0].(*kluisproto.Nak)
	if !ok || nak.Code != kluisproto.CodeBusy || nak.Arg != 15 {
		t.Fatalf("second unlock: %v, want NAK BUSY arg 15", r)
	}
	clk.Advance(time.Second)
	_, _ = d.Take(0, 2)
	_ = d.Close(0, 2)
	st := parseReplies(t, k.Handle(request(t, 0, &kluisproto.StatusRequest{})))[0].(*kluisproto.StatusReply)
	if !st.Locked.Get(2) || st.DoorOpen.Get(2) || st.ItemPresent.Get(2) || st.BootID != info.BootID {
		t.Fatalf("status %+v", st)
	}
	ev := parseReplies(t, k.Handle(request(t, 0, &kluisproto.EventsRequest{})))[0].(*kluisproto.EventsReply)
	kinds := []kluisproto.EventKind{kluisproto.EvItemPlaced, kluisproto.EvUnlocked, kluisproto.EvDoorOpened, kluisproto.EvItemRemoved, kluisproto.EvDoorClosed}
	if len(ev.Events) != len(kinds) || ev.Pending != 5 {
		t.Fatalf("events %+v", ev)
	}
	for i, e := range ev.Events {
		if e.Kind != kinds[i] || e.Seq != uint32(i+1) || e.Channel != 2 {
			t.Fatalf("event %d = %+v, want %v seq %d", i, e, kinds[i], i+1)
		}
	}
	// ACK for another boot: refused, nothing dropped
	r = parseReplies(t, k.Handle(request(t, 0, &kluisproto.AckRequest{BootID: info.BootID + 1, Seq: 5})))
	if nak, ok := r[0].(*kluisproto.Nak); !ok || nak.Code != kluisproto.CodeBootMismatch {
		t.Fatalf("ack other boot: %v", r)
	}
	ack := parseReplies(t, k.Handle(request(t, 0, &kluisproto.AckRequest{BootID: info.BootID, Seq: 3})))[0].(*kluisproto.AckReply)
	if ack.Pending != 2 {
		t.Fatalf("ack %+v", ack)
	}
	// reboot: new boot id, empty queue, remembered ids gone
	_ = d.Reboot(0)
	ev = parseReplies(t, k.Handle(request(t, 0, &kluisproto.EventsRequest{})))[0].(*kluisproto.EventsReply)
	if ev.BootID == info.BootID || ev.Pending != 0 {
		t.Fatalf("after reboot %+v", ev)
	}
	r = parseReplies(t, k.Handle(request(t, 0, &kluisproto.UnlockRequest{Channel: 2, DurationMS: 500, ID: 1})))
	if u, ok := r[0].(*kluisproto.UnlockReply); !ok || u.Repeat {
		t.Fatalf("unlock after reboot: %v (the board forgot the id: it pulses again)", r)
	}
	if n := len(d.Pulses()); n != 2 {
		t.Fatalf("pulses %d", n)
	}
	// the watchdog: 1 s without a frame relocks and queues WATCHDOG
	parseReplies(t, k.Handle(request(t, 0, &kluisproto.WatchdogRequest{TimeoutS: 1})))
	clk.Advance(1500 * time.Millisecond)
	ev = parseReplies(t, k.Handle(request(t, 0, &kluisproto.EventsRequest{})))[0].(*kluisproto.EventsReply)
	last := ev.Events[len(ev.Events)-1]
	if last.Kind != kluisproto.EvWatchdog || last.Channel != kluisproto.ChannelNone {
		t.Fatalf("events %+v, want a WATCHDOG last", ev.Events)
	}
}

func TestKluisAutomaton(t *testing.T) {
	d, k, clk := newKluisBoard(t, Options{Kind: Automaton, Boards: 6, Slots: 40, MoveTime: 3 * time.Second})
	_ = d.Load(5, 0, 17, "ID card 18")
	info := parseReplies(t, k.Handle(request(t, 5, &kluisproto.InfoRequest{})))[0].(*kluisproto.InfoReply)
	if info.Slots != 40 || info.Channels != 1 || info.Caps&kluisproto.CapMechanism == 0 {
		t.Fatalf("info %+v", info)
	}
	got := k.Handle(unhex(t, "A5 05 08 05 11 01 A0 00 00 F4 7C"))
	if !bytes.Equal(got, unhex(t, "A5 05 88 06 11 01 A0 00 00 00 46 E7")) {
		t.Fatalf("present: % X", got)
	}
	if got := k.Handle(unhex(t, "A5 05 08 05 11 01 A0 00 00 F4 7C")); !bytes.Equal(got, unhex(t, "A5 05 88 06 11 01 A0 00 00 01 87 27")) {
		t.Fatalf("present retry: % X", got)
	}
	if got := k.Handle(unhex(t, "A5 05 09 00 67 91")); !bytes.Equal(got, unhex(t, "A5 05 89 03 06 FF 00 7C 24")) {
		t.Fatalf("hatch while moving: % X", got)
	}
	r := parseReplies(t, k.Handle(request(t, 5, &kluisproto.UnlockRequest{Channel: 0, DurationMS: 500, ID: 9})))
	if nak, ok := r[0].(*kluisproto.Nak); !ok || nak.Code != kluisproto.CodeBusy {
		t.Fatalf("hatch unlock while moving: %v", r)
	}
	clk.Advance(3 * time.Second)
	if got := k.Handle(unhex(t, "A5 05 09 00 67 91")); !bytes.Equal(got, unhex(t, "A5 05 89 03 12 11 00 71 80")) {
		t.Fatalf("hatch at slot 17: % X", got)
	}
	ev := parseReplies(t, k.Handle(request(t, 5, &kluisproto.EventsRequest{})))[0].(*kluisproto.EventsReply)
	lastEv := ev.Events[len(ev.Events)-1]
	if lastEv.Kind != kluisproto.EvSlotPresented || lastEv.Arg != 17 {
		t.Fatalf("events %+v", ev.Events)
	}
	// the slot already at the hatch: presented at once, nothing moves
	parseReplies(t, k.Handle(request(t, 5, &kluisproto.PresentRequest{Slot: 17, ID: 0xA002})))
	ev = parseReplies(t, k.Handle(request(t, 5, &kluisproto.EventsRequest{})))[0].(*kluisproto.EventsReply)
	if e := ev.Events[len(ev.Events)-1]; e.Kind != kluisproto.EvSlotPresented || e.Arg != 17 {
		t.Fatalf("events %+v", ev.Events)
	}
	if h, _ := d.Hatch(5); h.Busy || h.Slot != 17 {
		t.Fatalf("hatch %+v", h)
	}
	_ = d.JamNext(5)
	parseReplies(t, k.Handle(request(t, 5, &kluisproto.PresentRequest{Slot: 3, ID: 10})))
	clk.Advance(4 * time.Second)
	if got := k.Handle(unhex(t, "A5 05 09 00 67 91")); !bytes.Equal(got, unhex(t, "A5 05 89 03 0A FF 01 7D E7")) {
		t.Fatalf("hatch jammed: % X", got)
	}
	r = parseReplies(t, k.Handle(request(t, 5, &kluisproto.PresentRequest{Slot: 4, ID: 11})))
	if nak, ok := r[0].(*kluisproto.Nak); !ok || nak.Code != kluisproto.CodeFault || nak.Arg != kluisproto.FaultJam {
		t.Fatalf("present jammed: %v", r)
	}
	if n := len(d.Presents()); n != 3 {
		t.Fatalf("presents %d, want 3 (the retry moved nothing)", n)
	}
	// a restart homes the mechanism: the fault clears
	_ = d.Reboot(5)
	if h, _ := d.Hatch(5); h.Fault || h.Busy {
		t.Fatalf("after reboot %+v", h)
	}
}

// The Kluis responder on a real pseudo-terminal, driven through the link.
func TestKluisOnPTY(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := New(Options{Boards: 2, Channels: 16})
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "tty")
	l, err := ServeSerial(ctx, d, SerialOptions{Protocol: ProtoKluis, Link: link})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := os.OpenFile(link, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// a cut-off frame, silence, then a whole one: the partial frame is
	// dropped after the inter-byte timeout and cannot swallow the request
	if _, err := f.Write(unhex(t, "A5 01 03 07 04")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := f.Write(request(t, 1, &kluisproto.UnlockRequest{Channel: 5, DurationMS: 300, ID: 77})); err != nil {
		t.Fatal(err)
	}
	rd := kluisproto.NewReader(f)
	_ = f.SetReadDeadline(time.Now().Add(10 * time.Second))
	fr, err := rd.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	m, err := kluisproto.ParseReply(fr)
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := m.(*kluisproto.UnlockReply); !ok || u.Channel != 5 || u.ID != 77 || fr.Addr != 1 {
		t.Fatalf("reply %v", m)
	}
	if ps := d.Pulses(); len(ps) != 1 || ps[0].Board != 1 || ps[0].Channel != 5 {
		t.Fatalf("pulses %+v", ps)
	}
}

func TestKluisOverflowFlagUntilAck(t *testing.T) {
	d, k, _ := newKluisBoard(t, Options{Channels: 2})
	for i := 0; i < QueueCapacity; i++ { // 2 events per round
		_ = d.Force(0, 1)
		_ = d.Close(0, 1)
	}
	events := func() *kluisproto.EventsReply {
		return parseReplies(t, k.Handle(request(t, 0, &kluisproto.EventsRequest{})))[0].(*kluisproto.EventsReply)
	}
	ev := events()
	if ev.Flags&kluisproto.EvFlagOverflow == 0 || ev.Pending != QueueCapacity || len(ev.Events) != 8 {
		t.Fatalf("first reply %+v", ev)
	}
	// the reply was "lost": the next one still shows the flag
	if ev = events(); ev.Flags&kluisproto.EvFlagOverflow == 0 {
		t.Fatal("overflow flag shown only once")
	}
	parseReplies(t, k.Handle(request(t, 0, &kluisproto.AckRequest{BootID: ev.BootID, Seq: ev.Events[7].Seq})))
	if ev = events(); ev.Flags&kluisproto.EvFlagOverflow != 0 || ev.Pending != QueueCapacity-8 {
		t.Fatalf("after the ack %+v", ev)
	}
}

// Delayed and dropped bytes on the pty: a request whose bytes all arrive
// (late) is answered; the line keeps working.
func TestLineDelaysOnPTY(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := New(Options{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetFaults(Faults{Line: LineFaults{Delay: 0.5, MaxDelay: 3 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	l, err := ServeSerial(ctx, d, SerialOptions{Protocol: ProtoKluis})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := os.OpenFile(l.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := kluisproto.NewReader(f)
	for i := 0; i < 5; i++ {
		if _, err := f.Write(request(t, 0, &kluisproto.StatusRequest{})); err != nil {
			t.Fatal(err)
		}
		_ = f.SetReadDeadline(time.Now().Add(10 * time.Second))
		fr, err := rd.ReadFrame()
		if err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
		if m, err := kluisproto.ParseReply(fr); err != nil {
			t.Fatal(err)
		} else if _, ok := m.(*kluisproto.StatusReply); !ok {
			t.Fatalf("reply %v", m)
		}
	}
}
