package kluisbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"kluis/controller/promtext"
	"kluis/controller/promtext/promtexttest"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
	"kluis/hardware/hardwaretest"
	"kluis/hardware/kluisproto"
)

// testTimeout is the tests' response timeout of one attempt. The emulator
// answers at once, but on a loaded machine (the race detector, other
// builds) its goroutine and the pty can take tens of milliseconds: with
// 60 ms three late answers in a row made a board offline, or a pulse fail,
// that nothing was wrong with. A board that really stays silent is still
// found within a second or so (three attempts).
const testTimeout = 300 * time.Millisecond

// eventWait bounds the wait for an event or a state that should come: it
// comes within milliseconds, and the bound only says how long a failure
// takes to be reported, so it is generous (a loaded machine).
const eventWait = 15 * time.Second

func newDriver(t *testing.T, e *emulator, o Options) (*Driver, *promtext.Registry) {
	t.Helper()
	reg := promtext.NewRegistry()
	o.Port = e.path
	o.Registry = reg
	if o.Timeout == 0 {
		o.Timeout = testTimeout
	}
	if o.PollInterval == 0 {
		o.PollInterval = 20 * time.Millisecond
	}
	if o.OfflineRetry == 0 {
		o.OfflineRetry = 100 * time.Millisecond
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, reg
}

func is(kind hardware.EventKind, board, ch int) func(hardware.Event) bool {
	return func(ev hardware.Event) bool {
		return ev.Kind == kind && ev.Addr.Board == board && ev.Addr.Channel == ch
	}
}

func TestDescribePulseEveryChannelAndStates(t *testing.T) {
	e := newEmulator(t, 1)
	e.addBoard(0, 24)
	e.addBoard(1, 48)
	e.addAutomaton(5, 40)
	d, _ := newDriver(t, e, Options{Boards: []int{0, 1, 5}})
	ctx := context.Background()

	info, err := d.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != "kluis" || len(info.Boards) != 3 || info.Boards[1].Channels != 48 || info.Boards[2].Slots != 40 ||
		info.Boards[0].Firmware != "1.2.0" || info.Boards[0].Protocol != 1 {
		t.Fatalf("info %+v", info)
	}
	c := info.Caps
	if !c.CommandIDs || !c.EventQueue || !c.DoorSensor || !c.ItemSensor || !c.TimedPulse || !c.RebootDetect || !c.Mechanism {
		t.Fatalf("caps %+v", c)
	}

	id := hardware.CommandID(1000)
	for _, b := range []struct{ addr, n int }{{0, 24}, {1, 48}} {
		for ch := 0; ch < b.n; ch++ {
			id++
			dur := 100 * time.Millisecond
			if b.addr == 1 && ch == 47 {
				dur = 10 * time.Second // still energised when States reads it
			}
			if err := d.Pulse(ctx, hardware.Address{Board: b.addr, Channel: ch}, dur, id); err != nil {
				t.Fatalf("pulse %d/%d: %v", b.addr, ch, err)
			}
		}
	}
	log := e.pulseLog()
	if len(log) != 72 {
		t.Fatalf("%d pulses", len(log))
	}
	states, err := d.States(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 24+48+1 {
		t.Fatalf("%d states", len(states))
	}
	if s := states[24+47]; s.Addr != (hardware.Address{Board: 1, Channel: 47}) || s.Locked {
		t.Fatalf("lock 48 of board 1 should read energised: %+v", s)
	}
	if err := d.Halt(); err != nil { // relock 1/47 rather than wait for it
		t.Fatal(err)
	}

	e.setDoor(1, 47, true)
	e.setItem(0, 3, true)
	testenv.MustPoll(t, 10*time.Second, "the pulses ended (every lock locked)", func(ctx context.Context) (bool, string, error) {
		if states, err = d.States(ctx); err != nil {
			t.Fatal(err)
		}
		for _, s := range states {
			if !s.Locked {
				return false, fmt.Sprintf("%+v", states), nil
			}
		}
		return true, "", nil
	})
	for _, s := range states {
		wantDoor := s.Addr == hardware.Address{Board: 1, Channel: 47}
		wantItem := s.Addr == hardware.Address{Board: 0, Channel: 3}
		if !s.Locked || s.DoorOpen != wantDoor || s.ItemPresent != wantItem {
			t.Fatalf("state %+v", s)
		}
	}
}

func TestPulseArguments(t *testing.T) {
	e := newEmulator(t, 2)
	e.addBoard(0, 24)
	d, _ := newDriver(t, e, Options{Boards: []int{0}})
	ctx := context.Background()
	// Before Describe the board itself refuses the channel.
	if err := d.Pulse(ctx, hardware.Address{Board: 0, Channel: 30}, time.Second, 1); !errors.Is(err, hardware.ErrOutOfRange) {
		t.Fatalf("channel 30 of 24: %v", err)
	}
	if _, err := d.Describe(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr hardware.Address
		dur  time.Duration
		id   hardware.CommandID
	}{
		{hardware.Address{Board: 0, Channel: 24}, time.Second, 2},
		{hardware.Address{Board: 3, Channel: 0}, time.Second, 3},
		{hardware.Address{Board: 0, Channel: 48}, time.Second, 4},
		{hardware.Address{Board: 0, Channel: 0}, 10 * time.Millisecond, 5},
		{hardware.Address{Board: 0, Channel: 0}, time.Minute, 6},
		{hardware.Address{Board: 0, Channel: 0}, time.Second, 0},
	} {
		if err := d.Pulse(ctx, c.addr, c.dur, c.id); !errors.Is(err, hardware.ErrOutOfRange) {
			t.Fatalf("%+v: %v", c, err)
		}
	}
	if n := len(e.pulseLog()); n != 0 {
		t.Fatalf("%d pulses", n)
	}
	// Duty cycle: the same lock again at once is refused with BUSY (the
	// emulator's lock stays energised 5 s and cools down 200 ms more).
	if err := d.Pulse(ctx, hardware.Address{Board: 0, Channel: 1}, 5*time.Second, 10); err != nil {
		t.Fatal(err)
	}
	if err := d.Pulse(ctx, hardware.Address{Board: 0, Channel: 1}, 100*time.Millisecond, 11); !errors.Is(err, hardware.ErrBusy) {
		t.Fatalf("second pulse: %v", err)
	}
	// The same id again is not a second pulse, even while cooling down.
	if err := d.Pulse(ctx, hardware.Address{Board: 0, Channel: 1}, 5*time.Second, 10); err != nil {
		t.Fatalf("repeat: %v", err)
	}
	if n := len(e.pulseLog()); n != 1 {
		t.Fatalf("%d pulses", n)
	}
	if _, err := d.Hatch(ctx, 0); !errors.Is(err, hardware.ErrUnsupported) {
		t.Fatalf("hatch of a lock board: %v", err)
	}
	if err := d.Present(ctx, 0, 1, 99); !errors.Is(err, hardware.ErrUnsupported) {
		t.Fatalf("present on a lock board: %v", err)
	}
}

func TestPulseRetriesSameIDWhenTheAnswerIsLost(t *testing.T) {
	e := newEmulator(t, 3)
	e.addBoard(0, 8)
	d, reg := newDriver(t, e, Options{Boards: []int{0}})
	e.with(func() { e.dropReplies = 1 })
	if err := d.Pulse(context.Background(), hardware.Address{Board: 0, Channel: 2}, 200*time.Millisecond, 77); err != nil {
		t.Fatal(err)
	}
	e.with(func() {
		if e.requests[77] != 2 {
			t.Errorf("UNLOCK 77 received %d times, want 2", e.requests[77])
		}
	})
	if log := e.pulseLog(); len(log) != 1 || log[0] != (pulseRec{0, 2, 77}) {
		t.Fatalf("pulses %+v", log)
	}
	if v := d.m.unlocks.WithLabelValues("repeat").Value(); v != 1 {
		t.Fatalf("repeat unlocks %v", v)
	}
	if v := d.m.retries.Value(); v != 1 {
		t.Fatalf("retries %v", v)
	}
	if n := promtexttest.Count(t, reg, "kluis_kluisbus_unlocks_total"); n == 0 {
		t.Fatalf("metrics: %d series", n)
	}
}

// A reply to an earlier UNLOCK that arrives late (after that exchange gave
// up), just before the answer to the next one, is skipped as unexpected:
// it is not taken for the next command's answer.
func TestLateUnlockReplyIsNotTakenForTheNextOne(t *testing.T) {
	e := newEmulator(t, 5)
	e.addBoard(0, 8)
	d, _ := newDriver(t, e, Options{Boards: []int{0}})
	late, err := kluisproto.EncodeMessage(0, &kluisproto.UnlockReply{Channel: 5, DurationMS: 200, ID: 76})
	if err != nil {
		t.Fatal(err)
	}
	once := false
	e.with(func() {
		e.prefix = func() []byte {
			if once {
				return nil
			}
			once = true
			return late
		}
	})
	if err := d.Pulse(context.Background(), hardware.Address{Board: 0, Channel: 6}, 200*time.Millisecond, 77); err != nil {
		t.Fatalf("pulse: %v", err)
	}
	if log := e.pulseLog(); len(log) != 1 || log[0] != (pulseRec{0, 6, 77}) {
		t.Fatalf("pulses %+v", log)
	}
	if n := d.FrameErrors()[ErrKindUnexpected]; n != 1 {
		t.Fatalf("unexpected frames %d, want the late reply counted once", n)
	}
}

func TestWatchDeliversAndAcknowledgesEvents(t *testing.T) {
	e := newEmulator(t, 4)
	e.addBoard(0, 24)
	e.addBoard(2, 16)
	d, _ := newDriver(t, e, Options{Boards: []int{0, 2}})
	w := hardwaretest.StartWatch(t, d)
	e.waitPolled(t, 0, 2)

	if err := d.Pulse(context.Background(), hardware.Address{Board: 2, Channel: 7}, 100*time.Millisecond, 5); err != nil {
		t.Fatal(err)
	}
	e.setDoor(2, 7, true)
	e.setItem(2, 7, false) // no change: no event
	e.setItem(2, 8, true)
	e.setDoor(2, 7, false)
	e.setDoor(0, 0, true)
	evs := w.WaitFor(t, eventWait,
		is(hardware.Unlocked, 2, 7), is(hardware.DoorOpened, 2, 7), is(hardware.ItemPlaced, 2, 8), is(hardware.DoorClosed, 2, 7))
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq != evs[i-1].Seq+1 {
			t.Fatalf("sequence numbers %+v", evs)
		}
	}
	w.WaitFor(t, eventWait, is(hardware.DoorOpened, 0, 0))
	testenv.EventuallyWithin(t, eventWait, "the events acknowledged", func() bool { return e.queued(0)+e.queued(2) == 0 })
	// Nothing twice.
	seen := map[string]bool{}
	for _, ev := range w.Events() {
		k := fmt.Sprintf("%s %v %d", ev.Kind, ev.Addr, ev.Seq)
		if seen[k] {
			t.Fatalf("delivered twice: %s", k)
		}
		seen[k] = true
	}
	// A second Watch at the same time is refused.
	if err := d.Watch(context.Background(), func(hardware.Event) error { return nil }); !errors.Is(err, hardware.ErrBusy) {
		t.Fatalf("second watch: %v", err)
	}
}

func TestWatchRedeliversWhenCallbackFails(t *testing.T) {
	e := newEmulator(t, 5)
	e.addBoard(0, 8)
	d, _ := newDriver(t, e, Options{Boards: []int{0}})
	ctx, cancelAll := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelAll()
	boom := errors.New("journal full")
	go func() {
		// Once Watch polls the board, the doors move.
		if _, err := testenv.Poll(ctx, 5*time.Second, "Watch polling board 0", func(context.Context) (bool, string, error) {
			return e.polled(0), "", nil
		}); err != nil {
			t.Error(err)
			return
		}
		e.setDoor(0, 1, true)
		e.setDoor(0, 1, false)
	}()
	var first []hardware.Event
	err := d.Watch(ctx, func(ev hardware.Event) error {
		first = append(first, ev)
		if ev.Kind == hardware.DoorClosed {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Watch returned %v", err)
	}
	if len(first) != 2 || first[0].Kind != hardware.DoorOpened || first[0].Seq != 1 {
		t.Fatalf("first watch saw %+v", first)
	}
	// The refused event is still queued on the board, the one before is not.
	if n := e.queued(0); n != 1 {
		t.Fatalf("%d events queued, want the refused one", n)
	}
	var got []hardware.Event
	ctx2, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err = d.Watch(ctx2, func(ev hardware.Event) error {
		got = append(got, ev)
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("second Watch: %v", err)
	}
	if len(got) != 1 || got[0].Kind != hardware.DoorClosed || got[0].Seq != 2 || got[0].Addr != (hardware.Address{Board: 0, Channel: 1}) {
		t.Fatalf("redelivered %+v", got)
	}
}

func TestBoardRebootIsReportedAndStateReRead(t *testing.T) {
	e := newEmulator(t, 6)
	e.addBoard(0, 24)
	e.addBoard(1, 24)
	d, reg := newDriver(t, e, Options{Boards: []int{0, 1}})
	w := hardwaretest.StartWatch(t, d)
	e.setDoor(0, 5, true)
	w.WaitFor(t, eventWait, is(hardware.DoorOpened, 0, 5))
	var sets int
	e.with(func() { sets = e.boards[0].watchdogSets })
	if sets != 1 {
		t.Fatalf("watchdog set %d times", sets)
	}

	// The door closes and an item goes in, and the board restarts before
	// the master read those events: they are lost with its queue.
	e.with(func() {
		b := e.boards[0]
		b.door = b.door.Set(5, false)
		b.queue.Push(kluisproto.EvDoorClosed, 5, 0)
		b.item = b.item.Set(9, true)
		b.queue.Push(kluisproto.EvItemPlaced, 9, 0)
		e.rebootLocked(0)
	})
	e.setDoor(0, 6, true) // after the restart: a real event of the new boot
	w.WaitFor(t, eventWait, is(hardware.BoardRebooted, 0, -1), is(hardware.DoorClosed, 0, 5), is(hardware.ItemPlaced, 0, 9))
	w.WaitFor(t, eventWait, is(hardware.DoorOpened, 0, 6))
	e.with(func() { sets = e.boards[0].watchdogSets })
	if sets != 2 {
		t.Fatalf("watchdog set %d times after the reboot", sets)
	}
	n := 0
	for _, ev := range w.Events() {
		if ev.Kind == hardware.DoorOpened && ev.Addr.Channel == 6 {
			n++
		}
		if ev.Kind == hardware.BoardRebooted && ev.Addr.Board != 0 {
			t.Fatalf("%+v", ev)
		}
	}
	if n != 1 {
		t.Fatalf("door 6 opened reported %d times", n)
	}
	if v := d.m.reboots.Value(); v != 1 {
		t.Fatalf("reboots metric %v", v)
	}
	_ = reg
}

// A watchdog relock is reported (not only logged): the engine reports it to
// the backend and counts it.
func TestBoardWatchdogRelockIsReported(t *testing.T) {
	e := newEmulator(t, 8)
	e.addBoard(0, 24)
	d, _ := newDriver(t, e, Options{Boards: []int{0}})
	w := hardwaretest.StartWatch(t, d)
	e.setDoor(0, 1, true)
	w.WaitFor(t, eventWait, is(hardware.DoorOpened, 0, 1))
	e.with(func() { e.boards[0].queue.Push(kluisproto.EvWatchdog, kluisproto.ChannelNone, 0) })
	evs := w.WaitFor(t, eventWait, is(hardware.BoardWatchdog, 0, -1))
	if evs[0].Detail == "" || evs[0].Seq == 0 {
		t.Fatalf("%+v", evs[0])
	}
	testenv.EventuallyWithin(t, eventWait, "the watchdog event acknowledged", func() bool { return e.queued(0) == 0 })
}

// A board whose firmware sends events of a kind this driver does not know
// (newer firmware, or a bug) on every poll: each is skipped and
// acknowledged, and the log gets one line for the lot within the minute.
func TestUnknownEventKindsAreLoggedBounded(t *testing.T) {
	e := newEmulator(t, 8)
	e.addBoard(0, 24)
	var logs testenv.SyncBuffer
	now := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	d, _ := newDriver(t, e, Options{Boards: []int{0}, Clock: func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	w := hardwaretest.StartWatch(t, d)
	const n = 12
	for i := 0; i < n; i++ {
		e.with(func() { e.boards[0].queue.Push(kluisproto.EventKind(0xEE), 1, 0) })
		testenv.EventuallyWithin(t, eventWait, "the unknown event acknowledged", func() bool { return e.queued(0) == 0 })
	}
	// A known event after them is still delivered.
	e.setDoor(0, 1, true)
	w.WaitFor(t, eventWait, is(hardware.DoorOpened, 0, 1))
	if got := strings.Count(logs.String(), `msg="unknown event kind skipped"`); got != 1 {
		t.Fatalf("%d lines for %d unknown events within a minute, want 1:\n%s", got, n, logs.String())
	}
}

func TestBoardOfflineAndOnline(t *testing.T) {
	e := newEmulator(t, 7)
	e.addBoard(0, 8)
	e.addBoard(1, 8)
	d, _ := newDriver(t, e, Options{Boards: []int{0, 1}, Retries: 1})
	w := hardwaretest.StartWatch(t, d)
	e.waitPolled(t, 0, 1)
	e.setSilent(1, true)
	w.WaitFor(t, eventWait, is(hardware.BoardOffline, 1, -1))
	// Board 0 keeps working meanwhile.
	e.setDoor(0, 2, true)
	w.WaitFor(t, eventWait, is(hardware.DoorOpened, 0, 2))
	if err := d.Pulse(context.Background(), hardware.Address{Board: 1, Channel: 0}, time.Second, 9); !errors.Is(err, hardware.ErrTimeout) {
		t.Fatalf("pulse to a silent board: %v", err)
	}
	e.setDoor(1, 3, true) // queued on the board while offline
	e.setSilent(1, false)
	w.WaitFor(t, eventWait, is(hardware.BoardOnline, 1, -1), is(hardware.DoorOpened, 1, 3))
	offline := 0
	for _, ev := range w.Events() {
		if ev.Kind == hardware.BoardOffline {
			offline++
		}
	}
	if offline != 1 {
		t.Fatalf("BoardOffline reported %d times", offline)
	}
}

// A board that answers every request late, as a simulator starved of the
// CPU on a loaded machine does, is reported offline by a driver whose
// response timeout is shorter than the lag: with the production default
// (200 ms, three attempts) a 1.5 s lag is an outage (the systemtest flake
// of TestDatabaseFailover: three EVENTS polls unanswered, the kiosk out of
// order). With a longer timeout (kluisd's hardware.serial.timeout) every
// late answer is taken and the board stays online; the same driver still
// reports a board that really goes silent.
func TestResponseTimeoutAgainstALateBoard(t *testing.T) {
	// Longer than the default's three attempts (about 620 ms) by far: a
	// late answer that lands inside the third attempt is taken as its
	// answer (an EVENTS request carries no id), so a shorter lag would
	// make the default's outcome depend on the machine's load.
	const lag = 1500 * time.Millisecond
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		offline bool
	}{
		{"default 200ms", 200 * time.Millisecond, true},
		{"3s", 3 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEmulator(t, 23)
			e.addBoard(0, 8)
			d, _ := newDriver(t, e, Options{Boards: []int{0}, Timeout: tc.timeout})
			w := hardwaretest.StartWatch(t, d)
			e.waitPolled(t, 0)
			e.setLag(lag)
			if tc.offline {
				w.WaitFor(t, 10*time.Second, is(hardware.BoardOffline, 0, -1))
				e.setLag(0)
				return
			}
			// Three exchanges answered late, then a door event after them:
			// an offline report would have come before it.
			testenv.EventuallyWithin(t, 20*time.Second, "three late replies", func() bool { return e.laggedReplies() >= 3 })
			e.setLag(0)
			e.setDoor(0, 2, true)
			w.WaitFor(t, 10*time.Second, is(hardware.DoorOpened, 0, 2))
			if n := w.Count(hardware.BoardOffline, boardAddr(0)); n != 0 {
				t.Fatalf("a board answering within the timeout reported offline %d times: %v", n, w.Events())
			}
			e.setSilent(0, true)
			w.WaitFor(t, 3*tc.timeout+5*time.Second, is(hardware.BoardOffline, 0, -1))
		})
	}
}

// An offline board is tried again when the driver's clock says
// OfflineRetry has passed, not the wall clock: with the clock standing
// still Watch leaves the board alone round after round, however long
// real time goes on.
func TestOfflineRetryFollowsTheClock(t *testing.T) {
	e := newEmulator(t, 17)
	e.addBoard(0, 8)
	e.addBoard(1, 8)
	var mu sync.Mutex
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	d, _ := newDriver(t, e, Options{Boards: []int{0, 1}, Retries: -1, OfflineRetry: time.Hour, Clock: clock})
	e.setSilent(1, true)
	w := hardwaretest.StartWatch(t, d)
	w.WaitFor(t, eventWait, is(hardware.BoardOffline, 1, -1))
	e.setSilent(1, false)
	asked := e.framesTo(1)
	// Two door events on board 0 seen one after the other: Watch went
	// at least once through a whole round (board 1 included) meanwhile.
	e.setDoor(0, 2, true)
	w.WaitFor(t, eventWait, is(hardware.DoorOpened, 0, 2))
	e.setDoor(0, 2, false)
	w.WaitFor(t, eventWait, is(hardware.DoorClosed, 0, 2))
	if got := e.framesTo(1); got != asked {
		t.Fatalf("board 1 asked %d times before its retry time", got-asked)
	}
	for _, ev := range w.Events() {
		if ev.Kind == hardware.BoardOnline && ev.Addr.Board == 1 {
			t.Fatalf("board 1 online before its retry time: %+v", ev)
		}
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	w.WaitFor(t, eventWait, is(hardware.BoardOnline, 1, -1))
}

func TestResyncAfterGarbageAndBrokenFrames(t *testing.T) {
	e := newEmulator(t, 8)
	e.addBoard(0, 24)
	e.addBoard(1, 24)
	d, reg := newDriver(t, e, Options{Boards: []int{0, 1}})
	ctx := context.Background()

	wrongAddr, _ := kluisproto.EncodeMessage(7, &kluisproto.RelockAllReply{})
	status, _ := kluisproto.EncodeMessage(0, &kluisproto.StatusReply{Channels: 1})
	prefixes := [][]byte{
		{0x00, 0xFF, 0x13, 0x37},         // garbage
		{kluisproto.SOF, 0x00, 0x82, 99}, // oversized length
		status[:9],                       // truncated frame
		wrongAddr,                        // a valid frame from another address
		append(append([]byte{0x55}, status[:len(status)-1]...), status[len(status)-1]^0xFF), // bad CRC
	}
	i := 0
	e.with(func() {
		e.prefix = func() []byte {
			i++
			return prefixes[i%len(prefixes)]
		}
	})
	for round := 0; round < 10; round++ {
		if _, err := d.States(ctx); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := d.Pulse(ctx, hardware.Address{Board: round % 2, Channel: round}, 100*time.Millisecond, hardware.CommandID(500+round)); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	if n := len(e.pulseLog()); n != 10 {
		t.Fatalf("%d pulses", n)
	}
	fe := d.FrameErrors()
	for _, k := range []string{ErrKindGarbage, ErrKindOversize, ErrKindTruncated, ErrKindWrongAddress, ErrKindBadCRC} {
		if fe[k] == 0 {
			t.Errorf("no %s counted: %v", k, fe)
		}
		if v := d.m.frameErrors.WithLabelValues(k).Value(); v != float64(fe[k]) {
			t.Errorf("metric %s = %v, FrameErrors %d", k, v, fe[k])
		}
	}
	if n := promtexttest.Count(t, reg, "kluis_kluisbus_frame_errors_total"); n == 0 {
		t.Fatalf("metrics: %d series", n)
	}
}

// pulseRetrying pulses board b's channel ch, retrying after a timeout with
// the same id, as hardware.Driver asks of its caller.
func pulseRetrying(t *testing.T, d *Driver, b, ch int, dur time.Duration, id uint32) {
	t.Helper()
	var err error
	for try := 0; try < 10; try++ {
		if err = d.Pulse(context.Background(), hardware.Address{Board: b, Channel: ch}, dur, hardware.CommandID(id)); err == nil || !errors.Is(err, hardware.ErrTimeout) {
			break
		}
	}
	if err != nil {
		t.Fatalf("pulse %d/%d: %v", b, ch, err)
	}
}

// TestNoisyLine corrupts 1% of the bytes either way: every lock is pulsed
// exactly once, none that was not asked for, and events still arrive.
func TestNoisyLine(t *testing.T) {
	e := newEmulator(t, 42)
	e.addBoard(0, 24)
	e.addBoard(1, 24)
	e.with(func() { e.corrupt = 0.01 })
	d, _ := newDriver(t, e, Options{Boards: []int{0, 1}, Retries: 3})
	w := hardwaretest.StartWatch(t, d)

	asked := map[uint32]pulseRec{}
	id := uint32(7000)
	for b := 0; b < 2; b++ {
		for ch := 0; ch < 24; ch++ {
			id++
			asked[id] = pulseRec{byte(b), byte(ch), id}
			pulseRetrying(t, d, b, ch, 100*time.Millisecond, id)
			if ch%6 == 0 {
				e.setDoor(byte(b), ch, true)
			}
		}
	}
	log := e.pulseLog()
	seen := map[uint32]bool{}
	perChannel := map[[2]byte]int{}
	for _, p := range log {
		want, ok := asked[p.id]
		if !ok || want != p {
			t.Fatalf("pulse nobody asked for: %+v", p)
		}
		if seen[p.id] {
			t.Fatalf("id %d pulsed twice", p.id)
		}
		seen[p.id] = true
		perChannel[[2]byte{p.board, p.ch}]++
	}
	if len(log) != 48 || len(perChannel) != 48 {
		t.Fatalf("%d pulses on %d channels", len(log), len(perChannel))
	}
	var want []func(hardware.Event) bool
	for b := 0; b < 2; b++ {
		for ch := 0; ch < 24; ch += 6 {
			want = append(want, is(hardware.DoorOpened, b, ch))
		}
	}
	w.WaitFor(t, 10*time.Second, want[:4]...)
	w.WaitFor(t, 10*time.Second, want[4:]...)
	fe := d.FrameErrors()
	total := uint64(0)
	for _, v := range fe {
		total += v
	}
	if total == 0 {
		t.Fatal("1% noise and no frame error counted")
	}
	t.Logf("frame errors %v, retries %v", fe, d.m.retries.Value())
}

func TestMechanism(t *testing.T) {
	e := newEmulator(t, 9)
	e.addAutomaton(5, 40)
	d, _ := newDriver(t, e, Options{Boards: []int{5}})
	ctx := context.Background()
	if _, err := d.Describe(ctx); err != nil {
		t.Fatal(err)
	}
	w := hardwaretest.StartWatch(t, d)
	// Describe before Watch: Watch still sets the watchdog.
	testenv.EventuallyWithin(t, 5*time.Second, "the watchdog set", func() bool {
		sets := 0
		e.with(func() { sets = e.boards[5].watchdogSets })
		return sets > 0
	})
	hs, err := d.Hatch(ctx, 5)
	if err != nil || hs.Slot != -1 || !hs.Locked || hs.Busy {
		t.Fatalf("hatch %+v %v", hs, err)
	}
	if err := d.Present(ctx, 5, 17, 0xA001); err != nil {
		t.Fatal(err)
	}
	if err := d.Present(ctx, 5, 17, 0xA001); err != nil { // a retry by the caller
		t.Fatal(err)
	}
	if err := d.Present(ctx, 5, 40, 0xA002); !errors.Is(err, hardware.ErrOutOfRange) {
		t.Fatalf("slot 40 of 40: %v", err)
	}
	evs := w.WaitFor(t, eventWait, is(hardware.SlotPresented, 5, -1))
	if evs[0].Slot != 17 {
		t.Fatalf("%+v", evs[0])
	}
	e.with(func() {
		if e.boards[5].moves != 1 {
			t.Errorf("carousel moved %d times", e.boards[5].moves)
		}
	})
	hs, err = d.Hatch(ctx, 5)
	if err != nil || hs.Slot != 17 || hs.Busy {
		t.Fatalf("hatch %+v %v", hs, err)
	}
	// The hatch is channel 0.
	if err := d.Pulse(ctx, hardware.Address{Board: 5, Channel: 0}, 500*time.Millisecond, 0xB001); err != nil {
		t.Fatal(err)
	}
	e.setDoor(5, 0, true)
	w.WaitFor(t, eventWait, is(hardware.HatchOpened, 5, 0))
	e.with(func() { e.boards[5].fault = kluisproto.FaultJam })
	e.setDoor(5, 0, false)
	if err := d.Present(ctx, 5, 3, 0xA003); !errors.Is(err, hardware.ErrFault) {
		t.Fatalf("present while faulted: %v", err)
	}
	e.with(func() {
		e.boards[5].queue.Push(kluisproto.EvMechanismFault, kluisproto.ChannelNone, kluisproto.FaultJam)
	})
	evs = w.WaitFor(t, eventWait, is(hardware.HatchClosed, 5, 0), is(hardware.MechanismFault, 5, -1))
	if evs[1].Detail != "mechanism fault: jam" {
		t.Fatalf("%+v", evs[1])
	}
}

func TestHaltAndClose(t *testing.T) {
	e := newEmulator(t, 10)
	e.addBoard(0, 8)
	e.addBoard(3, 8)
	d, _ := newDriver(t, e, Options{Boards: []int{0, 3}})
	ctx := context.Background()
	if err := d.Pulse(ctx, hardware.Address{Board: 3, Channel: 1}, 5*time.Second, 1); err != nil {
		t.Fatal(err)
	}
	watchDone := make(chan error, 1)
	go func() { watchDone <- d.Watch(ctx, func(hardware.Event) error { return nil }) }()
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	e.with(func() {
		for _, a := range []byte{0, 3} {
			if e.boards[a].relocks != 1 {
				t.Errorf("board %d relocked %d times", a, e.boards[a].relocks)
			}
		}
		if !e.boards[3].locked.Get(1) {
			t.Error("lock still energised after Halt")
		}
	})
	if err := d.Pulse(ctx, hardware.Address{Board: 0, Channel: 1}, time.Second, 2); !errors.Is(err, hardware.ErrHalted) {
		t.Fatalf("pulse after halt: %v", err)
	}
	if _, err := d.States(ctx); err != nil {
		t.Fatalf("states after halt: %v", err)
	}
	if err := d.Halt(); err != nil { // twice is fine
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-watchDone:
		if !errors.Is(err, hardware.ErrHalted) {
			t.Fatalf("Watch after Close: %v", err)
		}
	case <-time.After(eventWait):
		t.Fatal("Watch did not end after Close")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.States(ctx); !errors.Is(err, hardware.ErrHalted) {
		t.Fatalf("states after close: %v", err)
	}
}

// Close relocks again unless every board acknowledged a relock with no
// frame on the line since (kluisd's start-up: Halt, then Close): a frame
// after the halt, a board that did not answer it, or no halt at all make
// Close relock.
func TestCloseRelocksUnlessJustHalted(t *testing.T) {
	ctx := context.Background()
	relocks := func(e *emulator, a byte) (n int) {
		e.with(func() { n = e.boards[a].relocks })
		return n
	}
	e := newEmulator(t, 11)
	e.addBoard(0, 8)
	e.addBoard(3, 8)

	// Halted, nothing since: Close closes without a second relock.
	d, _ := newDriver(t, e, Options{Boards: []int{0, 3}})
	if err := d.Pulse(ctx, hardware.Address{Board: 3, Channel: 1}, 5*time.Second, 1); err != nil {
		t.Fatal(err)
	}
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if relocks(e, 0) != 1 || relocks(e, 3) != 1 {
		t.Fatalf("relocks after Halt and Close: %d, %d; want 1, 1", relocks(e, 0), relocks(e, 3))
	}
	e.with(func() {
		if !e.boards[3].locked.Get(1) {
			t.Error("lock still energised after Halt and Close")
		}
	})

	// A frame after the halt (a status read): Close relocks again.
	d, _ = newDriver(t, e, Options{Boards: []int{0, 3}})
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.States(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if relocks(e, 0) != 3 || relocks(e, 3) != 3 {
		t.Fatalf("relocks with a frame between Halt and Close: %d, %d; want 3, 3", relocks(e, 0), relocks(e, 3))
	}

	// No halt before: Close relocks (and a pulse under way ends).
	d, _ = newDriver(t, e, Options{Boards: []int{0, 3}})
	if err := d.Pulse(ctx, hardware.Address{Board: 0, Channel: 2}, 5*time.Second, 2); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if relocks(e, 0) != 4 || relocks(e, 3) != 4 {
		t.Fatalf("relocks by Close alone: %d, %d; want 4, 4", relocks(e, 0), relocks(e, 3))
	}
	e.with(func() {
		if !e.boards[0].locked.Get(2) {
			t.Error("lock still energised after Close")
		}
	})

	// A board that did not answer the halt: Close relocks the bus again.
	d, _ = newDriver(t, e, Options{Boards: []int{0, 3, 5}})
	if err := d.Halt(); err == nil {
		t.Fatal("Halt with board 5 missing: no error")
	}
	if err := d.Close(); err == nil {
		t.Fatal("Close with board 5 missing: no error")
	}
	if relocks(e, 0) != 6 || relocks(e, 3) != 6 {
		t.Fatalf("relocks with a board missing: %d, %d; want 6, 6", relocks(e, 0), relocks(e, 3))
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("no port accepted")
	}
	if _, err := New(Options{Port: "/dev/null", Boards: []int{32}}); !errors.Is(err, hardware.ErrOutOfRange) {
		t.Fatalf("board 32: %v", err)
	}
	if _, err := New(Options{Port: "/dev/null", Boards: []int{1, 1}}); err == nil {
		t.Fatal("board twice accepted")
	}
	d, err := Open("/nonexistent/tty", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.States(context.Background()); err == nil {
		t.Fatal("states from a missing port")
	}
}

// A flood of unsolicited frames on the line while the driver works (a
// misbehaving board, a second master): status replies "every door open"
// from an address the driver does not drive, the same with a broken CRC
// from a board it drives, unlock replies from that board for ids never
// sent, and garbage, written without pause. Every exchange still takes
// its own board's answer or times out (no call hangs), the one pulse
// asked for is the one carried out, and no door is reported open: the
// doors are all shut (docs/security.md, "The device-facing side,
// probed").
func TestFloodOfUnsolicitedFrames(t *testing.T) {
	e := newEmulator(t, 11)
	e.addBoard(0, 24)
	d, _ := newDriver(t, e, Options{Boards: []int{0}, Retries: 3})
	w := hardwaretest.StartWatch(t, d)
	ctx := context.Background()

	allOpen := kluisproto.Bitmap(1<<24 - 1)
	foreign, _ := kluisproto.EncodeMessage(7, &kluisproto.StatusReply{BootID: 1, Channels: 24, DoorOpen: allOpen})
	forged, _ := kluisproto.EncodeMessage(0, &kluisproto.StatusReply{BootID: 1, Channels: 24, DoorOpen: allOpen})
	forged[len(forged)-1] ^= 0xFF // bad CRC
	stray, _ := kluisproto.EncodeMessage(0, &kluisproto.UnlockReply{Channel: 5, DurationMS: 100, ID: 999_999})
	flood := [][]byte{foreign, forged, stray, {0x00, 0xFF, kluisproto.SOF, 0x13}}
	quiet := hardwaretest.Flood(t, e.master, flood)

	hardwaretest.StatesShut(t, d, 200)
	var err error
	for try := 0; try < 10; try++ { // the caller's own retries keep the id
		if err = d.Pulse(ctx, hardware.Address{Board: 0, Channel: 3}, 100*time.Millisecond, hardware.CommandID(4242)); err == nil || !errors.Is(err, hardware.ErrTimeout) {
			break
		}
	}
	if err != nil {
		t.Fatalf("pulse under the flood: %v", err)
	}
	if log := e.pulseLog(); len(log) != 1 || log[0] != (pulseRec{0, 3, 4242}) {
		t.Fatalf("pulses %+v, want the one asked for", log)
	}
	quiet()
	e.waitPolled(t, 0)
	for _, ev := range w.Events() {
		if ev.Kind == hardware.DoorOpened {
			t.Fatalf("door reported open: %+v", ev)
		}
	}
	fe := d.FrameErrors()
	for _, k := range []string{ErrKindWrongAddress, ErrKindBadCRC, ErrKindGarbage} {
		if fe[k] == 0 {
			t.Errorf("no %s counted under the flood: %v", k, fe)
		}
	}
}

// A board whose firmware answers every request with a malformed NAK
// before the real reply: every malformed frame is counted, and the log
// gets the first one, then nothing more within the minute, then one
// summary (with the count left out) and one line once the minute is over.
func TestMalformedRepliesAreCountedButLoggedBounded(t *testing.T) {
	e := newEmulator(t, 12)
	e.addBoard(0, 24)
	bad, err := kluisproto.Frame{Addr: 0, Cmd: kluisproto.CmdNak, Payload: []byte{1}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	e.mu.Lock()
	e.prefix = func() []byte { sent++; return bad } // e.mu held
	e.mu.Unlock()
	var logs testenv.SyncBuffer
	var clockMu sync.Mutex
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	d, _ := newDriver(t, e, Options{Boards: []int{0}, Timeout: 2 * time.Second, Clock: clock,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()
	const n = 40
	for i := 0; i < n; i++ {
		if _, err := d.States(ctx); err != nil {
			t.Fatalf("states %d: %v", i, err)
		}
	}
	lines := func(sub string) int { return strings.Count(logs.String(), sub) }
	e.mu.Lock()
	first := sent
	e.mu.Unlock()
	if got := d.FrameErrors()[ErrKindMalformed]; got != uint64(first) || first < n {
		t.Fatalf("malformed counted %d, sent %d (at least %d)", got, first, n)
	}
	if got := lines(`msg="malformed reply"`); got != 1 {
		t.Fatalf("%d malformed reply lines within a minute, want 1:\n%s", got, logs.String())
	}
	clockMu.Lock()
	now = now.Add(badReplyLogWindow)
	clockMu.Unlock()
	if _, err := d.States(ctx); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	total := sent
	e.mu.Unlock()
	if got := d.FrameErrors()[ErrKindMalformed]; got != uint64(total) {
		t.Fatalf("malformed counted %d, sent %d", got, total)
	}
	if got := lines(`msg="malformed reply"`); got != 2 || lines(`more of the same not logged`) != 1 {
		t.Fatalf("%d malformed reply lines, want 2:\n%s", got, logs.String())
	}
	if got := lines(fmt.Sprintf(`what="malformed reply" count=%d `, first-1)); got != 1 {
		t.Fatalf("no summary of the %d left out:\n%s", first-1, logs.String())
	}
}
