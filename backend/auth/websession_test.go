package auth_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// A web session lives while used, dies after the idle timeout or the
// absolute lifetime, at logout and with its user's account; only the
// cookie's digest is stored.
func TestWebSessionLifetimes(t *testing.T) {
	ctx := context.Background()
	clock := &testClock{t: time.Date(2026, 3, 2, 7, 0, 0, 0, time.UTC)}
	svc := newService(t, clock.Now)
	idle, maxAge := svc.WebLifetimes()
	require.Equal(t, auth.DefaultWebIdle, idle)
	require.Equal(t, auth.DefaultWebMaxAge, maxAge)
	u, err := svc.CreateUser(ctx, "an.balie", "a long staff password", auth.RoleStaff)
	require.NoError(t, err)
	_, err = svc.CheckPassword(ctx, "an.balie", "wrong password!", auth.LoginFrom{})
	require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	_, err = svc.CheckPassword(ctx, "nobody", "a long staff password", auth.LoginFrom{})
	require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	got, err := svc.CheckPassword(ctx, "an.balie", "a long staff password", auth.LoginFrom{})
	require.NoError(t, err)
	require.Equal(t, u.ID, got.ID)

	ws, err := svc.StartWebSession(ctx, got, "192.0.2.7")
	require.NoError(t, err)
	require.NotEmpty(t, ws.Token)
	require.Len(t, ws.CSRF, 43)

	// Used every 20 minutes, it outlives the idle timeout many times over.
	for i := 0; i < 5; i++ {
		clock.Add(20 * time.Minute)
		s, err := svc.WebSessionFor(ctx, ws.Token, true)
		require.NoError(t, err, "request %d", i)
		assert.Equal(t, ws.CSRF, s.CSRF)
		assert.Equal(t, auth.RoleStaff, s.User.Role)
		assert.Equal(t, "web", s.Principal().TokenKind)
	}
	// Read without touching (a live stream): it still goes idle.
	clock.Add(20 * time.Minute)
	_, err = svc.WebSessionFor(ctx, ws.Token, false)
	require.NoError(t, err)
	clock.Add(11 * time.Minute)
	_, err = svc.WebSessionFor(ctx, ws.Token, true)
	require.ErrorIs(t, err, auth.ErrUnauthenticated, "31 minutes without a request")

	// The absolute lifetime ends a session in use.
	ws2, err := svc.StartWebSession(ctx, got, "192.0.2.7")
	require.NoError(t, err)
	for elapsed := time.Duration(0); elapsed < maxAge-25*time.Minute; elapsed += 25 * time.Minute {
		clock.Add(25 * time.Minute)
		_, err := svc.WebSessionFor(ctx, ws2.Token, true)
		require.NoError(t, err)
	}
	clock.Add(25 * time.Minute)
	_, err = svc.WebSessionFor(ctx, ws2.Token, true)
	require.ErrorIs(t, err, auth.ErrUnauthenticated, "past the absolute lifetime")

	// Logout ends it; so does disabling the user.
	ws3, err := svc.StartWebSession(ctx, got, "")
	require.NoError(t, err)
	require.NoError(t, svc.EndWebSession(ctx, ws3.Token))
	_, err = svc.WebSessionFor(ctx, ws3.Token, true)
	require.ErrorIs(t, err, auth.ErrUnauthenticated)
	require.NoError(t, svc.EndWebSession(ctx, ws3.Token), "twice is fine")
	ws4, err := svc.StartWebSession(ctx, got, "")
	require.NoError(t, err)
	_, err = svc.SetDisabled(ctx, u.ID, true)
	require.NoError(t, err)
	_, err = svc.WebSessionFor(ctx, ws4.Token, true)
	require.ErrorIs(t, err, auth.ErrUnauthenticated)

	// Garbage and an API token are not sessions.
	for _, bad := range []string{"", "kls_short", ws.CSRF} {
		_, err := svc.WebSessionFor(ctx, bad, true)
		require.ErrorIs(t, err, auth.ErrUnauthenticated)
	}

	// Pruning drops what is long over, keeps nothing else alive.
	clock.Add(25 * time.Hour)
	n, err := svc.PruneWebSessions(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 4, n)
}

// Disabling a user ends their console sessions for good, as it revokes
// their API tokens and kiosk sessions: the sessions were only refused
// while the user was disabled, so re-enabling the account (the laptop
// that was lost is found, a leave ends) brought back every console
// session open at the time, on whatever machine it was (found
// black-box: disable, re-enable, and the old cookie opened
// /staff/documents again, where the same account's API session token
// stayed 401).
func TestDisablingEndsWebSessionsForGood(t *testing.T) {
	ctx := context.Background()
	clock := &testClock{t: time.Date(2026, 3, 2, 7, 0, 0, 0, time.UTC)}
	svc := newService(t, clock.Now)
	u, err := svc.CreateUser(ctx, "an.balie", "a long staff password", auth.RoleStaff)
	require.NoError(t, err)
	ws, err := svc.StartWebSession(ctx, u, "192.0.2.7")
	require.NoError(t, err)
	_, err = svc.SetDisabled(ctx, u.ID, true)
	require.NoError(t, err)
	clock.Add(time.Minute)
	_, err = svc.SetDisabled(ctx, u.ID, false)
	require.NoError(t, err)
	_, err = svc.WebSessionFor(ctx, ws.Token, true)
	require.ErrorIs(t, err, auth.ErrUnauthenticated, "a session of before the disabling")
	// A new login works.
	ws2, err := svc.StartWebSession(ctx, u, "192.0.2.7")
	require.NoError(t, err)
	_, err = svc.WebSessionFor(ctx, ws2.Token, true)
	require.NoError(t, err)
	// Re-enabling an enabled user ends nothing.
	_, err = svc.SetDisabled(ctx, u.ID, false)
	require.NoError(t, err)
	_, err = svc.WebSessionFor(ctx, ws2.Token, true)
	require.NoError(t, err)
}
