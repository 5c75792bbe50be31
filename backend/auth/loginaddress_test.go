package auth_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/store/storetest"
)

// Password spraying: one address tries one common password on many
// usernames, each within its own per-username limits. Measured black-box
// before this limit: 40 usernames from one address, 40 evaluated guesses
// (all 401, none refused). From 20 failures of an address within 15
// minutes on, its attempts for usernames it never logged in as wait the
// back-off (1 s doubling, at most a minute) after its latest failure;
// colleagues behind the same address keep logging in as themselves, and
// other addresses are not affected.
func TestLoginLimitsAddressBackoff(t *testing.T) {
	st := storetest.New(t)
	l := auth.NewLoginLimits(st.Pool())
	ctx := context.Background()
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	const office = "203.0.113.9"
	require.Equal(t, "ok", try(t, l, "an.desmet", office, now.Add(-time.Hour), true), "An logged in from the office before")
	for i := 0; i < 20; i++ {
		require.Equal(t, "failed", try(t, l, fmt.Sprintf("spray%d", i), office, now, false), "attempt %d", i)
	}
	ref, err := l.Begin(ctx, "spray20", office, now)
	require.NoError(t, err)
	require.NotNil(t, ref, "the 21st username from the address waits")
	assert.True(t, ref.Address)
	assert.False(t, ref.Source)
	assert.Equal(t, now.Add(time.Second), ref.Until)
	ref, err = l.Begin(ctx, "newcomer", office, now)
	require.NoError(t, err)
	require.NotNil(t, ref, "a username never logged in from here waits too")
	assert.Equal(t, "ok", try(t, l, "an.desmet", office, now, true), "a known (username, address) does not wait")
	assert.Equal(t, "failed", try(t, l, "spray20", "198.51.100.7", now, false), "another address is not affected")

	// The back-off grows with every further failure, up to a minute, and
	// then lets one attempt through per minute: never a lock.
	at := now
	var waits []time.Duration
	for i := 0; i < 12; i++ {
		ref, err := l.Begin(ctx, fmt.Sprintf("more%d", i), office, at)
		require.NoError(t, err)
		require.NotNil(t, ref, "attempt %d right after a failure", i)
		require.True(t, ref.Address)
		waits = append(waits, ref.Until.Sub(at))
		at = ref.Until
		require.Equal(t, "failed", try(t, l, fmt.Sprintf("more%d", i), office, at, false), "attempt %d after its wait", i)
	}
	assert.Equal(t, time.Second, waits[0])
	assert.Equal(t, 2*time.Second, waits[1])
	for _, w := range waits {
		assert.LessOrEqual(t, w, time.Minute)
	}
	assert.Equal(t, time.Minute, waits[len(waits)-1])

	// After the window the address starts afresh.
	later := at.Add(16 * time.Minute)
	assert.Equal(t, "failed", try(t, l, "spray-late", office, later, false))
}

// Concurrent attempts for distinct usernames from one address on two
// instances let exactly the free 20 through (the per-source lock).
func TestLoginLimitsAddressBackoffConcurrent(t *testing.T) {
	st := storetest.New(t)
	ls := []*auth.LoginLimits{auth.NewLoginLimits(st.Pool()), auth.NewLoginLimits(st.Pool())}
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	var (
		mu      sync.Mutex
		through int
		wg      sync.WaitGroup
	)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref, err := ls[i%2].Begin(context.Background(), fmt.Sprintf("spray%d", i), "203.0.113.9", now)
			if !assert.NoError(t, err) {
				return
			}
			if ref == nil {
				mu.Lock()
				through++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 20, through)
}
