package simulator

import (
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"kluis/hardware"
)

func newLocker(t *testing.T, o Options) *Device {
	t.Helper()
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type recorder struct {
	mu sync.Mutex
	cs []Change
}

func (r *recorder) add(c Change) { r.mu.Lock(); r.cs = append(r.cs, c); r.mu.Unlock() }
func (r *recorder) kinds() []hardware.EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []hardware.EventKind
	for _, c := range r.cs {
		out = append(out, c.Kind)
	}
	return out
}

func TestPulseOpensDoorAndRelocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newLocker(t, Options{Channels: 4})
		var rec recorder
		d.Subscribe(rec.add)
		if err := d.Load(0, 2, 0, "ID card A"); err != nil {
			t.Fatal(err)
		}
		if err := d.Pulse(PulseRequest{Board: 0, Channel: 2, Duration: 500 * time.Millisecond, CommandID: 7, Via: "api"}); err != nil {
			t.Fatal(err)
		}
		ch, _ := d.Channel(0, 2)
		if !ch.Energised || ch.DoorOpen {
			t.Fatalf("right after the pulse: %+v, want energised and still shut", ch)
		}
		time.Sleep(100 * time.Millisecond)
		ch, _ = d.Channel(0, 2)
		if !ch.DoorOpen || !ch.Sensor.DoorOpen {
			t.Fatalf("after the mechanical delay the door should be open: %+v", ch)
		}
		time.Sleep(time.Second)
		ch, _ = d.Channel(0, 2)
		if ch.Energised || !ch.DoorOpen {
			t.Fatalf("after the pulse the lock relocks and the door stays open: %+v", ch)
		}
		// other doors untouched
		for c := 0; c < 4; c++ {
			if c == 2 {
				continue
			}
			if x, _ := d.Channel(0, c); x.DoorOpen {
				t.Fatalf("channel %d opened without a pulse", c)
			}
		}
		item, err := d.Take(0, 2)
		if err != nil || item != "ID card A" {
			t.Fatalf("take = %q, %v", item, err)
		}
		if _, err := d.Take(0, 2); !errors.Is(err, ErrEmpty) {
			t.Fatalf("second take: %v, want ErrEmpty", err)
		}
		if err := d.Close(0, 2); err != nil {
			t.Fatal(err)
		}
		ps := d.Pulses()
		if len(ps) != 1 || ps[0].Channel != 2 || ps[0].CommandID != 7 || ps[0].Duration != 500*time.Millisecond {
			t.Fatalf("pulses = %+v", ps)
		}
		want := []hardware.EventKind{hardware.ItemPlaced, hardware.Unlocked, hardware.DoorOpened, hardware.ItemRemoved, hardware.DoorClosed}
		got := rec.kinds()
		if len(got) != len(want) {
			t.Fatalf("changes %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("changes %v, want %v", got, want)
			}
		}
		q, _ := d.Queue(0)
		if len(q.Events) != 5 || q.Events[0].Seq != 1 || q.Events[4].Seq != 5 {
			t.Fatalf("queue %+v", q)
		}
		_ = d.Ack(0, 3)
		q, _ = d.Queue(0)
		if len(q.Events) != 2 || q.Events[0].Seq != 4 {
			t.Fatalf("queue after ack %+v", q)
		}
	})
}

func TestNoPulseNoOpenAndClosedDoorRefusesPeople(t *testing.T) {
	d := newLocker(t, Options{Channels: 2})
	_ = d.Load(0, 0, 0, "x")
	if _, err := d.Take(0, 0); !errors.Is(err, ErrDoorClosed) {
		t.Fatalf("take from a shut door: %v", err)
	}
	if err := d.Put(0, 1, "y"); !errors.Is(err, ErrDoorClosed) {
		t.Fatalf("put into a shut door: %v", err)
	}
	if _, err := d.Channel(0, 2); !errors.Is(err, ErrNoSuchChannel) {
		t.Fatalf("channel 2: %v", err)
	}
	if err := d.Pulse(PulseRequest{Board: 1, Channel: 0, Duration: time.Second}); !errors.Is(err, ErrNoSuchChannel) {
		t.Fatalf("pulse on a missing board: %v", err)
	}
	if err := d.Pulse(PulseRequest{Board: 0, Channel: 0, Duration: -1}); !errors.Is(err, ErrBadInput) {
		t.Fatalf("negative pulse: %v", err)
	}
	if n := len(d.Pulses()); n != 0 {
		t.Fatalf("%d pulses recorded from bad input", n)
	}
}

