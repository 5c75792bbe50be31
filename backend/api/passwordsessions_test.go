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
// sessions, API and console, at once; API tokens for automation stay (they
// are listed and revoked apart), and an admin changing their own password
// keeps the session they did it with.
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
	assert.Equal(t, 200, e.do("GET", "/api/v1/me", apiTok, nil).status, "an API token stays")
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
	assert.Equal(t, map[string]any{"password": "changed", "sessions_ended": float64(3)}, details)

	// An admin changing their own password keeps this session, not others.
	a1, a2 := login("test-admin", "password-of-admin"), login("test-admin", "password-of-admin")
	r = e.do("PATCH", fmt.Sprintf("/api/v1/users/%d", e.users[auth.RoleAdmin].ID), a1, map[string]any{"password": "the admin's new password"})
	require.Equal(t, 200, r.status, string(r.body))
	assert.Equal(t, 200, e.do("GET", "/api/v1/me", a1, nil).status, "the session used keeps working")
	assert.Equal(t, 401, e.do("GET", "/api/v1/me", a2, nil).status, "the other one ended")
}
