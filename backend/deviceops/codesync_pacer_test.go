package deviceops

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The pacer grants a burst (Workers sends, and one) at once, then one send
// every 1/Rate, to however many callers wait at once; after a quiet spell
// the burst is available again, no more; a wait ends with its context. On
// synctest's clock, so the schedule is exact whatever the load.
func TestPacer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate, workers, each = 20, 2, 6
		every := time.Second / rate
		p := newPacer(rate, workers, time.Now)
		start := time.Now()
		var mu sync.Mutex
		var at []time.Duration
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range each {
					require.NoError(t, p.wait(t.Context()))
					mu.Lock()
					at = append(at, time.Since(start))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		want := []time.Duration{0, 0, 0}
		for i := 1; len(want) < workers*each; i++ {
			want = append(want, time.Duration(i)*every)
		}
		assert.Equal(t, want, at, "a burst of %d, then one every %s", workers+1, every)

		// A quiet spell: the burst again, then the rate.
		time.Sleep(time.Minute)
		start = time.Now()
		var again []time.Duration
		for range 5 {
			require.NoError(t, p.wait(t.Context()))
			again = append(again, time.Since(start))
		}
		assert.Equal(t, []time.Duration{0, 0, 0, every, 2 * every}, again)

		ctx, cancel := context.WithCancel(t.Context())
		go func() { time.Sleep(every / 2); cancel() }()
		assert.ErrorIs(t, p.wait(ctx), context.Canceled, "the next grant is %s away", every)
	})
}

// A pacer's clock set back (an hour) stalls nothing and earns nothing:
// the next sends come at the rate from the earlier time, not an hour
// later. On synctest's clock.
func TestPacerClockSetBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate = 10
		every := time.Second / rate
		var back atomic.Int64 // how far the pacer's clock is set back
		p := newPacer(rate, 0, func() time.Time { return time.Now().Add(-time.Duration(back.Load())) })
		require.NoError(t, p.wait(t.Context()), "the burst of one")
		back.Store(int64(time.Hour))
		start := time.Now()
		var at []time.Duration
		for range 3 {
			require.NoError(t, p.wait(t.Context()))
			at = append(at, time.Since(start))
		}
		assert.Equal(t, []time.Duration{every, 2 * every, 3 * every}, at, "one every %s, the step back neither waited for nor earned", every)
	})
}
