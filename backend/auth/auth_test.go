package auth_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/store/storetest"
)

// cheap are low argon2id costs so tests stay fast under -race.
var cheap = auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1}

func newService(t *testing.T, clock func() time.Time) *auth.Service {
	t.Helper()
	st := storetest.New(t)
	svc, err := auth.New(auth.Options{
		Pool:   st.Pool(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Clock:  clock,
		Params: cheap,
	})
	require.NoError(t, err)
	return svc
}

func TestPasswordHashRoundTrip(t *testing.T) {
	h, err := auth.HashPassword("correct horse battery", cheap)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(h, "$argon2id$v=19$m=1024,t=1,p=1$"), h)
	assert.NotContains(t, h, "correct horse")

	ok, err := auth.VerifyPassword(h, "correct horse battery")
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = auth.VerifyPassword(h, "correct horse batterY")
	require.NoError(t, err)
	assert.False(t, ok)

	h2, err := auth.HashPassword("correct horse battery", cheap)
	require.NoError(t, err)
	assert.NotEqual(t, h, h2, "salts must differ")

	for _, bad := range []string{"", "$argon2i$v=19$m=1,t=1,p=1$AAAA$AAAA", "$argon2id$v=19$m=x$AAAA$AAAA", "$argon2id$v=19$m=1024,t=1,p=1$!!$AAAA"} {
		_, err := auth.VerifyPassword(bad, "x")
		assert.ErrorIs(t, err, auth.ErrMalformedHash, bad)
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range auth.Roles() {
		got, err := auth.ParseRole(string(r))
		require.NoError(t, err)
		assert.Equal(t, r, got)
	}
	_, err := auth.ParseRole("root")
	assert.ErrorIs(t, err, auth.ErrInvalidRole)
}

func TestUsersLoginAndTokens(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	clock := storetest.NewClock(now)
	svc := newService(t, clock.Now)

	u, err := svc.CreateUser(ctx, "an.desmet", "a long enough password", auth.RoleStaff)
	require.NoError(t, err)
	assert.Equal(t, auth.RoleStaff, u.Role)

	_, err = svc.CreateUser(ctx, "an.desmet", "another long password", auth.RoleAdmin)
	assert.ErrorIs(t, err, auth.ErrUserExists)
	_, err = svc.CreateUser(ctx, "An Desmet", "a long enough password", auth.RoleStaff)
	assert.ErrorIs(t, err, auth.ErrInvalidUsername)
	_, err = svc.CreateUser(ctx, "bert", "short", auth.RoleStaff)
	assert.ErrorIs(t, err, auth.ErrWeakPassword)
	_, err = svc.CreateUser(ctx, "bert", "a long enough password", auth.Role("root"))
	assert.ErrorIs(t, err, auth.ErrInvalidRole)

	_, err = svc.Login(ctx, "an.desmet", "wrong password!!", auth.LoginFrom{})
	assert.ErrorIs(t, err, auth.ErrInvalidCredentials)
	_, err = svc.Login(ctx, "nobody", "a long enough password", auth.LoginFrom{})
	assert.ErrorIs(t, err, auth.ErrInvalidCredentials)

	sess, err := svc.Login(ctx, "an.desmet", "a long enough password", auth.LoginFrom{})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(sess.Token, auth.TokenPrefix))
	require.NotNil(t, sess.ExpiresAt)

	p, err := svc.Authenticate(ctx, sess.Token)
	require.NoError(t, err)
	assert.Equal(t, u.ID, p.ID)
	assert.Equal(t, "session", p.TokenKind)

	// Tampered and garbage tokens.
	last := "A"
	if strings.HasSuffix(sess.Token, "A") {
		last = "B"
	}
	_, err = svc.Authenticate(ctx, sess.Token[:len(sess.Token)-1]+last)
	assert.ErrorIs(t, err, auth.ErrUnauthenticated)
	_, err = svc.Authenticate(ctx, "Bearer nonsense")
	assert.ErrorIs(t, err, auth.ErrUnauthenticated)

	// Sessions expire after 12 h, API tokens after their lifetime (default 90 days).
	api, err := svc.CreateAPIToken(ctx, u.ID, "ci")
	require.NoError(t, err)
	require.NotNil(t, api.ExpiresAt)
	assert.Equal(t, now.Add(auth.DefaultAPITokenTTL), *api.ExpiresAt)
	clock.Set(now.Add(13 * time.Hour))
	_, err = svc.Authenticate(ctx, sess.Token)
	assert.ErrorIs(t, err, auth.ErrUnauthenticated, "session must expire after 12h")
	_, err = svc.Authenticate(ctx, api.Token)
	require.NoError(t, err)

	toks, err := svc.ListTokens(ctx, u.ID, 0, 10, false)
	require.NoError(t, err)
	assert.Len(t, toks, 2)
	assert.Equal(t, api.ID, toks[0].ID, "newest first")
	toks, err = svc.ListTokens(ctx, u.ID, api.ID, 10, false)
	require.NoError(t, err)
	require.Len(t, toks, 1)
	assert.Equal(t, sess.ID, toks[0].ID, "keyset: ids below the cursor")

	// Revocation.
	require.NoError(t, svc.Revoke(ctx, u.ID, api.ID))
	_, err = svc.Authenticate(ctx, api.Token)
	assert.ErrorIs(t, err, auth.ErrUnauthenticated)
	assert.ErrorIs(t, svc.Revoke(ctx, u.ID+1000, api.ID), auth.ErrNotFound)

	// Disabling a user kills login and tokens; re-enabling allows login again.
	api2, err := svc.CreateAPIToken(ctx, u.ID, "ci2")
	require.NoError(t, err)
	_, err = svc.SetDisabled(ctx, u.ID, true)
	require.NoError(t, err)
	_, err = svc.Authenticate(ctx, api2.Token)
	assert.ErrorIs(t, err, auth.ErrUnauthenticated)
	_, err = svc.Login(ctx, "an.desmet", "a long enough password", auth.LoginFrom{})
	assert.ErrorIs(t, err, auth.ErrInvalidCredentials)
	_, err = svc.SetDisabled(ctx, u.ID, false)
	require.NoError(t, err)
	_, err = svc.Authenticate(ctx, api2.Token)
	assert.ErrorIs(t, err, auth.ErrUnauthenticated, "tokens revoked by disabling stay revoked")

	require.NoError(t, svc.SetPassword(ctx, u.ID, "a brand new password"))
	_, err = svc.Login(ctx, "an.desmet", "a long enough password", auth.LoginFrom{})
	assert.ErrorIs(t, err, auth.ErrInvalidCredentials)
	_, err = svc.Login(ctx, "an.desmet", "a brand new password", auth.LoginFrom{})
	require.NoError(t, err)
}

