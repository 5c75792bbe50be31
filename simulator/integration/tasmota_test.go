package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"kluis/deploy/dev/testenv"
	"kluis/hardware"
	"kluis/hardware/tasmota"
	"kluis/simulator"
)

func tasmotaDriver(t testing.TB, ep simulator.Endpoint, relays int, automaton bool) *tasmota.Driver {
	t.Helper()
	var mods []tasmota.Module
	for b, topic := range ep.Topics {
		mods = append(mods, tasmota.Module{Topic: topic, Relays: relays, Board: b})
	}
	drv, err := tasmota.New(tasmota.Options{Broker: ep.Broker, Modules: mods, Automaton: automaton,
		ClientID: fmt.Sprintf("kluis-it-%d", time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := drv.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	return drv
}

func uniqueTopic(name string) string {
	return fmt.Sprintf("kluis-it-%s-%d", name, time.Now().UnixNano())
}

func TestTasmotaOpensEveryChannel(t *testing.T) {
	dev, ep := startDevice(t, simulator.DeviceConfig{ID: "tas-a", Hardware: simulator.ProtoTasmota, Topic: uniqueTopic("bank"), Boards: 2, Channels: 8})
	drv := tasmotaDriver(t, ep, 8, false)
	openEveryChannel(t, drv, dev, addrs(2, 8), 300*time.Millisecond, true, true)
}

func TestTasmotaModuleOffline(t *testing.T) {
	dev, ep := startDevice(t, simulator.DeviceConfig{ID: "tas-off", Hardware: simulator.ProtoTasmota, Topic: uniqueTopic("off"), Channels: 4})
	drv := tasmotaDriver(t, ep, 4, false)
	ev := watch(t, drv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := dev.SetFaults(simulator.Faults{Offline: true}); err != nil {
		t.Fatal(err)
	}
	offlineAt := -1
	testenv.Eventually(t, "board_offline", func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		for i, e := range ev.evs {
			if e.Kind == hardware.BoardOffline && e.Addr.Board == 0 {
				offlineAt = i
				return true
			}
		}
		return false
	})
	if err := drv.Pulse(ctx, hardware.Address{Channel: 1}, 300*time.Millisecond, 1); err == nil {
		t.Fatal("pulse to an offline module succeeded")
	}
	if err := dev.SetFaults(simulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "board_online", func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		for _, e := range ev.evs[offlineAt+1:] {
			if e.Kind == hardware.BoardOnline {
				return true
			}
		}
		return false
	})
	var err error
	for i := 0; i < 50; i++ { // the module may still be resubscribing
		if err = drv.Pulse(ctx, hardware.Address{Channel: 2}, 300*time.Millisecond, 2); err == nil || !errors.Is(err, hardware.ErrTimeout) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("pulse after the module came back: %v", err)
	}
	checkPulses(t, dev, []hardware.Address{{Channel: 2}}, true)
}

func TestTasmotaAutomaton(t *testing.T) {
	dev, ep := startDevice(t, simulator.DeviceConfig{ID: "tas-auto", Kind: simulator.Automaton, Hardware: simulator.ProtoTasmota,
		Topic: uniqueTopic("auto"), Slots: 6, MoveTime: 500 * time.Millisecond, Items: []simulator.ItemConfig{{Slot: 4, Label: "licence"}}})
	drv := tasmotaDriver(t, ep, 7, true)
	ev := watch(t, drv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := drv.Present(ctx, 0, 4, 1); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "slot_presented 4", func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		for _, e := range ev.evs {
			if e.Kind == hardware.SlotPresented && e.Slot == 4 {
				return true
			}
		}
		return false
	})
	testenv.Eventually(t, "hatch shows slot 4 with the item", func() bool {
		h, err := drv.Hatch(ctx, 0)
		return err == nil && h.Slot == 4 && h.ItemAtHatch && !h.Busy
	})
	if err := drv.Pulse(ctx, hardware.Address{}, 300*time.Millisecond, 2); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "hatch_opened", func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		for _, e := range ev.evs {
			if e.Kind == hardware.HatchOpened {
				return true
			}
		}
		return false
	})
	if item, err := dev.Take(0, 0); err != nil || item != "licence" {
		t.Fatalf("take %q %v", item, err)
	}
	if len(dev.Presents()) != 1 || len(dev.Pulses()) != 1 {
		t.Fatalf("presents %v pulses %v", dev.Presents(), dev.Pulses())
	}
	// Presenting the slot already at the hatch (a controller that lost
	// track of it, e.g. after a restart) completes too: nothing moves, the
	// busy switch still cycles and the driver reports SlotPresented again.
	if err := dev.Close(0, 0); err != nil {
		t.Fatal(err)
	}
	// The carousel refuses to move while the hatch lock is energised.
	testenv.Eventually(t, "hatch closed and locked", func() bool {
		h, err := drv.Hatch(ctx, 0)
		return err == nil && !h.Open && !h.Busy && h.Locked
	})
	count := func() int {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		n := 0
		for _, e := range ev.evs {
			if e.Kind == hardware.SlotPresented && e.Slot == 4 {
				n++
			}
		}
		return n
	}
	if err := drv.Present(ctx, 0, 4, 3); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "second slot_presented 4", func() bool { return count() == 2 })
	if ps := dev.Presents(); len(ps) != 2 || ps[1].Slot != 4 {
		t.Fatalf("presents %v", ps)
	}
}