func TestShortPulseStuckLockAndCooldown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newLocker(t, Options{Channels: 3, Cooldown: 2 * time.Second})
		_ = d.Pulse(PulseRequest{Channel: 0, Duration: 10 * time.Millisecond})
		_ = d.SetStuck(0, 1, true)
		_ = d.Pulse(PulseRequest{Channel: 1, Duration: time.Second})
		time.Sleep(1500 * time.Millisecond)
		for c := 0; c < 2; c++ {
			if x, _ := d.Channel(0, c); x.DoorOpen {
				t.Fatalf("channel %d open: %+v", c, x)
			}
		}
		if err := d.Pulse(PulseRequest{Channel: 1, Duration: time.Second}); !errors.Is(err, hardware.ErrBusy) {
			t.Fatalf("pulse during cooldown: %v", err)
		}
		time.Sleep(2 * time.Second)
		_ = d.SetStuck(0, 1, false)
		if err := d.Pulse(PulseRequest{Channel: 1, Duration: time.Second}); err != nil {
			t.Fatalf("pulse after cooldown: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
		if x, _ := d.Channel(0, 1); !x.DoorOpen {
			t.Fatalf("unstuck lock did not open: %+v", x)
		}
		if n := len(d.Pulses()); n != 3 {
			t.Fatalf("pulses %d, want 3 (the refused one is not a pulse)", n)
		}
	})
}

func TestForceBrokenSensorAutoCloseLeaveOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newLocker(t, Options{Channels: 3, AutoClose: 5 * time.Second})
		var rec recorder
		d.Subscribe(rec.add)
		if err := d.Force(0, 0); err != nil {
			t.Fatal(err)
		}
		x, _ := d.Channel(0, 0)
		if !x.DoorOpen || x.Energised || len(d.Pulses()) != 0 {
			t.Fatalf("forced door: %+v", x)
		}
		_ = d.SetSensorBroken(0, 1, true)
		_ = d.Pulse(PulseRequest{Channel: 1, Duration: time.Second})
		_ = d.Pulse(PulseRequest{Channel: 2, Duration: time.Second})
		_ = d.LeaveOpen(0, 2)
		time.Sleep(time.Second)
		x, _ = d.Channel(0, 1)
		if !x.DoorOpen || x.Sensor.DoorOpen {
			t.Fatalf("broken sensor channel: %+v, want open door read as shut", x)
		}
		time.Sleep(10 * time.Second)
		if x, _ := d.Channel(0, 1); x.DoorOpen {
			t.Fatal("auto close did not close channel 1")
		}
		if x, _ := d.Channel(0, 2); !x.DoorOpen {
			t.Fatal("leave-open door was closed")
		}
		if x, _ := d.Channel(0, 0); !x.DoorOpen {
			t.Fatal("forced door should stay open: auto close follows pulses only")
		}
		for _, c := range rec.cs {
			if c.Channel == 1 && (c.Kind == hardware.DoorOpened || c.Kind == hardware.DoorClosed) {
				t.Fatalf("broken sensor produced %v", c)
			}
		}
	})
}

func TestCarouselWithManualClock(t *testing.T) {
	clk := NewManualClock(time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC))
	d := newLocker(t, Options{Kind: Automaton, Boards: 2, Slots: 10, MoveTime: 4 * time.Second, Clock: clk})
	var rec recorder
	d.Subscribe(rec.add)
	_ = d.Load(0, 0, 3, "licence B")
	if err := d.Present(0, 3, 11, "api"); err != nil {
		t.Fatal(err)
	}
	if err := d.Present(0, 4, 12, "api"); !errors.Is(err, hardware.ErrBusy) {
		t.Fatalf("present while moving: %v", err)
	}
	clk.Advance(3 * time.Second)
	h, _ := d.Hatch(0)
	if !h.Busy || h.Slot != -1 {
		t.Fatalf("after 3 of 4 seconds: %+v", h)
	}
	clk.Advance(time.Second)
	h, _ = d.Hatch(0)
	if h.Busy || h.Slot != 3 || !h.ItemAtHatch {
		t.Fatalf("after 4 seconds: %+v", h)
	}
	// open the hatch, take the item
	_ = d.Pulse(PulseRequest{Board: 0, Channel: 0, Duration: time.Second})
	clk.Advance(2 * time.Second)
	if err := d.Present(0, 1, 13, "api"); !errors.Is(err, hardware.ErrBusy) {
		t.Fatalf("present with the hatch open: %v", err)
	}
	item, err := d.Take(0, 0)
	if err != nil || item != "licence B" {
		t.Fatalf("take %q %v", item, err)
	}
	_ = d.Close(0, 0)
	_ = d.JamNext(0)
	_ = d.Present(0, 5, 14, "api")
	clk.Advance(5 * time.Second)
	h, _ = d.Hatch(0)
	if !h.Fault || h.Busy {
		t.Fatalf("jammed: %+v", h)
	}
	if err := d.Present(0, 5, 15, "api"); !errors.Is(err, hardware.ErrFault) {
		t.Fatalf("present while faulted: %v", err)
	}
	st := d.State()
	if st.Mechanisms[0].Slots[3] != "" {
		t.Fatal("taken item still in slot")
	}
	var presented, faulted int
	for _, c := range rec.cs {
		switch c.Kind {
		case hardware.SlotPresented:
			presented++
			if c.Slot != 3 {
				t.Fatalf("presented %+v", c)
			}
		case hardware.MechanismFault:
			faulted++
		}
	}
	if presented != 1 || faulted != 1 {
		t.Fatalf("presented %d faulted %d: %v", presented, faulted, rec.kinds())
	}
	if len(d.Presents()) != 2 {
		t.Fatalf("presents %+v", d.Presents())
	}
}

