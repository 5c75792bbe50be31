package hardwaretest

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"kluis/hardware"
)

// Flood writes frames to line (the board side of a pseudo-terminal), one
// after the other and round again, every 200 µs until the returned stop
// is called (also at the end of t): the unsolicited traffic of a
// misbehaving board or a second master, for the tests of the serial
// drivers. stop returns once the writing ended.
func Flood(t testing.TB, line io.Writer, frames [][]byte) (stop func()) {
	t.Helper()
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			default:
			}
			if _, err := line.Write(frames[i%len(frames)]); err != nil {
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	stop = sync.OnceFunc(func() { close(quit); <-done })
	t.Cleanup(stop)
	return stop
}

// Stateful is what StatesShut needs of a driver.
type Stateful interface {
	States(ctx context.Context) ([]hardware.ChannelState, error)
}

// StatesShut reads d's states rounds times and fails t if a door is
// reported open (the caller knows every door is shut) or a read fails
// otherwise than by a timeout.
func StatesShut(t testing.TB, d Stateful, rounds int) {
	t.Helper()
	for round := range rounds {
		states, err := d.States(context.Background())
		if err != nil && !errors.Is(err, hardware.ErrTimeout) {
			t.Fatalf("round %d: states: %v", round, err)
		}
		for _, s := range states {
			if s.DoorOpen {
				t.Fatalf("round %d: door %s reported open; every door is shut", round, s.Addr)
			}
		}
	}
}
