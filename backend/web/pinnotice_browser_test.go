package web_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/api/apiclient"
	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/deploy/dev/browsertest"
)

// A staff PIN of fewer than 8 digits (set before PINs needed 8; it still
// logs in) makes the console ask for a new one: its holder on every page,
// in the page's language, and an admin with the number of such users.
// A PIN of 6 digits cannot be set any more (the API's 400
// invalid_kiosk_pin); a new one of 8 ends the notices. The pages with the
// notice are axe-core clean in Chromium.
func TestShortStaffPINNotice(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	ctx := context.Background()
	staffID := e.ids[auth.RoleStaff]
	// The PIN's length as learnt at a kiosk login (its digest stays).
	_, err := e.pool().Exec(ctx, `UPDATE auth_users SET kiosk_pin_digest = '\x01', kiosk_pin_digits = 6 WHERE id = $1`, staffID)
	require.NoError(t, err)

	staff := e.client()
	staff.login(auth.RoleStaff)
	p := staff.get("/staff/documents?lang=en")
	assert.Contains(t, p.body, "Your staff PIN for the devices has fewer than 8 digits.")
	p = staff.get("/staff/devices?lang=de")
	assert.Contains(t, p.body, "Ihre Personal-PIN für die Geräte hat weniger als 8 Ziffern.")
	assert.NotContains(t, p.body, "Benutzer mit einer Personal-PIN", "only admins see the count")
	admin := e.client()
	admin.login(auth.RoleAdmin)
	p = admin.get("/staff/devices?lang=fr")
	assert.Contains(t, p.body, "Utilisateurs dont le code PIN du personnel a moins de 8 chiffres\u00a0: 1.")
	assert.NotContains(t, p.body, "Votre code PIN", "the admin's own PIN is not short")

	b := browsertest.New(t, browsertest.Options{})
	tab := b.NewTab(t, 360, 740)
	base := e.b.URL("")
	login(t, tab, base, e.users[auth.RoleAdmin], password(auth.RoleAdmin))
	for _, lang := range []string{"nl", "en"} {
		tab.Do(t, chromedp.Navigate(base+"/staff/devices?lang="+lang))
		tab.WaitFor(t, `!!document.querySelector(".pin-notice")`, 10*time.Second)
		tab.CheckAxe(t, "short PIN notice "+lang)
		noSideScroll(t, tab, "short PIN notice "+lang)
		tab.Screenshot(t, "console/pin-notice-phone-"+lang)
	}

	path := fmt.Sprintf("/api/v1/users/%d", staffID)
	err = e.b.Call(ctx, http.MethodPatch, path, map[string]string{"kiosk_pin": "739154"}, nil)
	var se *apiclient.StatusError
	require.True(t, errors.As(err, &se), "%v", err)
	assert.Equal(t, http.StatusBadRequest, se.Status)
	assert.Contains(t, se.Body, "invalid_kiosk_pin")
	assert.Contains(t, se.Body, "8 to 12 digits")
	var u struct {
		KioskPINShort *bool `json:"kiosk_pin_short"`
	}
	require.NoError(t, e.b.Call(ctx, http.MethodGet, path, nil, &u))
	require.NotNil(t, u.KioskPINShort)
	assert.True(t, *u.KioskPINShort, "the API tells admins too")
	require.NoError(t, e.b.Call(ctx, http.MethodPatch, path, map[string]string{"kiosk_pin": "73915462"}, &u))
	assert.False(t, *u.KioskPINShort)
	p = staff.get("/staff/documents?lang=en")
	assert.NotContains(t, p.body, "pin-notice")
	p = admin.get("/staff/devices?lang=en")
	assert.NotContains(t, p.body, "pin-notice")
}
