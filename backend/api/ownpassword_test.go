package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/api"
	"kluis/backend/audit"
	"kluis/backend/auth"
)

// Nobody could change their own password: only an admin's reset (PATCH
// /api/v1/users/{id}), which a staff member's token is refused. Now POST
// /api/v1/me/password changes it with the current one: the rule first,
// never the same one, the step-up check (a wrong one counts on the
// session), and every other session and API token of the user ends in
// the same transaction unless the person keeps the tokens; the session
// it is made with stays. Audited, never a password.
func TestChangeOwnPassword(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	staff := e.users[auth.RoleStaff]
	change := func(tok string, body map[string]any) resp {
		t.Helper()
		return e.do("POST", "/api/v1/me/password", tok, body)
	}
	login := func(pw string) string { return e.signIn("test-staff", pw) }
	s1, other := login("password-of-staff"), login("password-of-staff")
	web, err := e.auth.StartWebSession(ctx, staff, "203.0.113.1")
	require.NoError(t, err)
	apiTok := e.tokens[auth.RoleStaff]

	r := change(apiTok, map[string]any{"current_password": "password-of-staff", "new_password": "a brand new passphrase"})
	require.Equal(t, 403, r.status, string(r.body))
	assert.Equal(t, "session_required", r.errCode(), "an API token changes no password")
	r = change(s1, map[string]any{"current_password": "password-of-staff"})
	assert.Equal(t, "missing_field", r.errCode())
	r = change(s1, map[string]any{"current_password": "password-of-staff", "new_password": "short"})
	require.Equal(t, 400, r.status, string(r.body))
	assert.Equal(t, "weak_password", r.errCode())
	r = change(s1, map[string]any{"current_password": "password-of-staff", "new_password": "password-of-staff"})
	assert.Equal(t, "same_password", r.errCode())
	r = change(s1, map[string]any{"current_password": "not my password", "new_password": "a brand new passphrase"})
	require.Equal(t, 403, r.status, string(r.body))
	assert.Equal(t, "wrong_password", r.errCode())

	r = change(s1, map[string]any{"current_password": "password-of-staff", "new_password": "a brand new passphrase"})
	require.Equal(t, 200, r.status, string(r.body))
	var ended auth.Ended
	r.decode(t, &ended)
	assert.Equal(t, auth.Ended{Sessions: 2, APITokens: 1}, ended, "the other API session and the console session; the API token")
	assert.Equal(t, 200, e.do("GET", "/api/v1/me", s1, nil).status, "the session it was made with stays")
	assert.Equal(t, 401, e.do("GET", "/api/v1/me", other, nil).status)
	assert.Equal(t, 401, e.do("GET", "/api/v1/me", apiTok, nil).status)
	_, err = e.auth.WebSessionFor(ctx, web.Token, false)
	assert.ErrorIs(t, err, auth.ErrUnauthenticated)
	assert.Equal(t, 401, e.do("POST", "/api/v1/sessions", "", map[string]string{"username": "test-staff", "password": "password-of-staff"}).status)
	s2 := login("a brand new passphrase")

	// Kept: the API tokens stay; a change from the console keeps its own
	// console session, not an API session.
	kept := e.freshToken(auth.RoleStaff)
	web2, err := e.auth.StartWebSession(ctx, staff, "203.0.113.1")
	require.NoError(t, err)
	r = change(s2, map[string]any{"current_password": "a brand new passphrase", "new_password": "the third passphrase", "keep_api_tokens": true})
	require.Equal(t, 200, r.status, string(r.body))
	assert.Equal(t, 200, e.do("GET", "/api/v1/me", kept, nil).status, "kept")
	_, err = e.auth.WebSessionFor(ctx, web2.Token, false)
	assert.ErrorIs(t, err, auth.ErrUnauthenticated)

	recs, err := audit.List(ctx, e.st.Pool(), audit.ListOptions{Subject: fmt.Sprintf("user:%d", staff.ID), Limit: 1000})
	require.NoError(t, err)
	var updates []map[string]any
	for _, rc := range recs {
		for _, pw := range []string{"a brand new passphrase", "the third passphrase", "password-of-staff", "not my password"} {
			assert.NotContains(t, string(rc.Details), pw)
		}
		if rc.Action == "user.update" {
			var d map[string]any
			require.NoError(t, json.Unmarshal(rc.Details, &d))
			delete(d, "source")
			updates = append(updates, d)
		}
	}
	assert.Equal(t, []map[string]any{
		{"password": "changed", "own": true, "via": "api", "sessions_ended": float64(2), "api_tokens_revoked": float64(1)},
		{"password": "changed", "own": true, "via": "api", "sessions_ended": float64(2), "api_tokens": "kept"},
	}, updates)
}

// The console keeps the console session a password is changed with (by
// its own id: before, ChangePassword compared a console session's id
// with API tokens' ids).
func TestChangeOwnPasswordKeepsTheConsoleSession(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	staff := e.users[auth.RoleStaff]
	web, err := e.auth.StartWebSession(ctx, staff, "203.0.113.1")
	require.NoError(t, err)
	s := e.session(auth.RoleStaff)
	_, err = api.KioskPINs{Pool: e.st.Pool(), Auth: e.auth, Clock: time.Now, Log: quietLogger()}.ChangeOwn(ctx, web.Principal(), api.OwnPasswordChange{Current: "password-of-staff", New: "a brand new passphrase", Source: "203.0.113.1", Via: "console"})
	require.NoError(t, err)
	_, err = e.auth.WebSessionFor(ctx, web.Token, false)
	assert.NoError(t, err, "the console session it was made with stays")
	assert.Equal(t, 401, e.do("GET", "/api/v1/me", s, nil).status)
}
