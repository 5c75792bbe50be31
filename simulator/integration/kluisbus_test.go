package integration

import (
	"context"
	"testing"
	"time"

	"kluis/deploy/dev/testenv"
	"kluis/hardware"
	"kluis/hardware/kluisbus"
	"kluis/simulator"
)

func kluisDriver(t *testing.T, ep simulator.Endpoint, boards int) *kluisbus.Driver {
	t.Helper()
	var bs []int
	for b := 0; b < boards; b++ {
		bs = append(bs, b)
	}
	drv, err := kluisbus.New(kluisbus.Options{Port: ep.Link, Boards: bs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close() })
	return drv
}

func TestKluisbusOpensEveryChannel(t *testing.T) {
	dev, ep := startDevice(t, simulator.DeviceConfig{ID: "kluis-a", Hardware: simulator.ProtoKluis, Boards: 2, Channels: 8})
	drv := kluisDriver(t, ep, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info, err := drv.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Boards) != 2 || info.Boards[1].Channels != 8 || !info.Caps.CommandIDs || !info.Caps.EventQueue || !info.Caps.DoorSensor {
		t.Fatalf("describe %+v", info)
	}
	openEveryChannel(t, drv, dev, addrs(2, 8), 200*time.Millisecond, true, true)

	// a retry with the same id does not pulse again
	a := hardware.Address{Board: 1, Channel: 3}
	before := len(dev.Pulses())
	if err := drv.Pulse(ctx, a, 200*time.Millisecond, 777); err != nil {
		t.Fatal(err)
	}
	if err := drv.Pulse(ctx, a, 200*time.Millisecond, 777); err != nil {
		t.Fatal(err)
	}
	if got := len(dev.Pulses()) - before; got != 1 {
		t.Fatalf("same id twice gave %d pulses", got)
	}
}

func TestKluisbusNoisyLine(t *testing.T) {
	seed := uint64(424242)
	dev, ep := startDevice(t, simulator.DeviceConfig{ID: "kluis-noisy", Hardware: simulator.ProtoKluis, Boards: 2, Channels: 12, Seed: &seed,
		Faults: simulator.Faults{Line: simulator.LineFaults{Corrupt: 0.01}}})
	drv := kluisDriver(t, ep, 2)
	noisyLine(t, drv, dev, addrs(2, 12), 100*time.Millisecond)
}

func TestKluisbusAutomaton(t *testing.T) {
	dev, ep := startDevice(t, simulator.DeviceConfig{ID: "kluis-auto", Kind: simulator.Automaton, Hardware: simulator.ProtoKluis,
		Slots: 10, MoveTime: 500 * time.Millisecond, Items: []simulator.ItemConfig{{Slot: 7, Label: "ID card"}}})
	drv := kluisDriver(t, ep, 1)
	ev := watch(t, drv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := drv.Present(ctx, 0, 7, 42); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "slot_presented", func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		for _, e := range ev.evs {
			if e.Kind == hardware.SlotPresented && e.Slot == 7 {
				return true
			}
		}
		return false
	})
	h, err := drv.Hatch(ctx, 0)
	if err != nil || h.Slot != 7 || !h.ItemAtHatch || h.Busy {
		t.Fatalf("hatch %+v %v", h, err)
	}
	if err := drv.Pulse(ctx, hardware.Address{}, 300*time.Millisecond, 43); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "hatch_opened", func() bool { return ev.has(hardware.HatchOpened, hardware.Address{}) })
	if item, err := dev.Take(0, 0); err != nil || item != "ID card" {
		t.Fatalf("take %q %v", item, err)
	}
	if len(dev.Presents()) != 1 || len(dev.Pulses()) != 1 {
		t.Fatalf("presents %v pulses %v", dev.Presents(), dev.Pulses())
	}
}

// Board reboots on top of line noise: the driver sees every reboot, no
// lock is ever pulsed that was not asked for, and no command id is pulsed
// twice: a retry that reaches a board restarted since the original is
// refused by the boot check (firmware-protocol.md 4.3.1).
func TestKluisbusRebootsAndNoise(t *testing.T) {
	seed := uint64(99)
	dev, ep := startDevice(t, simulator.DeviceConfig{ID: "kluis-reboot", Hardware: simulator.ProtoKluis, Boards: 2, Channels: 6, Seed: &seed,
		Faults: simulator.Faults{Line: simulator.LineFaults{Corrupt: 0.005, Drop: 0.005}}})
	drv := kluisDriver(t, ep, 2)
	ev := watch(t, drv)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// the driver learns both boot ids (INFO carries them)
	for i := 0; ; i++ {
		info, err := drv.Describe(ctx)
		if err == nil && len(info.Boards) == 2 {
			break
		}
		if i > 20 {
			t.Fatalf("describe: %+v %v", info, err)
		}
	}
	as := addrs(2, 6)
	for i, a := range as {
		if i == 3 {
			if err := dev.Reboot(1); err != nil {
				t.Fatal(err)
			}
		}
		if err := drv.Pulse(ctx, a, 100*time.Millisecond, hardware.CommandID(9000+i)); err != nil {
			t.Logf("pulse %s: %v", a, err)
		}
	}
	testenv.Eventually(t, "board_rebooted for board 1", func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		for _, e := range ev.evs {
			if e.Kind == hardware.BoardRebooted && e.Addr.Board == 1 {
				return true
			}
		}
		return false
	})
	want := map[hardware.Address]bool{}
	for _, a := range as {
		want[a] = true
	}
	ids := map[uint32]int{}
	for _, p := range dev.Pulses() {
		if !want[hardware.Address{Board: p.Board, Channel: p.Channel}] {
			t.Errorf("pulse %+v never asked for", p)
		}
		if ids[p.CommandID]++; ids[p.CommandID] == 2 {
			t.Errorf("command id %d pulsed twice", p.CommandID)
		}
	}
}
