package kerong

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/promtext"
	"kluis/controller/promtext/promtexttest"
	"kluis/hardware"
	"kluis/hardware/hardwaretest"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func newDriver(t *testing.T, o Options) (*Driver, *promtext.Registry) {
	t.Helper()
	reg := promtext.NewRegistry()
	o.Registry = reg
	if !o.OpenBitSet {
		o.OpenBitClear = true // the emulator's polarity
	}
	if o.Timeout == 0 {
		o.Timeout = 500 * time.Millisecond
	}
	if o.PollInterval == 0 {
		o.PollInterval = 20 * time.Millisecond
	}
	d, err := New(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	return d, reg
}

func TestOpenEveryChannelAndReadStates(t *testing.T) {
	emu := newEmulator(t, 0, 3)
	d, reg := newDriver(t, Options{Port: emu.path(), Boards: []int{0, 3}})
	ctx := testCtx(t)

	info, err := d.Describe(ctx)
	require.NoError(t, err)
	assert.Equal(t, Kind, info.Kind)
	require.Len(t, info.Boards, 2)
	assert.False(t, info.Caps.CommandIDs)
	assert.False(t, info.Caps.EventQueue)
	assert.True(t, info.Caps.DoorSensor)

	st, err := d.States(ctx)
	require.NoError(t, err)
	require.Len(t, st, 32)
	for _, s := range st {
		assert.True(t, s.Locked, s.Addr.String())
		assert.False(t, s.DoorOpen, s.Addr.String())
	}

	for _, b := range []int{0, 3} {
		for c := 0; c < 16; c++ {
			require.NoError(t, d.Pulse(ctx, hardware.Address{Board: b, Channel: c}, time.Second, 0))
		}
	}
	for _, b := range []int{0, 3} {
		for c := 0; c < 16; c++ {
			assert.Equal(t, 1, emu.pulseCount(b, c))
		}
	}
	st, err = d.States(ctx)
	require.NoError(t, err)
	for _, s := range st {
		assert.True(t, s.DoorOpen, s.Addr.String())
		assert.False(t, s.Locked, s.Addr.String())
	}
	assert.Equal(t, 32.0, d.m.unlocks.WithLabelValues("ok").Value())
	_ = reg

	// Out of range or unknown boards are refused without a byte sent.
	require.ErrorIs(t, d.Pulse(ctx, hardware.Address{Board: 1, Channel: 0}, time.Second, 0), hardware.ErrOutOfRange)
	require.ErrorIs(t, d.Pulse(ctx, hardware.Address{Board: 0, Channel: 16}, time.Second, 0), hardware.ErrOutOfRange)
	require.ErrorIs(t, d.Pulse(ctx, hardware.Address{Board: 0, Channel: 1}, 0, 0), hardware.ErrOutOfRange)
	assert.Equal(t, 0, emu.pulseCount(1, 0))
	assert.Equal(t, 1, emu.pulseCount(0, 1))
}

func TestStatusFrameAnswersUnlock(t *testing.T) {
	emu := newEmulator(t, 2)
	emu.mu.Lock()
	emu.statusUnlockReply = true
	emu.mu.Unlock()
	d, _ := newDriver(t, Options{Port: emu.path(), Boards: []int{2}})
	ctx := testCtx(t)
	require.NoError(t, d.Pulse(ctx, hardware.Address{Board: 2, Channel: 7}, time.Second, 0))
	assert.Equal(t, 1, emu.pulseCount(2, 7))
}

func TestDoorAndItemEventsFromPolling(t *testing.T) {
	emu := newEmulator(t, 0, 1)
	d, _ := newDriver(t, Options{Port: emu.path(), Boards: []int{0, 1}})
	w := hardwaretest.StartWatch(t, d)
	a := hardware.Address{Board: 1, Channel: 9}

	// Let the first poll set the baseline.
	require.Eventually(t, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.last) == 2
	}, 15*time.Second, 10*time.Millisecond)

	emu.set(func(b map[int]*Status) { b[1].SetLockBit(9, false) })
	w.WaitEvent(t, hardware.DoorOpened, a)
	emu.set(func(b map[int]*Status) { b[1].SetIRBit(9, true) })
	w.WaitEvent(t, hardware.ItemPlaced, a)
	emu.set(func(b map[int]*Status) { b[1].SetLockBit(9, true); b[1].SetIRBit(9, false) })
	w.WaitEvent(t, hardware.DoorClosed, a)
	w.WaitEvent(t, hardware.ItemRemoved, a)

	// A pulse shows as Unlocked and then the door opening.
	u := hardware.Address{Board: 0, Channel: 4}
	require.NoError(t, d.Pulse(testCtx(t), u, time.Second, 0))
	w.WaitEvent(t, hardware.Unlocked, u)
	w.WaitEvent(t, hardware.DoorOpened, u)

	for _, ev := range w.Events() {
		assert.NotEqual(t, hardware.BoardOffline, ev.Kind)
		if ev.Addr != a && ev.Addr != u {
			t.Errorf("unexpected event %+v", ev)
		}
	}
}

