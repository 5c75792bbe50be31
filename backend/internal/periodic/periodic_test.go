package periodic

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// passes records when each pass ran, counted from t0.
type passes struct {
	mu sync.Mutex
	t0 time.Time
	at []time.Duration
}

func (p *passes) pass(context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.at = append(p.at, time.Since(p.t0))
}

func (p *passes) list() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.at...)
}

// run starts l in the bubble and returns a stop function that cancels it
// and returns Run's error.
func run(t *testing.T, l Loop, p *passes) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	p.t0 = time.Now()
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, p.pass) }()
	return func() error {
		cancel()
		return <-done
	}
}

// By default the first pass runs at once, then one every interval; Run
// returns ctx's error once ctx ends, and no pass follows.
func TestRunAtOnceThenEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p passes
		stop := run(t, Loop{Every: time.Minute}, &p)
		synctest.Wait()
		require.Equal(t, []time.Duration{0}, p.list())
		time.Sleep(3*time.Minute + time.Second)
		require.Equal(t, []time.Duration{0, time.Minute, 2 * time.Minute, 3 * time.Minute}, p.list())
		require.ErrorIs(t, stop(), context.Canceled)
		time.Sleep(time.Hour)
		require.Len(t, p.list(), 4, "no pass after the end")
	})
}

// Delayed: the first pass comes after one interval.
func TestRunDelayed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p passes
		stop := run(t, Loop{Every: time.Minute, Delayed: true}, &p)
		time.Sleep(time.Minute - time.Second)
		require.Empty(t, p.list())
		time.Sleep(time.Minute + 2*time.Second)
		require.Equal(t, []time.Duration{time.Minute, 2 * time.Minute}, p.list())
		require.ErrorIs(t, stop(), context.Canceled)
	})
}

// Wake makes a pass at once; the interval's passes go on as before.
func TestRunWake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p passes
		wake := make(chan struct{})
		stop := run(t, Loop{Every: time.Minute, Wake: wake}, &p)
		time.Sleep(10 * time.Second)
		wake <- struct{}{}
		synctest.Wait()
		time.Sleep(51 * time.Second)
		require.Equal(t, []time.Duration{0, 10 * time.Second, time.Minute}, p.list())
		require.ErrorIs(t, stop(), context.Canceled)
	})
}

// A pass gets the loop's context, so a pass under way sees the end.
func TestPassGetsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		ended := make(chan error, 1)
		done := make(chan error, 1)
		go func() {
			done <- Loop{Every: time.Minute}.Run(ctx, func(ctx context.Context) {
				<-ctx.Done()
				ended <- ctx.Err()
			})
		}()
		synctest.Wait()
		cancel()
		require.ErrorIs(t, <-ended, context.Canceled)
		require.ErrorIs(t, <-done, context.Canceled)
	})
}

// A non-positive interval is refused with an error, not a panic, and no
// pass runs.
func TestRunRefusesNoInterval(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		ran := false
		err := Loop{Every: d}.Run(t.Context(), func(context.Context) { ran = true })
		require.ErrorContains(t, err, "interval must be positive")
		require.False(t, ran)
	}
}
