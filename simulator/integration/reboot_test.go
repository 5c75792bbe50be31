package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"kluis/hardware"
	"kluis/hardware/kluisproto"
	"kluis/simulator"
)

// pulsesOf counts the pulses the device carried out for command id.
func pulsesOf(dev *simulator.Device, id hardware.CommandID) int {
	n := 0
	for _, p := range dev.Pulses() {
		if p.CommandID == uint32(id) {
			n++
		}
	}
	return n
}

// The gauntlet, seed 20261206101, night 3, board_reboot on kb1: command
// 152 pulsed, the board restarted (cutting the pulse and forgetting the
// id), the door was not seen open and kluisd re-sent 152 two seconds later,
// which the new boot carried out again: two pulses for one command. The
// same hole is in the driver's own re-send when the restart comes between
// the pulse and its reply. A board restart must never turn a re-send into
// a second pulse (firmware-protocol.md 4.3.1): boards with CapBootCheck
// refuse a command meant for another boot (STALE_BOOT), and for boards
// without it the driver reads STATUS before re-sending a command that may
// have been carried out. Either way: exactly one pulse, the command
// reported hardware.ErrRebooted (not confirmed), and the next command, with
// a new id, pulses as usual.
func TestSeed20261206101RebootBetweenPulseAndReply(t *testing.T) {
	for _, tc := range []struct {
		name      string
		noCheck   bool
		bootCheck bool
	}{{"boot-checked firmware", false, true}, {"firmware without the boot check", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			seed := uint64(20261206101)
			dev, ep := startDevice(t, simulator.DeviceConfig{ID: "kb1", Hardware: simulator.ProtoKluis, Boards: 1, Channels: 4,
				Seed: &seed, NoBootCheck: tc.noCheck})
			drv := kluisDriver(t, ep, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := drv.Describe(ctx); err != nil {
				t.Fatal(err)
			}
			boot := func() uint32 {
				q, _ := dev.Queue(0)
				return q.BootID
			}
			// the sim's INFO advertises the boot check unless told not to
			if got := drv.BootCheck(0); got != tc.bootCheck {
				t.Fatalf("boot check %v, want %v", got, tc.bootCheck)
			}

			// 1. The restart between the pulse and its reply: the reply is
			// lost, the driver's re-send meets the new boot.
			a := hardware.Address{Board: 0, Channel: 1}
			b0 := boot()
			if err := dev.SetFaults(simulator.Faults{RebootAfterCommand: true}); err != nil {
				t.Fatal(err)
			}
			err := drv.Pulse(ctx, a, 300*time.Millisecond, 152)
			if !errors.Is(err, hardware.ErrRebooted) {
				t.Fatalf("pulse across a restart: %v, want ErrRebooted", err)
			}
			if boot() == b0 {
				t.Fatal("the board did not restart")
			}
			// the caller's own retry of the same id (the engine's
			// open_not_detected retry) is refused too
			if err := drv.Pulse(ctx, a, 300*time.Millisecond, 152); !errors.Is(err, hardware.ErrRebooted) {
				t.Fatalf("retry of 152: %v, want ErrRebooted", err)
			}
			if n := pulsesOf(dev, 152); n != 1 {
				t.Fatalf("command 152 pulsed %d times, want 1", n)
			}

			// 2. Night 3 itself: the reply got out, then the board
			// restarted, then the same id was sent again.
			c := hardware.Address{Board: 0, Channel: 2}
			if err := drv.Pulse(ctx, c, 300*time.Millisecond, 153); err != nil {
				t.Fatal(err)
			}
			if err := dev.Reboot(0); err != nil {
				t.Fatal(err)
			}
			if err := drv.Pulse(ctx, c, 300*time.Millisecond, 153); !errors.Is(err, hardware.ErrRebooted) {
				t.Fatalf("re-send of 153 after a restart: %v, want ErrRebooted", err)
			}
			if n := pulsesOf(dev, 153); n != 1 {
				t.Fatalf("command 153 pulsed %d times, want 1", n)
			}

			// 3. A new command with a new id works at once, on the new boot,
			// and its retry is still deduplicated.
			if err := drv.Pulse(ctx, c, 300*time.Millisecond, 154); err != nil {
				t.Fatal(err)
			}
			if err := drv.Pulse(ctx, c, 300*time.Millisecond, 154); err != nil {
				t.Fatal(err)
			}
			if n := pulsesOf(dev, 154); n != 1 {
				t.Fatalf("command 154 pulsed %d times, want 1", n)
			}
			// A fresh id sent to a boot the driver has not seen yet is
			// not lost: STALE_BOOT for a command that was never carried
			// out makes the driver learn the new boot id and send it again.
			if err := dev.Reboot(0); err != nil {
				t.Fatal(err)
			}
			if err := drv.Pulse(ctx, a, 300*time.Millisecond, 155); err != nil {
				t.Fatal(err)
			}
			if n := pulsesOf(dev, 155); n != 1 {
				t.Fatalf("command 155 pulsed %d times, want 1", n)
			}
		})
	}
}