func TestOpenBitPolarity(t *testing.T) {
	emu := newEmulator(t, 0)
	emu.set(func(b map[int]*Status) { b[0].Lock = [2]byte{0x01, 0x00} }) // only lock 1 bit set
	d, _ := newDriver(t, Options{Port: emu.path(), OpenBitSet: true, NoItemSensor: true})
	emu.set(func(b map[int]*Status) { b[0].IR = [2]byte{0xff, 0xff} })
	st, err := d.States(testCtx(t))
	require.NoError(t, err)
	assert.True(t, st[0].DoorOpen)
	assert.False(t, st[1].DoorOpen)
	assert.False(t, st[0].ItemPresent, "no item sensor configured")
	info, err := d.Describe(testCtx(t))
	require.NoError(t, err)
	assert.False(t, info.Caps.ItemSensor)
}

func TestDefaultPolarityIsSetMeansOpen(t *testing.T) {
	emu := newEmulator(t, 0)
	emu.set(func(b map[int]*Status) { b[0].Lock = [2]byte{0x01, 0x00} })
	d, err := New(Options{Port: emu.path(), Timeout: 500 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	st, err := d.States(testCtx(t))
	require.NoError(t, err)
	assert.True(t, st[0].DoorOpen)
	assert.False(t, st[0].Locked)
	assert.False(t, st[1].DoorOpen)

	_, err = New(Options{Port: emu.path(), OpenBitSet: true, OpenBitClear: true})
	require.Error(t, err)
}

func TestNoiseIsCountedAndSkipped(t *testing.T) {
	emu := newEmulator(t, 0)
	emu.mu.Lock()
	emu.noise = true
	emu.mu.Unlock()
	d, reg := newDriver(t, Options{Port: emu.path()})
	ctx := testCtx(t)
	for i := 0; i < 5; i++ {
		_, err := d.States(ctx)
		require.NoError(t, err)
	}
	require.NoError(t, d.Pulse(ctx, hardware.Address{Channel: 2}, time.Second, 0))
	assert.Equal(t, 1, emu.pulseCount(0, 2))
	st := d.Stats()
	assert.NotZero(t, st.Garbage)
	assert.NotZero(t, st.Framing+st.Checksum+st.Unknown, "the truncated frame is a framing error")
	unexpected := d.m.frames.WithLabelValues("unexpected").Value()
	assert.GreaterOrEqual(t, unexpected, 6.0, "frames of boards not asked are skipped")
	truncated := d.m.frames.WithLabelValues("truncated").Value()
	assert.NotZero(t, truncated, "a partial frame left after an answer is counted when the next request drops it")
	assert.NotZero(t, promtexttest.Count(t, reg, "kluis_kerong_frames_total"))
}

func TestLostUnlockAnswerIsNeverRetransmitted(t *testing.T) {
	emu := newEmulator(t, 0)
	emu.mu.Lock()
	emu.dropUnlockReplies = true
	emu.mu.Unlock()
	d, _ := newDriver(t, Options{Port: emu.path(), Timeout: 200 * time.Millisecond})
	ctx := testCtx(t)

	// The board carried it out: the status shows the lock open.
	a := hardware.Address{Channel: 5}
	require.NoError(t, d.Pulse(ctx, a, time.Second, 0))
	assert.Equal(t, 1, emu.pulseCount(0, 5))
	assert.Equal(t, 1.0, d.m.unlocks.WithLabelValues("confirmed_by_status").Value())

	// The board took the unlock but the lock stays closed (jammed): the
	// outcome is uncertain, reported as such, and not repeated.
	jam := hardware.Address{Channel: 6}
	emu.mu.Lock()
	emu.jammed[[2]int{0, 6}] = true
	emu.mu.Unlock()
	err := d.Pulse(ctx, jam, time.Second, 0)
	require.ErrorIs(t, err, ErrUncertain)
	require.ErrorIs(t, err, hardware.ErrTimeout)
	assert.Equal(t, 1, emu.pulseCount(0, 6))
	assert.Equal(t, 1.0, d.m.unlocks.WithLabelValues("uncertain").Value())

	// A board that is silent altogether: uncertain, and sent exactly once.
	emu.mu.Lock()
	emu.silent[0] = true
	emu.mu.Unlock()
	err = d.Pulse(ctx, hardware.Address{Channel: 8}, time.Second, 0)
	require.ErrorIs(t, err, ErrUncertain)
	assert.Equal(t, 0, emu.pulseCount(0, 8), "a silent board carried nothing out")
}

func TestOfflineAndOnline(t *testing.T) {
	emu := newEmulator(t, 0, 1)
	// Generous timeouts: board 0 must not miss three answers in a row on a
	// loaded machine, only the silent board 1 goes offline.
	d, _ := newDriver(t, Options{Port: emu.path(), Boards: []int{0, 1}, Timeout: 400 * time.Millisecond, Retries: 2})
	w := hardwaretest.StartWatch(t, d)
	b1 := hardware.Address{Board: 1, Channel: -1}
	require.Eventually(t, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.last) == 2
	}, 15*time.Second, 10*time.Millisecond)
	emu.mu.Lock()
	emu.silent[1] = true
	emu.mu.Unlock()
	w.WaitEvent(t, hardware.BoardOffline, b1)
	_, err := d.States(testCtx(t))
	require.ErrorIs(t, err, hardware.ErrTimeout)
	emu.mu.Lock()
	emu.silent[1] = false
	emu.mu.Unlock()
	w.WaitEvent(t, hardware.BoardOnline, b1)
	for _, ev := range w.Events() {
		if ev.Kind == hardware.BoardOffline {
			assert.Equal(t, b1, ev.Addr, "board 0 never went offline")
		}
	}
}

