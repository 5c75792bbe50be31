package auth_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/store/storetest"
)

// try is one login attempt through l: "refused", "source", or the outcome
// given (a success is recorded, a failure stays counted).
func try(t *testing.T, l *auth.LoginLimits, user, src string, now time.Time, ok bool) string {
	t.Helper()
	ctx := context.Background()
	ref, err := l.Begin(ctx, user, src, now)
	require.NoError(t, err)
	switch {
	case ref != nil && ref.Source:
		return "source"
	case ref != nil:
		return "refused"
	case ok:
		require.NoError(t, l.Succeed(ctx, user, src, now))
		return "ok"
	}
	return "failed"
}

// Two LoginLimits on one database, as two replicas have, see each other's
// failures; a new one (a restarted backend) keeps them; a clear on one
// lifts the limits on all.
func TestLoginLimitsSharedAcrossInstances(t *testing.T) {
	st := storetest.New(t)
	a, b := auth.NewLoginLimits(st.Pool()), auth.NewLoginLimits(st.Pool())
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	const guesser = "203.0.113.9"
	for i := 0; i < 5; i++ {
		require.Equal(t, "failed", try(t, []*auth.LoginLimits{a, b}[i%2], "An.Desmet", guesser, now.Add(time.Duration(i)*time.Second), false))
	}
	for _, l := range []*auth.LoginLimits{a, b, auth.NewLoginLimits(st.Pool())} {
		ref, err := l.Begin(context.Background(), " an.desmet", guesser, now.Add(time.Minute))
		require.NoError(t, err)
		require.NotNil(t, ref, "5 failures over two instances lock the address everywhere, after a restart too")
		assert.True(t, ref.Source)
		assert.Equal(t, now.Add(15*time.Minute), ref.Until, "until the oldest of the five leaves the window")
	}
	assert.Equal(t, "ok", try(t, b, "an.desmet", "198.51.100.7", now.Add(time.Minute), true), "another address is not locked")

	// The per-username back-off, counted over both instances: with the
	// guesser's five, ten failures.
	for i := 0; i < 5; i++ {
		src := fmt.Sprintf("192.0.2.%d", i+1)
		require.Equal(t, "failed", try(t, []*auth.LoginLimits{a, b}[i%2], "an.desmet", src, now.Add(2*time.Minute), false), "attempt %d", i)
	}
	assert.Equal(t, "refused", try(t, a, "an.desmet", "192.0.2.200", now.Add(2*time.Minute), true), "from 10 failures an attempt waits")
	assert.Equal(t, "ok", try(t, a, "an.desmet", "198.51.100.7", now.Add(2*time.Minute), true), "a known address does not wait")

	n, err := b.Clear(context.Background(), "AN.DESMET")
	require.NoError(t, err)
	assert.Equal(t, 10, n, "every counted failure of the user")
	assert.Equal(t, "ok", try(t, a, "an.desmet", guesser, now.Add(2*time.Minute), true), "cleared on the other instance")
	assert.Equal(t, "ok", try(t, a, "an.desmet", "192.0.2.201", now.Add(2*time.Minute), true))
}

// Concurrent attempts from one address on two instances let exactly five
// through (an attempt is counted before its password is checked, under a
// per-username lock), and concurrent users do not disturb each other.
func TestLoginLimitsConcurrent(t *testing.T) {
	st := storetest.New(t)
	ls := []*auth.LoginLimits{auth.NewLoginLimits(st.Pool()), auth.NewLoginLimits(st.Pool())}
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	var (
		mu      sync.Mutex
		through = map[string]int{}
		wg      sync.WaitGroup
	)
	for i := 0; i < 24; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := []string{"guessed", "other"}[i%2]
			ref, err := ls[(i/2)%2].Begin(context.Background(), user, "203.0.113.9", now)
			if !assert.NoError(t, err) {
				return
			}
			if ref == nil {
				mu.Lock()
				through[user]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, map[string]int{"guessed": 5, "other": 5}, through)
}

// The table holds only the window: every write prunes expired rows, so a
// flood of usernames and addresses does not make it grow without bound,
// and the rightful user's known addresses stay at most 8.
func TestLoginLimitsPrunedOnWrite(t *testing.T) {
	st := storetest.New(t)
	l := auth.NewLoginLimits(st.Pool())
	ctx := context.Background()
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 150; i++ {
		require.Equal(t, "failed", try(t, l, fmt.Sprintf("spray%d", i), fmt.Sprintf("203.0.%d.%d", i/200, i%200), now, false))
	}
	count := func(table string) int {
		var n int
		require.NoError(t, st.Pool().QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n))
		return n
	}
	assert.Equal(t, 150, count("auth_login_failures"))
	later := now.Add(16 * time.Minute)
	require.Equal(t, "failed", try(t, l, "spray-late", "198.51.100.1", later, false))
	assert.Equal(t, 51, count("auth_login_failures"), "one write deletes up to 100 expired rows")
	require.Equal(t, "failed", try(t, l, "spray-late", "198.51.100.1", later, false))
	assert.Equal(t, 2, count("auth_login_failures"), "only the window is left")

	for i := 0; i < 20; i++ {
		require.Equal(t, "ok", try(t, l, "one", fmt.Sprintf("192.0.2.%d", i), now.Add(time.Duration(i)*time.Second), true))
	}
	var srcs []string
	rows, err := st.Pool().Query(ctx, "SELECT source FROM auth_login_sources WHERE username = 'one' ORDER BY source")
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		srcs = append(srcs, s)
	}
	require.NoError(t, rows.Err())
	assert.Len(t, srcs, 8, "the oldest known addresses are forgotten")
	assert.Contains(t, srcs, "192.0.2.19")
	require.Equal(t, "ok", try(t, l, "two", "192.0.2.1", now.Add(31*24*time.Hour), true))
	assert.Equal(t, 1, count("auth_login_sources"), "addresses older than 30 days are forgotten on write")
}

