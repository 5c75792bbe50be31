package idlemem

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// activity is a stand-in for the engine's Changed: a channel closed and
// replaced at every change.
type activity struct {
	mu sync.Mutex
	ch chan struct{}
}

func newActivity() *activity { return &activity{ch: make(chan struct{})} }

func (a *activity) Changed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ch
}

func (a *activity) change() {
	a.mu.Lock()
	defer a.mu.Unlock()
	close(a.ch)
	a.ch = make(chan struct{})
}

// Memory is returned once after the start-up's quiet period, not again
// while nothing happens (the heap does not grow), not while activity keeps
// coming more often than the quiet period, and once after each burst has
// been followed by a quiet period.
func TestReturnsOncePerQuietPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		a := newActivity()
		var mu sync.Mutex
		var freed []time.Duration
		frees := func() []time.Duration {
			mu.Lock()
			defer mu.Unlock()
			return append([]time.Duration(nil), freed...)
		}
		t0 := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			Run(ctx, Options{Changed: a.Changed, Quiet: 30 * time.Second, Heap: func() uint64 { return 3 << 20 }, Free: func() {
				mu.Lock()
				defer mu.Unlock()
				freed = append(freed, time.Since(t0))
			}})
		}()

		time.Sleep(29 * time.Second)
		synctest.Wait()
		require.Empty(t, frees(), "nothing before the first quiet period")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.Equal(t, []time.Duration{30 * time.Second}, frees(), "the start-up's garbage, after 30 s")

		time.Sleep(10 * time.Minute)
		synctest.Wait()
		require.Len(t, frees(), 1, "nothing again while nothing happens")

		// A burst: a change every 20 s for two minutes, then quiet.
		burst := time.Since(t0)
		for range 6 {
			a.change()
			time.Sleep(20 * time.Second)
			synctest.Wait()
			require.Len(t, frees(), 1, "nothing while the kiosk is in use")
		}
		time.Sleep(11 * time.Second)
		synctest.Wait()
		require.Equal(t, []time.Duration{30 * time.Second, burst + 100*time.Second + 30*time.Second}, frees(),
			"30 s after the burst's last change")

		time.Sleep(time.Hour)
		synctest.Wait()
		require.Len(t, frees(), 2)
		cancel()
		<-done
	})
}

// Run returns when its context ends, quiet period pending or not, and
// returns nothing then.
func TestStopsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		a := newActivity()
		freed := make(chan struct{}, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			Run(ctx, Options{Changed: a.Changed, Free: func() { freed <- struct{}{} }})
		}()
		time.Sleep(DefaultQuiet - time.Second)
		cancel()
		<-done
		require.Empty(t, freed)
	})
}

// During a long quiet period the background work's garbage is returned
// too: once the heap has grown by Slack since the last return, at the
// next check (every Quiet), and not before.
func TestReturnsAgainWhenTheHeapGrowsWhileQuiet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var mu sync.Mutex
		heap, frees := uint64(1<<20), 0
		grow := func(n uint64) {
			mu.Lock()
			defer mu.Unlock()
			heap += n
		}
		count := func() int {
			mu.Lock()
			defer mu.Unlock()
			return frees
		}
		go Run(ctx, Options{Changed: newActivity().Changed, Quiet: 30 * time.Second, Slack: 1 << 20,
			Heap: func() uint64 {
				mu.Lock()
				defer mu.Unlock()
				return heap
			},
			Free: func() {
				mu.Lock()
				defer mu.Unlock()
				frees++
				heap = 1 << 20 // the live part
			}})
		time.Sleep(31 * time.Second)
		synctest.Wait()
		require.Equal(t, 1, count(), "after the start")

		grow(1<<20 - 1)
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		require.Equal(t, 1, count(), "grown by less than the slack")

		grow(1) // at 5 min 31 s; checks every 30 s from the start
		time.Sleep(28 * time.Second)
		synctest.Wait()
		require.Equal(t, 1, count(), "not before the next check")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.Equal(t, 2, count(), "grown by the slack: returned at the next check")

		time.Sleep(10 * time.Minute)
		synctest.Wait()
		require.Equal(t, 2, count(), "back to the live part: nothing more")
	})
}