// PRESENT follows the same rule as UNLOCK: a carousel move is never
// repeated by a restarted automaton board.
func TestSeed20261206101RebootBetweenPresentAndReply(t *testing.T) {
	dev, ep := startDevice(t, simulator.DeviceConfig{ID: "kluis-auto-reboot", Kind: simulator.Automaton, Hardware: simulator.ProtoKluis,
		Slots: 10, MoveTime: 300 * time.Millisecond})
	drv := kluisDriver(t, ep, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := drv.Describe(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dev.SetFaults(simulator.Faults{RebootAfterCommand: true}); err != nil {
		t.Fatal(err)
	}
	if err := drv.Present(ctx, 0, 7, 42); !errors.Is(err, hardware.ErrRebooted) {
		t.Fatalf("present across a restart: %v, want ErrRebooted", err)
	}
	if err := drv.Present(ctx, 0, 7, 42); !errors.Is(err, hardware.ErrRebooted) {
		t.Fatalf("retry of present 42: %v, want ErrRebooted", err)
	}
	if n := len(dev.Presents()); n != 1 {
		t.Fatalf("%d presents for one command, want 1", n)
	}
}

// The boot check on the wire: a board refuses an UNLOCK meant for another
// boot with STALE_BOOT and pulses nothing; firmware without the check
// refuses the longer form with BAD_LENGTH.
func TestKluisStaleBootOnTheWire(t *testing.T) {
	dev, err := simulator.New(simulator.Options{Channels: 4})
	if err != nil {
		t.Fatal(err)
	}
	k, err := simulator.NewKluis(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	q, _ := dev.Queue(0)
	ask := func(k *simulator.Kluis, m kluisproto.Message) kluisproto.Message {
		t.Helper()
		raw, err := kluisproto.EncodeMessage(0, m)
		if err != nil {
			t.Fatal(err)
		}
		d := kluisproto.NewDecoder()
		d.Write(k.Handle(raw))
		f, ok := d.Next()
		if !ok {
			t.Fatalf("no answer to %T", m)
		}
		r, err := kluisproto.ParseReply(f)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	info := ask(k, &kluisproto.InfoRequest{}).(*kluisproto.InfoReply)
	if info.Caps&kluisproto.CapBootCheck == 0 {
		t.Fatalf("caps %#x without CapBootCheck", info.Caps)
	}
	r := ask(k, &kluisproto.UnlockRequest{Channel: 1, DurationMS: 300, ID: 7, BootID: q.BootID + 2})
	if nak, ok := r.(*kluisproto.Nak); !ok || nak.Code != kluisproto.CodeStaleBoot {
		t.Fatalf("stale boot: %+v", r)
	}
	if len(dev.Pulses()) != 0 {
		t.Fatalf("pulsed for a stale boot: %v", dev.Pulses())
	}
	if r := ask(k, &kluisproto.UnlockRequest{Channel: 1, DurationMS: 300, ID: 7, BootID: q.BootID}); r.Command() != kluisproto.CmdUnlock|kluisproto.ReplyBit {
		t.Fatalf("current boot: %+v", r)
	}
	if len(dev.Pulses()) != 1 {
		t.Fatalf("pulses %v", dev.Pulses())
	}

	old, err := simulator.New(simulator.Options{Channels: 4, NoBootCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	ko, err := simulator.NewKluis(old)
	if err != nil {
		t.Fatal(err)
	}
	defer ko.Close()
	if info := ask(ko, &kluisproto.InfoRequest{}).(*kluisproto.InfoReply); info.Caps&kluisproto.CapBootCheck != 0 {
		t.Fatalf("old firmware advertises the boot check: %#x", info.Caps)
	}
	qo, _ := old.Queue(0)
	r = ask(ko, &kluisproto.UnlockRequest{Channel: 1, DurationMS: 300, ID: 7, BootID: qo.BootID})
	if nak, ok := r.(*kluisproto.Nak); !ok || nak.Code != kluisproto.CodeBadLength {
		t.Fatalf("old firmware, long form: %+v", r)
	}
	if len(old.Pulses()) != 0 {
		t.Fatalf("old firmware pulsed: %v", old.Pulses())
	}
}

// The re-send of a journaled intent after kluisd restarted goes through a
// new driver that never sent the id: kluisd binds it to the boot id it
// journaled (hardware.BootBinder), so a board that restarted in between
// refuses it; one that did not answers REPEAT as before.
func TestSeed20261206101ResendAfterKluisdRestartHonoursTheJournaledBoot(t *testing.T) {
	for _, tc := range []struct {
		name    string
		noCheck bool
	}{{"boot-checked firmware", false}, {"firmware without the boot check", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dev, ep := startDevice(t, simulator.DeviceConfig{ID: "kb1-restart", Hardware: simulator.ProtoKluis, Boards: 1, Channels: 4,
				NoBootCheck: tc.noCheck})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			a := hardware.Address{Board: 0, Channel: 3}
			before := kluisDriver(t, ep, 1)
			if _, err := before.Describe(ctx); err != nil {
				t.Fatal(err)
			}
			boot := before.Boot(0)
			if boot == 0 {
				t.Fatal("no boot id known after Describe")
			}
			b := hardware.Address{Board: 0, Channel: 2}
			if err := before.Pulse(ctx, b, 300*time.Millisecond, 300); err != nil {
				t.Fatal(err)
			}
			if err := before.Pulse(ctx, a, 300*time.Millisecond, 301); err != nil {
				t.Fatal(err)
			}
			before.Close() // kluisd dies (its driver relocks)

			// not restarted: the re-send is answered REPEAT, no pulse
			after := kluisDriver(t, ep, 1)
			if _, err := after.Describe(ctx); err != nil {
				t.Fatal(err)
			}
			after.BindBoot(0, 300, boot)
			if err := after.Pulse(ctx, b, 300*time.Millisecond, 300); err != nil {
				t.Fatalf("re-send to the same boot: %v", err)
			}
			// restarted: the re-send is refused
			if err := dev.Reboot(0); err != nil {
				t.Fatal(err)
			}
			after.BindBoot(0, 301, boot)
			if err := after.Pulse(ctx, a, 300*time.Millisecond, 301); !errors.Is(err, hardware.ErrRebooted) {
				t.Fatalf("re-send to a restarted board: %v, want ErrRebooted", err)
			}
			for _, id := range []hardware.CommandID{300, 301} {
				if n := pulsesOf(dev, id); n != 1 {
					t.Fatalf("command %d pulsed %d times, want 1", id, n)
				}
			}
		})
	}
}
