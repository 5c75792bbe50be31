package enginetest

import (
	"context"
	"testing"

	"kluis/controller/engine"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

// A synced QR code opens its door once, offline, and a code never synced
// opens nothing.
func TestSyncedQROpensItsDoor(t *testing.T) {
	r := Start(t, Options{DeviceID: "enginetest-1"})
	if !r.Engine.Ready() {
		t.Fatal("Start returned before the engine was ready")
	}
	tok := r.SyncQR(t, "doc-1", 1)
	s, err := r.Engine.Pickup(context.Background(), engine.PickupRequest{QR: tok})
	if err != nil || s.State != engine.StateOpen || s.Compartment != 2 {
		t.Fatalf("pickup: %+v, %v", s, err)
	}
	testenv.Eventually(t, "one pulse at channel 1", func() bool { return r.Driver.PulseCount(hardware.Address{Channel: 1}) == 1 })
	if n := r.Driver.PulseCount(hardware.Address{Channel: 0}); n != 0 {
		t.Fatalf("%d pulses at channel 0", n)
	}
}
