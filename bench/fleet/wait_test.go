package fleet

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// waitFor looks until check says done, says the progress every 10 s (not
// an empty one), returns check's error at once, the last look's failure
// once the limit has passed, and ctx's error when ctx ends.
func TestWaitFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var said []string
		r := &rig{say: func(f string, a ...any) { said = append(said, fmt.Sprintf(f, a...)) }}
		ctx := t.Context()

		looks := 0
		require.NoError(t, r.waitFor(ctx, time.Minute, time.Second, func() (waitState, error) {
			looks++
			return waitState{done: looks == 25, progress: fmt.Sprintf("look %d", looks)}, nil
		}))
		require.Equal(t, 25, looks)
		require.Equal(t, []string{"look 12", "look 23"}, said, "every 10 s: after 11 s, then 22 s")

		said = nil
		looks = 0
		err := r.waitFor(ctx, 5*time.Second, time.Second, func() (waitState, error) {
			looks++
			return waitState{failure: fmt.Sprintf("%d looks", looks)}, nil
		})
		require.EqualError(t, err, "fleet: 7 looks")
		require.Empty(t, said, "no progress line: nothing said")

		boom := errors.New("boom")
		looks = 0
		err = r.waitFor(ctx, time.Minute, time.Second, func() (waitState, error) {
			looks++
			return waitState{done: true}, boom
		})
		require.ErrorIs(t, err, boom)
		require.Equal(t, 1, looks)

		cctx, cancel := context.WithCancel(ctx)
		go func() {
			time.Sleep(3 * time.Second)
			cancel()
		}()
		err = r.waitFor(cctx, time.Hour, time.Second, func() (waitState, error) { return waitState{}, nil })
		require.ErrorIs(t, err, context.Canceled)
	})
}
