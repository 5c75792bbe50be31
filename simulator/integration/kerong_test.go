package integration

import (
	"context"
	"testing"
	"time"

	"kluis/hardware/kerong"
	"kluis/simulator"
)

func kerongDriver(t *testing.T, ep simulator.Endpoint, boards int) *kerong.Driver {
	t.Helper()
	var bs []int
	for b := 0; b < boards; b++ {
		bs = append(bs, b)
	}
	// both sides' default polarity (lock bit set = door open)
	drv, err := kerong.New(kerong.Options{Port: ep.Link, Boards: bs, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close() })
	return drv
}

func TestKerongOpensEveryChannel(t *testing.T) {
	dev, ep := startDevice(t, simulator.DeviceConfig{ID: "kerong-a", Hardware: simulator.ProtoKerong, Boards: 2, Channels: 16, KerongPulse: 200 * time.Millisecond})
	drv := kerongDriver(t, ep, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info, err := drv.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Boards) != 2 || info.Caps.CommandIDs {
		t.Fatalf("describe %+v", info)
	}
	openEveryChannel(t, drv, dev, addrs(2, 16), 200*time.Millisecond, true, false)
}

func TestKerongNoisyLine(t *testing.T) {
	seed := uint64(777)
	dev, ep := startDevice(t, simulator.DeviceConfig{ID: "kerong-noisy", Hardware: simulator.ProtoKerong, Boards: 2, Channels: 16, Seed: &seed,
		KerongPulse: 100 * time.Millisecond, Faults: simulator.Faults{Line: simulator.LineFaults{Corrupt: 0.01}}})
	drv := kerongDriver(t, ep, 2)
	noisyLine(t, drv, dev, addrs(2, 16), 100*time.Millisecond)
}