func TestRebootAndSeededFaultsReplay(t *testing.T) {
	d := newLocker(t, Options{Seed: 42})
	boot := d.State().Boards[0].BootID
	_ = d.Reboot(0)
	if d.State().Boards[0].BootID == boot {
		t.Fatal("boot id unchanged")
	}
	_ = d.Pulse(PulseRequest{Duration: time.Second})
	q, _ := d.Queue(0)
	if len(q.Events) != 1 || q.Events[0].Kind != hardware.Unlocked || q.Events[0].Seq != 1 {
		t.Fatalf("queue after reboot %+v, want only the new unlock, seq 1", q)
	}

	run := func() []byte {
		d := newLocker(t, Options{Seed: 7})
		if err := d.SetFaults(Faults{Line: LineFaults{Drop: 0.1, Corrupt: 0.1, Delay: 0.1}}); err != nil {
			t.Fatal(err)
		}
		var out []byte
		for i := 0; i < 2000; i++ {
			b, drop, delay := d.LineFault(ToBoard, byte(i))
			if drop {
				out = append(out, 0xEE, 0xEE)
				continue
			}
			out = append(out, b, byte(delay/time.Millisecond))
		}
		return out
	}
	a, b := run(), run()
	if string(a) != string(b) {
		t.Fatal("the same seed gave different faults")
	}
	var changed int
	for i := 0; i < 2000; i++ {
		if a[2*i] != byte(i) {
			changed++
		}
	}
	if changed < 200 || changed > 700 {
		t.Fatalf("%d of 2000 bytes dropped or corrupted, want about 20%%", changed)
	}
	if err := d.SetFaults(Faults{BusyProb: 2}); !errors.Is(err, ErrBadInput) {
		t.Fatalf("probability 2: %v", err)
	}
}

// stalledClock is a clock whose timers have not run yet: the state of a
// loaded machine where the goroutines of due timers wait for a CPU. fns
// holds the pending timer functions in the order they were set.
type stalledClock struct {
	mu  sync.Mutex
	now time.Time
	fns []func()
}

func (c *stalledClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *stalledClock) AfterFunc(_ time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, f)
	return func() bool { return false }
}
func (c *stalledClock) advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// A relock or the pulse's own end that runs before the spring's timer
// goroutine still finds the door sprung when the pulse lasted the
// mechanical delay (a loaded machine once left a door shut this way, and
// the system test's kill -9 waited for it in vain); a relock within the
// delay cuts the pulse and the door stays shut; a pulse springs its door
// once, whichever runs first.
func TestDoorSpringsByTheClockNotByTimerOrder(t *testing.T) {
	// pulsed returns a locker (mechanical delay 30 ms) whose lock b0/c1 is
	// in a 300 ms pulse, advanced by after with no timer run yet.
	pulsed := func(t *testing.T, after time.Duration) (*stalledClock, *Device) {
		t.Helper()
		clk := &stalledClock{now: time.Unix(0, 0)}
		d := newLocker(t, Options{Channels: 2, MechDelay: 30 * time.Millisecond, Clock: clk})
		if err := d.Pulse(PulseRequest{Board: 0, Channel: 1, Duration: 300 * time.Millisecond, CommandID: 1, Via: "api"}); err != nil {
			t.Fatal(err)
		}
		clk.advance(after)
		return clk, d
	}
	open := func(d *Device) bool { ch, _ := d.Channel(0, 1); return ch.DoorOpen }
	relock := func(t *testing.T, d *Device) {
		t.Helper()
		if err := d.RelockAll(0, false); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("relock after the delay", func(t *testing.T) {
		_, d := pulsed(t, 100*time.Millisecond)
		relock(t, d)
		if !open(d) {
			t.Fatal("door shut after a relock 100 ms into the pulse, want open (mechanical delay 30 ms)")
		}
	})
	t.Run("relock within the delay", func(t *testing.T) {
		clk, d := pulsed(t, 10*time.Millisecond)
		relock(t, d)
		for _, f := range clk.fns {
			f() // late timers of the cut pulse change nothing
		}
		if open(d) {
			t.Fatal("door open after a relock 10 ms into the pulse, want shut (mechanical delay 30 ms)")
		}
	})
	t.Run("pulse end before the spring's goroutine", func(t *testing.T) {
		clk, d := pulsed(t, 300*time.Millisecond)
		clk.fns[1]() // release
		if !open(d) {
			t.Fatal("door shut after a 300 ms pulse whose spring ran late, want open")
		}
	})
	t.Run("one spring per pulse", func(t *testing.T) {
		clk, d := pulsed(t, 50*time.Millisecond)
		clk.fns[0]() // spring
		if err := d.Close(0, 1); err != nil {
			t.Fatal(err)
		}
		clk.advance(250 * time.Millisecond)
		clk.fns[1]() // release
		if open(d) {
			t.Fatal("door closed during the pulse opened again at its end")
		}
	})
}
