package codes

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kluis/controller/pickupcode"
)

// tickingClock moves on by a microsecond at every reading, as a real
// clock does between concurrent attempts.
type tickingClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *tickingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Microsecond)
	return c.t
}

// Found black-box (a device's MQTT credentials, 300 verify requests with
// wrong PINs at once): 6 wrong PINs were judged after one earlier failure,
// where the burst limit allows 5 in all. Each attempt reads its time
// before it waits for the device's lock, and counted only failures at or
// before that time: a failure recorded by an attempt that got the lock
// first but read the clock a moment later was not seen. With a clock that
// moves between attempts, concurrent wrong PINs must still be judged
// exactly up to the limit, as TestConcurrentWrongPINsCountExactly checks
// with a frozen clock.
func TestConcurrentWrongPINsCountExactlyWithAMovingClock(t *testing.T) {
	f := newFixture(t)
	_, _, cr := f.issue("eid", "l1", 1)
	clock := &tickingClock{t: t0}
	svc, err := New(Options{Pool: f.pool, Keys: f.keys, Argon: testArgon, Clock: clock.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	_, err = svc.Verify(t.Context(), Attempt{DeviceID: "l1", PIN: cr.PIN})
	require.ErrorIs(t, err, pickupcode.ErrSecondFactorRequired)
	for round := 0; round < 5; round++ {
		n := pickupcode.DeviceMaxFailures + 20
		var (
			wg          sync.WaitGroup
			mu          sync.Mutex
			wrong, lock int
		)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := svc.Verify(t.Context(), Attempt{DeviceID: "l1", PIN: wrongPIN(cr.PIN), BirthDate: "1990-02-28"})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, pickupcode.ErrWrongCode):
					wrong++
				case errors.Is(err, pickupcode.ErrDeviceLockedOut):
					lock++
				default:
					t.Errorf("unexpected result %v", err)
				}
			}()
		}
		wg.Wait()
		require.Equal(t, pickupcode.DeviceMaxFailures, wrong, "round %d: wrong PINs judged", round)
		require.Equal(t, n-pickupcode.DeviceMaxFailures, lock, "round %d", round)
		// Lift the burst lock (as staff would) for the next round: the
		// failures before it stop counting towards the next burst.
		require.NoError(t, pgx.BeginFunc(t.Context(), f.pool, func(tx pgx.Tx) error {
			_, err := svc.ClearBurstLock(t.Context(), tx, "l1", "test", "next round")
			return err
		}))
	}
}
