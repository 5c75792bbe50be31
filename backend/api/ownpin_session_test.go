package api_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/auth"
)

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
