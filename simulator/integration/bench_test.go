package integration

import (
	"context"
	"path/filepath"
	"testing"

	"kluis/deploy/dev/testenv"
	"kluis/hardware"
	"kluis/hardware/kerong"
	"kluis/hardware/kluisbus"
	"kluis/simulator"
)

func benchDevice(b *testing.B, dc simulator.DeviceConfig) simulator.Endpoint {
	b.Helper()
	if dc.Hardware != simulator.ProtoTasmota {
		dc.Link = filepath.Join(b.TempDir(), "tty")
	}
	ctx, cancel := context.WithCancel(context.Background())
	f, err := simulator.StartFleet(ctx, simulator.Config{Broker: testenv.BrokerURL(), Devices: []simulator.DeviceConfig{dc}}, simulator.FleetOptions{ClearRetained: true})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close(); cancel() })
	ep, _ := f.Endpoint(dc.ID)
	return ep
}

func benchStates(b *testing.B, drv hardware.Driver) {
	ctx := context.Background()
	if _, err := drv.States(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := drv.States(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKluisbusStates: one States call (a STATUS exchange per board)
// through the real driver, a pty and the simulated boards.
func BenchmarkKluisbusStates(b *testing.B) {
	ep := benchDevice(b, simulator.DeviceConfig{ID: "bench-kluis", Hardware: simulator.ProtoKluis, Boards: 2, Channels: 24})
	drv, err := kluisbus.New(kluisbus.Options{Port: ep.Link, Boards: []int{0, 1}})
	if err != nil {
		b.Fatal(err)
	}
	defer drv.Close()
	benchStates(b, drv)
}

// BenchmarkKerongStates is the same for the Kerong driver.
func BenchmarkKerongStates(b *testing.B) {
	ep := benchDevice(b, simulator.DeviceConfig{ID: "bench-kerong", Hardware: simulator.ProtoKerong, Boards: 2, Channels: 16})
	drv, err := kerong.New(kerong.Options{Port: ep.Link, Boards: []int{0, 1}})
	if err != nil {
		b.Fatal(err)
	}
	defer drv.Close()
	benchStates(b, drv)
}

// BenchmarkTasmotaStates is the same for the Tasmota driver: a Status 10
// round trip through the real broker (Mosquitto) per module.
func BenchmarkTasmotaStates(b *testing.B) {
	ep := benchDevice(b, simulator.DeviceConfig{ID: "bench-tasmota", Hardware: simulator.ProtoTasmota, Topic: uniqueTopic("bench"), Boards: 2, Channels: 8})
	benchStates(b, tasmotaDriver(b, ep, 8, false))
}
