package kluisbus

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kluis/controller/promtext"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

// A serial device that vanishes (a USB adapter unplugged) and comes back
// under the same name: the driver's port goes stale, is reopened, and the
// boards behind the new device are read and pulsed.
func TestStalePortIsReopened(t *testing.T) {
	e1 := newEmulator(t, 3)
	e1.addBoard(0, 8)
	link := filepath.Join(t.TempDir(), "ttyKLUIS")
	if err := os.Symlink(e1.path, link); err != nil {
		t.Fatal(err)
	}
	d, err := New(Options{Port: link, Timeout: 100 * time.Millisecond, Registry: promtext.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if st, err := d.States(ctx); err != nil || len(st) != 8 || st[3].DoorOpen {
		t.Fatalf("states before: %+v, %v", st, err)
	}

	e2 := newEmulator(t, 4)
	e2.addBoard(0, 8)
	e2.setDoor(0, 3, true)
	tmp := link + ".new"
	if err := os.Symlink(e2.path, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	e1.stop()

	testenv.MustPoll(t, 15*time.Second, "the new device read", func(ctx context.Context) (bool, string, error) {
		st, err := d.States(ctx)
		return err == nil && len(st) == 8 && st[3].DoorOpen, fmt.Sprintf("%+v", st), err
	})
	if err := d.Pulse(ctx, hardware.Address{Channel: 2}, 100*time.Millisecond, 77); err != nil {
		t.Fatal(err)
	}
	if ps := e2.pulseLog(); len(ps) != 1 || ps[0].ch != 2 || ps[0].id != 77 {
		t.Fatalf("pulses on the new device %+v, want one on channel 2", ps)
	}
	if ps := e1.pulseLog(); len(ps) != 0 {
		t.Fatalf("pulses on the vanished device %+v", ps)
	}
}
