package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
)

// A staff PIN or badge is set again because it leaked (seen over a
// shoulder, a badge lost): the kiosk sessions logged in with the old one
// went on for up to 15 minutes (found black-box: a test-open with such a
// session was ok after the reset), as a password reset once left the
// sessions of the old password. Now setting or clearing a PIN or badge
// ends the user's kiosk sessions in the same transaction; the user's
// other sessions and API tokens stay (a PIN is no password), and a
// refused change ends nothing.
func TestNewKioskCredentialEndsKioskSessions(t *testing.T) {
	ctx := context.Background()
	svc, _, _, an, tom := kioskPair(t, time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	require.NoError(t, svc.SetKioskCredentials(ctx, an.ID, ptr("48291637"), ptr("BADGE-AN")))
	require.NoError(t, svc.SetKioskCredentials(ctx, tom.ID, ptr("73194628"), nil))
	api, err := svc.CreateAPIToken(ctx, an.ID, "ci")
	require.NoError(t, err)
	session, err := svc.IssueSession(ctx, an)
	require.NoError(t, err)
	live := func(tok string) bool {
		_, err := svc.Authenticate(ctx, tok)
		return err == nil
	}
	login := func(pin, badge string) string {
		t.Helper()
		iss, err := svc.KioskLogin(ctx, pin, badge)
		require.NoError(t, err)
		require.True(t, live(iss.Token))
		return iss.Token
	}

	byPIN, byBadge, toms := login("48291637", ""), login("", "BADGE-AN"), login("73194628", "")
	assert.ErrorIs(t, svc.SetKioskCredentials(ctx, an.ID, ptr("73194628"), nil), auth.ErrKioskCredentialTaken)
	assert.True(t, live(byPIN), "a refused change ends nothing")
	require.NoError(t, svc.SetKioskCredentials(ctx, an.ID, ptr("51739264"), nil))
	assert.False(t, live(byPIN), "the session of the old PIN ended")
	assert.False(t, live(byBadge), "every kiosk session of the user ended")
	assert.True(t, live(toms), "another user's kiosk session stays")
	assert.True(t, live(api.Token), "API tokens stay")
	assert.True(t, live(session.Token), "login sessions stay")

	byBadge = login("", "BADGE-AN")
	require.NoError(t, svc.SetKioskCredentials(ctx, an.ID, nil, ptr(""))) // the badge lost: cleared
	assert.False(t, live(byBadge), "clearing the badge ends its sessions")
	_, err = svc.KioskLogin(ctx, "", "BADGE-AN")
	assert.ErrorIs(t, err, auth.ErrInvalidCredentials)
	login("51739264", "")
}
