package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/auth"
)

// A user sets their own staff PIN with their current password, under the
// rule an admin's PATCH applies (auth.ValidateKioskPIN, one user per PIN):
// a PIN of 7 digits is 400 invalid_kiosk_pin before the password is
// checked (no failed login counted); a wrong password is 403
// wrong_password and counts as a failed login (five lock the source out:
// 429 too_many_attempts with Retry-After); a PIN another user has is 409
// kiosk_credential_taken, audited, and after three of those in a day the
// user's own changes are refused until an admin sets one. The PIN is in
// no answer and no audit record.
func TestSetOwnKioskPIN(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	staff, tech := e.users[auth.RoleStaff], e.users[auth.RoleTechnician]
	tok := e.session(auth.RoleStaff)
	set := func(token, password, pin string) resp {
		t.Helper()
		return e.do("POST", "/api/v1/me/kiosk-pin", token, map[string]string{"current_password": password, "kiosk_pin": pin})
	}

	r := set(tok, "password-of-staff", "4829163")
	require.Equal(t, 400, r.status, string(r.body))
	assert.Equal(t, "invalid_kiosk_pin", r.errCode())
	assert.Contains(t, string(r.body), "8 to 12 digits")
	r = e.do("POST", "/api/v1/me/kiosk-pin", tok, map[string]string{"kiosk_pin": "48291637"})
	assert.Equal(t, "missing_field", r.errCode())

	r = set(tok, "not the password", "48291637")
	require.Equal(t, 403, r.status, string(r.body))
	assert.Equal(t, "wrong_password", r.errCode())

	r = set(tok, "password-of-staff", "48291637")
	require.Equal(t, 200, r.status, string(r.body))
	var u auth.User
	r.decode(t, &u)
	assert.Equal(t, staff.ID, u.ID)
	assert.False(t, u.KioskPINShort)
	assert.NotContains(t, string(r.body), "48291637")
	iss, err := e.auth.KioskLogin(ctx, "48291637", "")
	require.NoError(t, err, "the new PIN logs in at a kiosk")
	assert.Equal(t, staff.ID, iss.User.ID)

	// The technician tries PINs the staff member has: refused, audited,
	// then refused whatever the PIN.
	ttok := e.session(auth.RoleTechnician)
	for i := 0; i < 3; i++ {
		r = set(ttok, "password-of-technician", "48291637")
		require.Equal(t, 409, r.status, string(r.body))
		assert.Equal(t, "kiosk_credential_taken", r.errCode())
	}
	r = set(ttok, "password-of-technician", "51739264")
	require.Equal(t, 429, r.status, string(r.body))
	assert.Equal(t, "too_many_attempts", r.errCode())
	assert.Contains(t, string(r.body), "ask an administrator")
	// An admin still sets it, with the same rule.
	r = e.do("PATCH", fmt.Sprintf("/api/v1/users/%d", tech.ID), e.tokens[auth.RoleAdmin], map[string]string{"kiosk_pin": "48291637"})
	assert.Equal(t, 409, r.status, "one user per PIN for admins too")
	r = e.do("PATCH", fmt.Sprintf("/api/v1/users/%d", tech.ID), e.tokens[auth.RoleAdmin], map[string]string{"kiosk_pin": "5173926"})
	assert.Equal(t, "invalid_kiosk_pin", r.errCode())
	r = e.do("PATCH", fmt.Sprintf("/api/v1/users/%d", tech.ID), e.tokens[auth.RoleAdmin], map[string]string{"kiosk_pin": "51739264"})
	require.Equal(t, 200, r.status, string(r.body))

	recs, err := audit.List(ctx, e.st.Pool(), audit.ListOptions{Limit: 1000})
	require.NoError(t, err)
	actions := map[string]int{}
	for _, rc := range recs {
		actions[rc.Subject+" "+rc.Action]++
		for _, pin := range []string{"48291637", "51739264", "4829163"} {
			assert.NotContains(t, string(rc.Details), pin, "no PIN in the audit trail")
		}
	}
	assert.Equal(t, 1, actions[fmt.Sprintf("user:%d password.step_up_failed", staff.ID)], "the wrong password")
	assert.Equal(t, 1, actions[fmt.Sprintf("user:%d user.update", staff.ID)])
	assert.Equal(t, 3, actions[fmt.Sprintf("user:%d user.kiosk_pin_taken", tech.ID)])
	assert.Equal(t, 1, actions[fmt.Sprintf("user:%d user.kiosk_pin_refused", tech.ID)], "the 429 is a denied attempt too")
	assert.Equal(t, 1, actions[fmt.Sprintf("user:%d user.update", tech.ID)], "the admin's")

	// Wrong passwords count on the session they came with (not against
	// the login limits): the third in a row ends it.
	for i := 1; i < auth.MaxStepUpFailures; i++ {
		r = set(tok, "still not the password", "48291637")
		require.Equal(t, 403, r.status, string(r.body))
	}
	r = set(tok, "still not the password", "62839175")
	require.Equal(t, 401, r.status, string(r.body))
	assert.Equal(t, "session_ended", r.errCode())
	r = set(tok, "password-of-staff", "62839175")
	require.Equal(t, 401, r.status, "the session ended: %s", r.body)
	assert.False(t, strings.Contains(string(r.body), "62839175"))
	r = e.do("POST", "/api/v1/sessions", "", map[string]string{"username": "test-staff", "password": "password-of-staff"})
	assert.Equal(t, 201, r.status, "the staff member's own logins are not locked: %s", r.body)
}

// TestOwnKioskPINNeedsSession: POST /api/v1/me/kiosk-pin took an API
// token (with the password) while /me/password refused one with 403
// session_required; a staff PIN opens compartments at a kiosk, so it now
// needs a session like the password: refused before anything is checked
// (the PIN rule, the password), the PIN unchanged, nothing audited as a
// change or a failed password check, the same as the password route.
func TestOwnKioskPINNeedsSession(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	staff := e.users[auth.RoleStaff]
	tok := e.tokens[auth.RoleStaff]
	for _, pw := range []string{"password-of-staff", "not the password"} {
		r := e.do("POST", "/api/v1/me/kiosk-pin", tok, map[string]string{"current_password": pw, "kiosk_pin": "48291637"})
		require.Equal(t, 403, r.status, string(r.body))
		assert.Equal(t, "session_required", r.errCode())
	}
	_, err := e.auth.KioskLogin(ctx, "48291637", "")
	assert.Error(t, err, "the PIN was not set")
	assert.Equal(t, 200, e.do("GET", "/api/v1/me", tok, nil).status, "the token is not ended by the refused passwords")
	recs, err := audit.List(ctx, e.st.Pool(), audit.ListOptions{Subject: fmt.Sprintf("user:%d", staff.ID), Limit: 1000})
	require.NoError(t, err)
	for _, rc := range recs {
		assert.NotContains(t, []string{"user.update", "password.step_up_failed"}, rc.Action, "nothing changed or checked: %s", rc.Details)
	}
	// A session sets it.
	r := e.do("POST", "/api/v1/me/kiosk-pin", e.session(auth.RoleStaff), map[string]string{"current_password": "password-of-staff", "kiosk_pin": "48291637"})
	require.Equal(t, 200, r.status, string(r.body))
}
