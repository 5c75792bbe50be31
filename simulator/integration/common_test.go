package integration

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"kluis/deploy/dev/testenv"
	"kluis/hardware"
	"kluis/simulator"
)

// startDevice serves one simulated device and returns it with its endpoint.
func startDevice(t *testing.T, dc simulator.DeviceConfig) (*simulator.Device, simulator.Endpoint) {
	t.Helper()
	if dc.Hardware != simulator.ProtoTasmota {
		dc.Link = filepath.Join(t.TempDir(), "tty")
	}
	ctx, cancel := context.WithCancel(context.Background())
	f, err := simulator.StartFleet(ctx, simulator.Config{Broker: testenv.BrokerURL(), Devices: []simulator.DeviceConfig{dc}}, simulator.FleetOptions{ClearRetained: true})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); cancel() })
	ep, _ := f.Endpoint(dc.ID)
	return f.Device(dc.ID), ep
}

// events collects what Watch delivers.
type events struct {
	mu  sync.Mutex
	evs []hardware.Event
}

func (e *events) add(ev hardware.Event) error {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
	return nil
}

func (e *events) has(kind hardware.EventKind, a hardware.Address) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.evs {
		if ev.Kind == kind && ev.Addr == a {
			return true
		}
	}
	return false
}

func watch(t *testing.T, drv hardware.Driver) *events {
	t.Helper()
	var ev events
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- drv.Watch(ctx, ev.add) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("watch: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("watch did not end")
		}
	})
	return &ev
}

func addrs(boards, channels int) []hardware.Address {
	var out []hardware.Address
	for b := 0; b < boards; b++ {
		for c := 0; c < channels; c++ {
			out = append(out, hardware.Address{Board: b, Channel: c})
		}
	}
	return out
}

// openEveryChannel is the clean-line scenario: every channel pulsed once
// through the driver opens, the driver's states and events show it, and
// closing the doors is seen too. lockFeedback: the hardware reports the
// lock apart from the door (Kerong's one feedback bit reads "unlocked"
// while the door is open).
func openEveryChannel(t *testing.T, drv hardware.Driver, dev *simulator.Device, as []hardware.Address, pulse time.Duration, itemSensor, lockFeedback bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, a := range as {
		if err := dev.Load(a.Board, a.Channel, 0, fmt.Sprintf("item %s", a)); err != nil {
			t.Fatal(err)
		}
		_ = i
	}
	ev := watch(t, drv)
	for i, a := range as {
		if err := drv.Pulse(ctx, a, pulse, hardware.CommandID(1000+i)); err != nil {
			t.Fatalf("pulse %s: %v", a, err)
		}
	}
	for _, a := range as {
		testenv.Eventually(t, "door "+a.String()+" open in the world", func() bool { c, _ := dev.Channel(a.Board, a.Channel); return c.DoorOpen })
		testenv.Eventually(t, "door_opened event for "+a.String(), func() bool { return ev.has(hardware.DoorOpened, a) })
	}
	testenv.Eventually(t, "every lock relocked", func() bool {
		for _, c := range dev.State().Channels {
			if c.Energised {
				return false
			}
		}
		return true
	})
	st, err := drv.States(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[hardware.Address]bool{}
	for _, s := range st {
		seen[s.Addr] = true
		if !s.DoorOpen || (lockFeedback && !s.Locked) || (itemSensor && !s.ItemPresent) {
			t.Errorf("state %+v, want door open, locked, item present", s)
		}
	}
	for _, a := range as {
		if !seen[a] {
			t.Errorf("no state for %s", a)
		}
	}
	// people take the items and close the doors
	for _, a := range as {
		if _, err := dev.Take(a.Board, a.Channel); err != nil {
			t.Fatal(err)
		}
		if err := dev.Close(a.Board, a.Channel); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range as {
		testenv.Eventually(t, "door_closed event for "+a.String(), func() bool { return ev.has(hardware.DoorClosed, a) })
		if itemSensor {
			testenv.Eventually(t, "item_removed event for "+a.String(), func() bool { return ev.has(hardware.ItemRemoved, a) })
		}
	}
	checkPulses(t, dev, as, true)
}

// checkPulses asserts the world received at most one pulse per asked
// address (exactly one when exact) and none anywhere else.
func checkPulses(t *testing.T, dev *simulator.Device, asked []hardware.Address, exact bool) map[hardware.Address]int {
	t.Helper()
	want := map[hardware.Address]bool{}
	for _, a := range asked {
		want[a] = true
	}
	n := map[hardware.Address]int{}
	for _, p := range dev.Pulses() {
		a := hardware.Address{Board: p.Board, Channel: p.Channel}
		n[a]++
		if !want[a] {
			t.Errorf("pulse %+v was never asked for", p)
		}
		if n[a] > 1 {
			t.Errorf("%s pulsed %d times", a, n[a])
		}
	}
	if exact {
		for _, a := range asked {
			if n[a] != 1 {
				t.Errorf("%s pulsed %d times, want 1", a, n[a])
			}
		}
	}
	return n
}

// noisyLine pulses every channel once over a line with corrupted bytes: a
// pulse the driver reports done was received exactly once; none twice, none
// unasked.
func noisyLine(t *testing.T, drv hardware.Driver, dev *simulator.Device, as []hardware.Address, pulse time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	watch(t, drv) // polling traffic shares the noisy line
	ok := map[hardware.Address]bool{}
	for i, a := range as {
		err := drv.Pulse(ctx, a, pulse, hardware.CommandID(5000+i))
		if err == nil {
			ok[a] = true
		} else {
			t.Logf("pulse %s: %v", a, err)
		}
	}
	time.Sleep(2 * pulse) // let the last pulses end before reading the record
	n := checkPulses(t, dev, as, false)
	for a := range ok {
		if n[a] != 1 {
			t.Errorf("%s reported pulsed but the world got %d pulses", a, n[a])
		}
	}
	if len(ok) < len(as)/2 {
		t.Errorf("only %d of %d pulses succeeded with 1%% corruption", len(ok), len(as))
	}
}
