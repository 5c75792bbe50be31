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

// An admin's own password, staff PIN and badge went through PATCH
// /api/v1/users/{own id} without the password asked again: whoever held
// an admin's session (a laptop left open) or an admin's API token set a
// password of their choosing, which ended the real admin's other
// sessions (the account taken over), or a staff PIN or badge that opens
// the kiosks as that admin, where POST /api/v1/me/password and
// /me/kiosk-pin ask for the current password (step-up) and refuse API
// tokens. Now the same rule holds on both doors: on one's own account
// those fields need current_password, checked as a step-up (counted on
// the session, the third wrong one ends it), and an API token is refused
// (403 session_required). Another user's account is an admin's reset as
// before, without it.
func TestOwnCredentialsThroughPatchAskThePassword(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin := e.users[auth.RoleAdmin]
	own := fmt.Sprintf("/api/v1/users/%d", admin.ID)
	for _, body := range []map[string]any{
		{"password": "the thief's new password"},
		{"kiosk_pin": "48291637"},
		{"badge": "THIEF-1"},
	} {
		r := e.do("PATCH", own, e.tokens[auth.RoleAdmin], body)
		require.Equal(t, 403, r.status, "%v with an API token: %s", body, r.body)
		assert.Equal(t, "session_required", r.errCode())
		r = e.do("PATCH", own, e.session(auth.RoleAdmin), body)
		require.Equal(t, 400, r.status, "%v without the password: %s", body, r.body)
		assert.Equal(t, "missing_field", r.errCode())
	}
	_, err := e.auth.KioskLogin(ctx, "48291637", "")
	assert.ErrorIs(t, err, auth.ErrInvalidCredentials, "no PIN was set")
	_, err = e.auth.KioskLogin(ctx, "", "THIEF-1")
	assert.ErrorIs(t, err, auth.ErrInvalidCredentials, "no badge was set")
	victim := e.signIn("test-admin", "password-of-admin") // the password is unchanged

	// A stolen session guesses: the step-up's count, the third ends it.
	stolen := e.session(auth.RoleAdmin)
	for i := 1; i < auth.MaxStepUpFailures; i++ {
		r := e.do("PATCH", own, stolen, map[string]any{"password": "the thief's new password", "current_password": "a guess"})
		require.Equal(t, 403, r.status, string(r.body))
		assert.Equal(t, "wrong_password", r.errCode())
	}
	r := e.do("PATCH", own, stolen, map[string]any{"kiosk_pin": "48291637", "current_password": "the last guess"})
	require.Equal(t, 401, r.status, string(r.body))
	assert.Equal(t, "session_ended", r.errCode())
	assert.Equal(t, 200, e.do("GET", "/api/v1/me", victim, nil).status, "the admin's own session is untouched")

	// With the password: done, as before.
	r = e.do("PATCH", own, victim, map[string]any{"kiosk_pin": "48291637", "badge": "ADMIN-1", "current_password": "password-of-admin"})
	require.Equal(t, 200, r.status, string(r.body))
	_, err = e.auth.KioskLogin(ctx, "48291637", "")
	assert.NoError(t, err)
	r = e.do("PATCH", own, victim, map[string]any{"password": "the admin's new password", "current_password": "password-of-admin"})
	require.Equal(t, 200, r.status, string(r.body))
	e.signIn("test-admin", "the admin's new password")

	// current_password belongs to one's own account only.
	staffPath := fmt.Sprintf("/api/v1/users/%d", e.users[auth.RoleStaff].ID)
	r = e.do("PATCH", staffPath, victim, map[string]any{"disabled": false, "current_password": "the admin's new password"})
	assert.Equal(t, 400, r.status, string(r.body))
	assert.Equal(t, "invalid_input", r.errCode())
	// Disabling and enabling need no password; one's own account cannot
	// be disabled, as before. (The new password revoked the admin's API
	// tokens.)
	tok := e.freshToken(auth.RoleAdmin)
	r = e.do("PATCH", own, tok, map[string]any{"disabled": true})
	assert.Equal(t, "cannot_disable_self", r.errCode())
	// Another user's credentials: an admin's reset, no password asked.
	r = e.do("PATCH", staffPath, tok, map[string]any{"kiosk_pin": "51739264"})
	assert.Equal(t, 200, r.status, string(r.body))

	recs, err := audit.List(ctx, e.st.Pool(), audit.ListOptions{Subject: fmt.Sprintf("user:%d", admin.ID), Limit: 1000})
	require.NoError(t, err)
	var fors []any
	for _, rc := range recs {
		if rc.Action == "password.step_up_failed" {
			var d map[string]any
			require.NoError(t, json.Unmarshal(rc.Details, &d))
			fors = append(fors, d["for"])
		}
		for _, secret := range []string{"48291637", "THIEF-1", "ADMIN-1", "password-of-admin", "a guess"} {
			assert.NotContains(t, string(rc.Details), secret)
		}
	}
	assert.Equal(t, []any{"password", "password", "kiosk_pin"}, fors)
}