func TestEnsureAdminOnlyOnce(t *testing.T) {
	ctx := context.Background()
	svc := newService(t, nil)
	created, err := svc.EnsureAdmin(ctx, "admin", "bootstrap password 1")
	require.NoError(t, err)
	assert.True(t, created)
	created, err = svc.EnsureAdmin(ctx, "admin2", "bootstrap password 2")
	require.NoError(t, err)
	assert.False(t, created)
	users, err := svc.ListUsers(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, users, 1)
	assert.Equal(t, auth.RoleAdmin, users[0].Role)
	_, err = svc.GetUser(ctx, users[0].ID+99)
	assert.True(t, errors.Is(err, auth.ErrNotFound))
}

// TestEndedTokensArePruned: PruneTokens deletes the tokens that expired
// or were revoked (whichever came first) before the cutoff, a batch at a
// time, and keeps those that ended since and those still valid; the
// token list can keep only the active ones. A token without an expiry
// cannot exist.
func TestEndedTokensArePruned(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	clock := storetest.NewClock(now)
	st := storetest.New(t)
	svc, err := auth.New(auth.Options{Pool: st.Pool(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: clock.Now, Params: cheap})
	require.NoError(t, err)
	u, err := svc.CreateUser(ctx, "an.desmet", "a long enough password", auth.RoleStaff)
	require.NoError(t, err)

	// Made 40 days ago: a session (expired after 12 h), an API token
	// revoked then, one revoked 10 days ago, one expired 10 days ago and
	// one still valid.
	clock.Set(now.Add(-40 * 24 * time.Hour))
	oldSession, err := svc.Login(ctx, "an.desmet", "a long enough password", auth.LoginFrom{})
	require.NoError(t, err)
	revokedOld, err := svc.CreateAPIToken(ctx, u.ID, "revoked long ago")
	require.NoError(t, err)
	require.NoError(t, svc.Revoke(ctx, u.ID, revokedOld.ID))
	revokedNew, err := svc.CreateAPIToken(ctx, u.ID, "revoked lately")
	require.NoError(t, err)
	expiredNew, err := svc.CreateAPITokenTTL(ctx, u.ID, "expired lately", 30*24*time.Hour)
	require.NoError(t, err)
	valid, err := svc.CreateAPIToken(ctx, u.ID, "still valid")
	require.NoError(t, err)
	clock.Set(now.Add(-10 * 24 * time.Hour))
	require.NoError(t, svc.Revoke(ctx, u.ID, revokedNew.ID))
	clock.Set(now)

	ids := func(active bool) []int64 {
		t.Helper()
		toks, err := svc.ListTokens(ctx, u.ID, 0, 100, active)
		require.NoError(t, err)
		out := []int64{}
		for _, tk := range toks {
			out = append(out, tk.ID)
		}
		return out
	}
	assert.Equal(t, []int64{valid.ID, expiredNew.ID, revokedNew.ID, revokedOld.ID, oldSession.ID}, ids(false))
	assert.Equal(t, []int64{valid.ID}, ids(true), "only the active token")

	cutoff := now.Add(-auth.EndedTokenRetention)
	n, err := auth.PruneTokens(ctx, st.Pool(), cutoff, 1)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "a batch at most")
	n, err = auth.PruneTokens(ctx, st.Pool(), cutoff, 100)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = auth.PruneTokens(ctx, st.Pool(), cutoff, 100)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, []int64{valid.ID, expiredNew.ID, revokedNew.ID}, ids(false), "what ended within the retention stays listed")

	// A token without an end cannot be stored (expires_at NOT NULL since
	// migration 0100): every token ends, so PruneTokens reaches each one
	// (LEAST ignores a NULL revoked_at) EndedTokenRetention after its end.
	_, err = st.Pool().Exec(ctx, `UPDATE auth_tokens SET expires_at = NULL WHERE id = $1`, valid.ID)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "23502", pgErr.Code, "not_null_violation")
}