func TestStalePortIsReopened(t *testing.T) {
	emu1 := newEmulator(t, 0)
	link := filepath.Join(t.TempDir(), "ttyKERONG")
	require.NoError(t, os.Symlink(emu1.path(), link))
	d, _ := newDriver(t, Options{Port: link, Timeout: 200 * time.Millisecond})
	ctx := testCtx(t)
	_, err := d.States(ctx)
	require.NoError(t, err)

	// The adapter is unplugged and comes back under the same name.
	emu2 := newEmulator(t, 0)
	emu2.set(func(b map[int]*Status) { b[0].SetLockBit(3, false) })
	tmp := link + ".new"
	require.NoError(t, os.Symlink(emu2.path(), tmp))
	require.NoError(t, os.Rename(tmp, link))
	emu1.stop()

	var st []hardware.ChannelState
	require.Eventually(t, func() bool {
		st, err = d.States(ctx)
		return err == nil
	}, 15*time.Second, 20*time.Millisecond)
	assert.True(t, st[3].DoorOpen, "states come from the new port")
	assert.GreaterOrEqual(t, d.m.reopens.Value(), 2.0)
}

func TestCorruptedLineNeverDoublePulses(t *testing.T) {
	emu := newEmulator(t, 0, 1)
	emu.mu.Lock()
	emu.corruptPct = 1
	emu.mu.Unlock()
	d, _ := newDriver(t, Options{Port: emu.path(), Boards: []int{0, 1}, Timeout: 150 * time.Millisecond})
	ctx := testCtx(t)
	w := hardwaretest.StartWatch(t, d)
	// Every lock of board 0 and the even locks of board 1 are asked once,
	// while Watch polls in between; the odd locks of board 1 never are.
	asked := map[[2]int]error{}
	for _, b := range []int{0, 1} {
		for c := 0; c < 16; c++ {
			if b == 1 && c%2 == 1 {
				continue
			}
			asked[[2]int{b, c}] = d.Pulse(ctx, hardware.Address{Board: b, Channel: c}, time.Second, 0)
		}
	}
	_, _ = d.States(ctx)
	pulses := emu.totalPulses()
	okCount := 0
	for k, n := range pulses {
		assert.LessOrEqual(t, n, 1, "lock %v pulsed %d times", k, n)
		_, wasAsked := asked[k]
		assert.True(t, wasAsked, "lock %v pulsed unasked", k)
	}
	for k, err := range asked {
		if err == nil {
			okCount++
			assert.Equal(t, 1, pulses[k], "lock %v reported unlocked but not pulsed", k)
		} else {
			assert.True(t, errors.Is(err, ErrUncertain) || errors.Is(err, errNotSent) || errors.Is(err, hardware.ErrTimeout), "lock %v: %v", k, err)
		}
	}
	t.Logf("ok %d of %d; unlocks ok=%v by_status=%v uncertain=%v not_sent=%v; decode errors %+v",
		okCount, len(asked),
		d.m.unlocks.WithLabelValues("ok").Value(),
		d.m.unlocks.WithLabelValues("confirmed_by_status").Value(),
		d.m.unlocks.WithLabelValues("uncertain").Value(),
		d.m.unlocks.WithLabelValues("not_sent").Value(), d.Stats())
	assert.Len(t, asked, 24)
	assert.Greater(t, okCount, 12, "most unlocks still succeed on a 1%% noisy line")
	assert.NotZero(t, d.Stats().Errors()+uint64(d.m.timeouts.Value()))
	_ = w
}