// Without the database a login is refused with ErrLimitsUnavailable, not
// let through uncounted.
func TestLoginLimitsDatabaseDown(t *testing.T) {
	st := storetest.New(t)
	pool, err := pgxpool.New(context.Background(), st.Pool().Config().ConnString())
	require.NoError(t, err)
	pool.Close()
	l := auth.NewLoginLimits(pool)
	ref, err := l.Begin(context.Background(), "an.desmet", "203.0.113.9", time.Now())
	assert.ErrorIs(t, err, auth.ErrLimitsUnavailable)
	assert.Nil(t, ref)
	assert.ErrorIs(t, l.Succeed(context.Background(), "an.desmet", "203.0.113.9", time.Now()), auth.ErrLimitsUnavailable)
	_, err = l.Clear(context.Background(), "an.desmet")
	assert.ErrorIs(t, err, auth.ErrLimitsUnavailable)
}

// Prune removes what writes would have removed had a login come: after a
// burst and silence, the failures older than the window (more than one
// batch of them) and the addresses not used for 30 days go, as of the
// time it is given; the window's rows and recent addresses stay, and the
// limits they carry still hold.
func TestLoginLimitsPrunedWithoutLogins(t *testing.T) {
	st := storetest.New(t)
	l := auth.NewLoginLimits(st.Pool())
	ctx := context.Background()
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 230; i++ {
		require.Equal(t, "failed", try(t, l, fmt.Sprintf("spray%d", i), fmt.Sprintf("203.0.%d.%d", i/200, i%200), now, false))
	}
	for i := 0; i < 4; i++ {
		require.Equal(t, "failed", try(t, l, "an", "198.51.100.1", now.Add(10*time.Minute), false))
	}
	// (In this order: a login prunes the addresses older than its own
	// time's 30 days.)
	require.Equal(t, "ok", try(t, l, "recent", "192.0.2.2", now.Add(-24*time.Hour), true))
	require.Equal(t, "ok", try(t, l, "old", "192.0.2.1", now.Add(-31*24*time.Hour), true))
	count := func(table string) int {
		var n int
		require.NoError(t, st.Pool().QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n))
		return n
	}
	require.Equal(t, 234, count("auth_login_failures"))
	require.Equal(t, 2, count("auth_login_sources"))

	n, err := l.Prune(ctx, now.Add(10*time.Minute))
	require.NoError(t, err)
	assert.Equal(t, 1, n, "within the window only the 31-day-old address goes")
	assert.Equal(t, 234, count("auth_login_failures"))

	n, err = l.Prune(ctx, now.Add(16*time.Minute))
	require.NoError(t, err)
	assert.Equal(t, 230, n, "every failure older than the window, beyond one batch")
	assert.Equal(t, 4, count("auth_login_failures"), "the window's failures stay")
	assert.Equal(t, 1, count("auth_login_sources"), "the address used yesterday stays")
	require.Equal(t, "failed", try(t, l, "an", "198.51.100.1", now.Add(16*time.Minute), false))
	assert.Equal(t, "source", try(t, l, "an", "198.51.100.1", now.Add(16*time.Minute), false),
		"the failures kept still lock the address")

	n, err = l.Prune(ctx, now.Add(time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	assert.Zero(t, count("auth_login_failures"))
}

// Names PostgreSQL cannot store or index (NUL, invalid UTF-8, longer than
// an index row) are counted like any other and never make the limits
// fail; the password check refuses them as wrong credentials. Before, the
// console's login with a username "%00x" answered 503 "logins
// unavailable" and with "%ffx" 500, each logged as an error.
func TestLoginLimitsTakeAnyUsername(t *testing.T) {
	st := storetest.New(t)
	l := auth.NewLoginLimits(st.Pool())
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	long := make([]byte, 12000)
	for i := range long {
		long[i] = byte('a' + (i*7919)%26)
	}
	for _, name := range []string{"a\x00b", "\xffx", string(long), "\x00"} {
		for i := 0; i < 5; i++ {
			require.Equal(t, "failed", try(t, l, name, "203.0.113.9", now, false), "%.20q", name)
		}
		assert.Equal(t, "source", try(t, l, name, "203.0.113.9", now, false), "%.20q counted", name)
		assert.Equal(t, "ok", try(t, l, name, "198.51.100.7", now, true), "%.20q from elsewhere", name)
	}
	svc, err := auth.New(auth.Options{Pool: st.Pool(), Params: cheap})
	require.NoError(t, err)
	for _, name := range []string{"a\x00b", "\xffx", string(long)} {
		_, err := svc.CheckPassword(context.Background(), name, "Winter2026!", auth.LoginFrom{})
		assert.ErrorIs(t, err, auth.ErrInvalidCredentials, "%.20q", name)
	}
}
