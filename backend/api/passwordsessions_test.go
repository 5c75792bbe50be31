package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/auth"
)

// An admin resets a password because someone else knew it: before, every
// session signed in with the old password stayed valid (up to 12 h; the
// console's up to its own limits). Now the reset ends the user's login
// sessions, API and console, at once, and the user's API tokens too (one
// made with a stolen session outlived the reset: the newcomer's attack,
// 2026-12-07) unless the admin keeps them (keep_api_tokens); an admin
// changing their own password keeps the session they did it with.
func TestPasswordChangeEndsSessions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	staff := e.users[auth.RoleStaff]
	login := func(user, pw string) string {
		r := e.do("POST", "/api/v1/sessions", "", map[string]string{"username": user, "password": pw})
		require.Equal(t, 201, r.status, string(r.body))
		var iss auth.Issued
		r.decode(t, &iss)
		return iss.Token
	}
	s1, s2 := login("test-staff", "password-of-staff"), login("test-staff", "password-of-staff")
	web, err := e.auth.StartWebSession(ctx, staff, "203.0.113.1")
	require.NoError(t, err)
	apiTok := e.tokens[auth.RoleStaff]
	for _, tok := range []string{s1, s2, apiTok} {
		require.Equal(t, 200, e.do("GET", "/api/v1/me", tok, nil).status)
	}

	admin := e.tokens[auth.RoleAdmin]
	r := e.do("PATCH", fmt.Sprintf("/api/v1/users/%d", staff.ID), admin, map[string]any{"password": "a new password for An"})
	require.Equal(t, 200, r.status, string(r.body))
	for _, tok := range []string{s1, s2} {
		r = e.do("GET", "/api/v1/me", tok, nil)
		assert.Equal(t, 401, r.status, "a session signed in with the old password ended")
	}
	_, err = e.auth.WebSessionFor(ctx, web.Token, false)
	assert.ErrorIs(t, err, auth.ErrUnauthenticated, "the console session ended too")
	assert.Equal(t, 401, e.do("GET", "/api/v1/me", apiTok, nil).status, "an API token ends too")
	assert.Equal(t, 401, e.do("POST", "/api/v1/sessions", "", map[string]string{"username": "test-staff", "password": "password-of-staff"}).status)
	login("test-staff", "a new password for An")

	recs, err := audit.List(ctx, e.st.Pool(), audit.ListOptions{Subject: fmt.Sprintf("user:%d", staff.ID)})
	require.NoError(t, err)
	var details map[string]any
	for _, rc := range recs {
		if rc.Action == "user.update" {
			require.NoError(t, json.Unmarshal(rc.Details, &details))
		}
	}
	assert.Equal(t, map[string]any{"password": "changed", "sessions_ended": float64(3), "api_tokens_revoked": float64(1)}, details)

	// A forgotten password: the admin keeps the user's API tokens.
	kept := e.freshToken(auth.RoleStaff)
	r = e.do("PATCH", fmt.Sprintf("/api/v1/users/%d", staff.ID), admin, map[string]any{"keep_api_tokens": true})
	assert.Equal(t, "missing_field", r.errCode(), "keep_api_tokens goes with a password")
	r = e.do("PATCH", fmt.Sprintf("/api/v1/users/%d", staff.ID), admin, map[string]any{"password": "An forgot the last one", "keep_api_tokens": true})
	require.Equal(t, 200, r.status, string(r.body))
	assert.Equal(t, 200, e.do("GET", "/api/v1/me", kept, nil).status, "kept")
	recs, err = audit.List(ctx, e.st.Pool(), audit.ListOptions{Subject: fmt.Sprintf("user:%d", staff.ID)})
	require.NoError(t, err)
	details = nil
	require.NoError(t, json.Unmarshal(recs[len(recs)-1].Details, &details))
	assert.Equal(t, map[string]any{"password": "changed", "sessions_ended": float64(1), "api_tokens": "kept"}, details)

	// An admin changing their own password keeps this session, not others.
	a1, a2 := login("test-admin", "password-of-admin"), login("test-admin", "password-of-admin")
	r = e.do("PATCH", fmt.Sprintf("/api/v1/users/%d", e.users[auth.RoleAdmin].ID), a1, map[string]any{"password": "the admin's new password"})
	require.Equal(t, 200, r.status, string(r.body))
	assert.Equal(t, 200, e.do("GET", "/api/v1/me", a1, nil).status, "the session used keeps working")
	assert.Equal(t, 401, e.do("GET", "/api/v1/me", a2, nil).status, "the other one ended")
}

// A session taken from someone (12 hours of it) made an API token that
// outlived it and the victim's password reset. A new token now needs the
// password again: none is 400 missing_field, a wrong one 403
// wrong_password, audited as a failed login, and counted against the
// login limits (after five the right password is refused too, at login
// as here).
func TestAPITokenNeedsThePassword(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tech := e.users[auth.RoleTechnician]
	session := e.session(auth.RoleTechnician)
	create := func(pw string) resp {
		t.Helper()
		body := map[string]any{"name": "ci"}
		if pw != "" {
			body["current_password"] = pw
		}
		return e.do("POST", "/api/v1/tokens", session, body)
	}
	r := create("")
	require.Equal(t, 400, r.status, string(r.body))
	assert.Equal(t, "missing_field", r.errCode())
	for i := 0; i < 5; i++ {
		r = create("a guess")
		require.Equal(t, 403, r.status, string(r.body))
		assert.Equal(t, "wrong_password", r.errCode())
	}
	r = create("password-of-technician")
	assert.Equal(t, 429, r.status, "the same limits as a login: %s", r.body)
	assert.Equal(t, "too_many_attempts", r.errCode())
	assert.NotEmpty(t, r.header.Get("Retry-After"))
	r = e.do("POST", "/api/v1/sessions", "", map[string]string{"username": "test-technician", "password": "password-of-technician"})
	assert.Equal(t, 429, r.status, "the guesses count against logins")

	recs, err := audit.List(ctx, e.st.Pool(), audit.ListOptions{Subject: fmt.Sprintf("user:%d", tech.ID), Limit: 1000})
	require.NoError(t, err)
	failed := 0
	for _, rc := range recs {
		assert.NotEqual(t, "token.create", rc.Action, "no token was made")
		if rc.Action == "login.failed" {
			var d map[string]any
			require.NoError(t, json.Unmarshal(rc.Details, &d))
			assert.Equal(t, "api_token", d["for"])
			failed++
		}
	}
	assert.Equal(t, 5, failed)

	r = e.do("POST", fmt.Sprintf("/api/v1/users/%d/clear-login-lockout", tech.ID), e.tokens[auth.RoleAdmin], map[string]string{"reason": "test"})
	require.Equal(t, 200, r.status, string(r.body))
	r = create("password-of-technician")
	require.Equal(t, 201, r.status, string(r.body))
}
