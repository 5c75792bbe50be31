package kluisbus

import (
	"context"
	"testing"
	"time"

	"kluis/hardware"
	"kluis/hardware/hardwaretest"
	"kluis/hardware/kluisproto"
)

// TestReplayedAndStaleFrames: a third of the replies come after an earlier
// reply of any board, byte for byte (good CRC, old content, from before a
// board's reboot too): every lock is pulsed once, none that was not asked
// for, every door opening is delivered once, and no reboot is reported that
// did not happen.
func TestReplayedAndStaleFrames(t *testing.T) {
	e := newEmulator(t, 77)
	e.addBoard(0, 24)
	e.addBoard(1, 24)
	d, _ := newDriver(t, e, Options{Boards: []int{0, 1}, Retries: 3})
	w := hardwaretest.StartWatch(t, d)
	e.waitPolled(t, 0, 1)

	pulse := func(b, ch int, id uint32) { t.Helper(); pulseRetrying(t, d, b, ch, 60*time.Millisecond, id) }
	// A history to replay: pulses and doors, and a real reboot of board 1.
	id := uint32(9000)
	for ch := 0; ch < 4; ch++ {
		id++
		pulse(0, ch, id)
		id++
		pulse(1, ch, id)
	}
	e.setDoor(0, 20, true)
	w.WaitFor(t, eventWait, is(hardware.DoorOpened, 0, 20))
	e.setDoor(0, 20, false)
	w.WaitFor(t, eventWait, is(hardware.DoorClosed, 0, 20))
	e.reboot(1)
	w.WaitFor(t, eventWait, func(ev hardware.Event) bool { return ev.Kind == hardware.BoardRebooted && ev.Addr.Board == 1 })
	time.Sleep(200 * time.Millisecond)
	before := w.Count(hardware.BoardRebooted, hardware.Address{Board: 1, Channel: -1}) + w.Count(hardware.BoardRebooted, hardware.Address{Board: 0, Channel: -1})

	e.with(func() { e.replay = 0.33 })
	for ch := 4; ch < 16; ch++ {
		id++
		pulse(ch%2, ch, id)
		e.setDoor(byte(ch%2), ch, true)
		w.WaitFor(t, eventWait, is(hardware.DoorOpened, ch%2, ch))
		e.setDoor(byte(ch%2), ch, false)
		w.WaitFor(t, eventWait, is(hardware.DoorClosed, ch%2, ch))
	}
	time.Sleep(500 * time.Millisecond) // more polls under replay

	seen := map[uint32]bool{}
	for _, p := range e.pulseLog() {
		if seen[p.id] {
			t.Errorf("id %d pulsed twice", p.id)
		}
		seen[p.id] = true
	}
	if len(seen) != int(id-9000) {
		t.Errorf("%d ids pulsed, %d asked", len(seen), id-9000)
	}
	for ch := 4; ch < 16; ch++ {
		a := hardware.Address{Board: ch % 2, Channel: ch}
		if n := w.Count(hardware.DoorOpened, a); n != 1 {
			t.Errorf("door %v opened once, delivered %d times", a, n)
		}
		if n := w.Count(hardware.DoorClosed, a); n != 1 {
			t.Errorf("door %v closed once, delivered %d times", a, n)
		}
	}
	if n := w.Count(hardware.DoorOpened, hardware.Address{Board: 0, Channel: 20}); n != 1 {
		t.Errorf("door 0/20 opened once, delivered %d times", n)
	}
	after := w.Count(hardware.BoardRebooted, hardware.Address{Board: 1, Channel: -1}) + w.Count(hardware.BoardRebooted, hardware.Address{Board: 0, Channel: -1})
	if after != before {
		t.Errorf("%d reboots reported under replay, none happened", after-before)
	}
	t.Logf("frame errors %v", d.FrameErrors())
}

// TestOneFrameOfAnUnknownBootKeepsTheBoard: one good frame carrying a boot
// id the driver never saw (a frame from before kluisd started, or one a
// noisy line damaged with a CRC that still matches, 1 in 65,536) is taken
// for a reboot, as the driver cannot tell; the board's genuine replies
// that follow, in the boot id it really has, are then a reboot back, not
// replies from an earlier boot to skip until the board is given up for
// offline (every lock of it refused meanwhile).
func TestOneFrameOfAnUnknownBootKeepsTheBoard(t *testing.T) {
	e := newEmulator(t, 78)
	e.addBoard(0, 24)
	d, _ := newDriver(t, e, Options{Boards: []int{0}, Retries: 3})
	w := hardwaretest.StartWatch(t, d)
	e.waitPolled(t, 0)
	time.Sleep(100 * time.Millisecond)
	e.with(func() {
		bogus, err := kluisproto.EncodeMessage(0, &kluisproto.EventsReply{BootID: e.boards[0].boot + 1000})
		if err != nil {
			t.Fatal(err)
		}
		e.prefix = func() []byte {
			b := bogus
			bogus = nil
			return b
		}
	})
	w.WaitFor(t, eventWait, func(ev hardware.Event) bool { return ev.Kind == hardware.BoardRebooted && ev.Addr.Board == 0 })
	time.Sleep(time.Second) // polls in the board's real boot
	id := uint32(500)
	for ch := range 4 {
		id++
		if err := d.Pulse(context.Background(), hardware.Address{Board: 0, Channel: ch}, 60*time.Millisecond, hardware.CommandID(id)); err != nil {
			t.Errorf("pulse 0/%d: %v", ch, err)
		}
	}
	if n := w.Count(hardware.BoardOffline, hardware.Address{Board: 0, Channel: -1}); n != 0 {
		t.Errorf("board 0 given up for offline %d times after one frame of an unknown boot", n)
	}
	t.Logf("frame errors %v", d.FrameErrors())
}