// A flood of unsolicited frames while the driver works: status frames
// "every lock open" from a board it does not drive, the same with a bad
// checksum from the board it drives, unlock answers for another lock of
// that board, garbage, without pause. Every request still takes its own
// board's answer or times out, the one unlock asked for is the one
// carried out, and no door is reported open (docs/security.md, "The
// device-facing side, probed").
func TestFloodOfUnsolicitedFrames(t *testing.T) {
	emu := newEmulator(t, 0)
	d, _ := newDriver(t, Options{Port: emu.path()})
	w := hardwaretest.StartWatch(t, d)
	ctx := testCtx(t)

	foreign := Encode(StatusReply(Status{Board: 5})) // lock bits clear: open, in the emulator's polarity
	forged := Encode(StatusReply(Status{Board: 0}))
	forged[len(forged)-1] ^= 0xFF
	other, err := Addr(0, 9)
	require.NoError(t, err)
	stray := Encode(Frame{Addr: other, Cmd: CmdUnlockReply, Data: []byte{0}})
	flood := [][]byte{foreign, forged, stray, {0x00, 0xFF, 0x02, 0x13}}
	quiet := hardwaretest.Flood(t, emu.master, flood)

	hardwaretest.StatesShut(t, d, 200)
	require.NoError(t, d.Pulse(ctx, hardware.Address{Channel: 2}, time.Second, 0))
	assert.Equal(t, map[[2]int]int{{0, 2}: 1}, emu.totalPulses(), "the one unlock asked for")
	// On a fast run the driver may be done before it read one of the
	// other board's frames or a broken one: let the flood go on until it
	// has (bounded).
	for deadline := time.Now().Add(10 * time.Second); (d.m.frames.WithLabelValues("unexpected").Value() == 0 || d.Stats().Errors() == 0) && time.Now().Before(deadline); {
		_, _ = d.States(ctx)
	}
	quiet()
	for _, ev := range w.Events() {
		if ev.Kind == hardware.DoorOpened && ev.Addr.Channel != 2 {
			t.Fatalf("door reported open: %+v", ev)
		}
	}
	assert.NotZero(t, d.m.frames.WithLabelValues("unexpected").Value(), "the other board's frames skipped")
	st := d.Stats()
	t.Logf("stats %+v unexpected %v", st, d.m.frames.WithLabelValues("unexpected").Value())
	assert.NotZero(t, st.Errors(), "the broken frames refused")
}
