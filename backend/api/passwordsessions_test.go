package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
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
	login := e.signIn
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

	// An admin changing their own password (asked for the current one,
	// TestOwnCredentialsThroughPatchAskThePassword) keeps this session, not
	// others.
	a1, a2 := login("test-admin", "password-of-admin"), login("test-admin", "password-of-admin")
	r = e.do("PATCH", fmt.Sprintf("/api/v1/users/%d", e.users[auth.RoleAdmin].ID), a1, map[string]any{"password": "the admin's new password", "current_password": "password-of-admin"})
	require.Equal(t, 200, r.status, string(r.body))
	assert.Equal(t, 200, e.do("GET", "/api/v1/me", a1, nil).status, "the session used keeps working")
	assert.Equal(t, 401, e.do("GET", "/api/v1/me", a2, nil).status, "the other one ended")
}

// A session taken from someone (12 hours of it) made an API token that
// outlived it and the victim's password reset. A new token now needs the
// password again: none is 400 missing_field, a wrong one 403
// wrong_password, audited password.step_up_failed.
//
// The wrong ones used to count against the user's login limits: five
// from a stolen session locked the real user's own logins out (429 at
// POST /api/v1/sessions), so a thief could keep the victim from signing
// in to change the password. Now they count on the session they came
// with: the third ends it (401 session_ended; the session is revoked),
// and the real user logs in as before and makes a token with a new
// session.
func TestAPITokenNeedsThePassword(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tech := e.users[auth.RoleTechnician]
	stolen := e.session(auth.RoleTechnician)
	create := func(session, pw string) resp {
		t.Helper()
		body := map[string]any{"name": "ci"}
		if pw != "" {
			body["current_password"] = pw
		}
		return e.do("POST", "/api/v1/tokens", session, body)
	}
	r := create(stolen, "")
	require.Equal(t, 400, r.status, string(r.body))
	assert.Equal(t, "missing_field", r.errCode())
	for i := 1; i < auth.MaxStepUpFailures; i++ {
		r = create(stolen, "a guess")
		require.Equal(t, 403, r.status, string(r.body))
		assert.Equal(t, "wrong_password", r.errCode())
	}
	r = create(stolen, "the last guess")
	require.Equal(t, 401, r.status, string(r.body))
	assert.Equal(t, "session_ended", r.errCode())
	assert.Equal(t, 401, e.do("GET", "/api/v1/me", stolen, nil).status, "the stolen session ended")
	r = create(stolen, "password-of-technician")
	assert.Equal(t, 401, r.status, "an ended session makes nothing, even with the password: %s", r.body)

	// The real user is not locked out: the guesses were not logins.
	session := e.signIn("test-technician", "password-of-technician") // the guesses did not count against logins
	r = create(session, "a typo")
	require.Equal(t, 403, r.status, string(r.body))
	r = create(session, "password-of-technician")
	require.Equal(t, 201, r.status, string(r.body))

	recs, err := audit.List(ctx, e.st.Pool(), audit.ListOptions{Subject: fmt.Sprintf("user:%d", tech.ID), Limit: 1000})
	require.NoError(t, err)
	var failed []map[string]any
	for _, rc := range recs {
		assert.NotEqual(t, "login.failed", rc.Action, "a step-up is not a login")
		if rc.Action == "password.step_up_failed" {
			var d map[string]any
			require.NoError(t, json.Unmarshal(rc.Details, &d))
			assert.Equal(t, "api_token", d["for"])
			failed = append(failed, d)
		}
	}
	require.Len(t, failed, auth.MaxStepUpFailures+1)
	assert.Equal(t, true, failed[auth.MaxStepUpFailures-1]["session_ended"])
	assert.Equal(t, float64(auth.MaxStepUpFailures), failed[auth.MaxStepUpFailures-1]["failures"])
	assert.Equal(t, false, failed[auth.MaxStepUpFailures]["session_ended"], "the real user's typo")
}

// Guesses sent at once through one stolen session are bounded exactly:
// each takes its count before the password is hashed (one refused by the
// hashing slots, login_busy, gives it back), so however many are sent
// together, exactly MaxStepUpFailures passwords are checked before the
// session ends.
func TestStepUpGuessesAtOnceAreBounded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	stolen := e.session(auth.RoleStaff)
	n := map[string]int{}
	for round := 0; e.do("GET", "/api/v1/me", stolen, nil).status == 200; round++ {
		require.Less(t, round, 20, "the session should have ended: %v", n)
		codes := make(chan string, 20)
		var wg sync.WaitGroup
		for i := 0; i < cap(codes); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes <- e.do("POST", "/api/v1/tokens", stolen, map[string]any{"name": "ci", "current_password": "a guess"}).errCode()
			}()
		}
		wg.Wait()
		close(codes)
		for c := range codes {
			n[c]++
		}
	}
	assert.Equal(t, auth.MaxStepUpFailures-1, n["wrong_password"], "%v", n)
	for c := range n {
		assert.Contains(t, []string{"wrong_password", "session_ended", "invalid_token", "login_busy"}, c)
	}
	recs, err := audit.List(ctx, e.st.Pool(), audit.ListOptions{Subject: fmt.Sprintf("user:%d", e.users[auth.RoleStaff].ID), Limit: 1000})
	require.NoError(t, err)
	checked := 0
	for _, rc := range recs {
		if rc.Action == "password.step_up_failed" {
			checked++
		}
	}
	assert.Equal(t, auth.MaxStepUpFailures, checked, "exactly the bound of passwords checked: %v", n)
}
