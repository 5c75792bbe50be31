package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"kluis/deploy/dev/testenv"
	"kluis/hardware"
	"kluis/hardware/kerong"
)

// `kluis-sim serial --protocol kerong-cu16` with its default lock-bit
// polarity and kerong.New with its defaults agree on what a set bit means,
// and so do --kerong-open-bit 0 and Options.OpenBitClear: an unlocked door
// reads open, every other door shut.
func TestKerongPolarityDefaultsAgree(t *testing.T) {
	for _, tc := range []struct {
		name    string
		simArgs []string
		opts    kerong.Options
	}{
		{"defaults", nil, kerong.Options{}},
		{"open-bit-clear", []string{"--kerong-open-bit", "0"}, kerong.Options{OpenBitClear: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			link := filepath.Join(t.TempDir(), "tty")
			startSim(t, append([]string{"serial", "--protocol", "kerong-cu16", "--link", link}, tc.simArgs...)...)
			o := tc.opts
			o.Port = link
			drv, err := kerong.New(o)
			if err != nil {
				t.Fatal(err)
			}
			defer drv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			st, err := drv.States(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(st) != 16 {
				t.Fatalf("%d channels, want 16", len(st))
			}
			for _, s := range st {
				if s.DoorOpen || !s.Locked {
					t.Fatalf("before any pulse %+v reads open", s)
				}
			}
			lock3 := hardware.Address{Board: 0, Channel: 2}
			if err := drv.Pulse(ctx, lock3, 500*time.Millisecond, 1); err != nil {
				t.Fatal(err)
			}
			testenv.MustPoll(t, 15*time.Second, "lock 3 read open", func(ctx context.Context) (bool, string, error) {
				st, err = drv.States(ctx)
				return err == nil && len(st) == 16 && st[2].DoorOpen, fmt.Sprintf("%+v", st), err
			})
			for _, s := range st {
				if s.Addr != lock3 && s.DoorOpen {
					t.Errorf("%+v reads open, only lock 3 was pulsed", s)
				}
			}
		})
	}
}
