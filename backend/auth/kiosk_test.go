package auth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
)

func ptr(s string) *string { return &s }

// kioskPair is a service with kiosk logins and two users: an (staff)
// and tom (technician).
func kioskPair(t *testing.T, at time.Time) (svc *auth.Service, st *store.Store, clock *storetest.Clock, staff, tech auth.User) {
	ctx := context.Background()
	clock = storetest.NewClock(at)
	st = storetest.New(t)
	svc, err := auth.New(auth.Options{Pool: st.Pool(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Clock: clock.Now, Params: cheap, KioskKey: []byte("0123456789abcdef0123456789abcdef")})
	require.NoError(t, err)
	staff, err = svc.CreateUser(ctx, "an", "a long enough password", auth.RoleStaff)
	require.NoError(t, err)
	tech, err = svc.CreateUser(ctx, "tom", "a long enough password", auth.RoleTechnician)
	require.NoError(t, err)
	return svc, st, clock, staff, tech
}

func TestKioskLogin(t *testing.T) {
	ctx := context.Background()
	svc, st, clock, staff, tech := kioskPair(t, time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))

	assert.ErrorIs(t, svc.SetKioskCredentials(ctx, staff.ID, ptr("12ab56"), nil), auth.ErrInvalidKioskPIN)
	assert.ErrorIs(t, svc.SetKioskCredentials(ctx, staff.ID, nil, ptr("x y")), auth.ErrInvalidBadge)
	require.NoError(t, svc.SetKioskCredentials(ctx, staff.ID, ptr("48291637"), ptr("BADGE-0042")))
	require.NoError(t, svc.SetKioskCredentials(ctx, tech.ID, ptr("77777777"), nil))
	assert.ErrorIs(t, svc.SetKioskCredentials(ctx, tech.ID, ptr("48291637"), nil), auth.ErrKioskCredentialTaken)
	assert.ErrorIs(t, svc.SetKioskCredentials(ctx, 9999, ptr("11111111"), nil), auth.ErrNotFound)

	iss, err := svc.KioskLogin(ctx, "48291637", "")
	require.NoError(t, err)
	assert.Equal(t, "kiosk", iss.Kind)
	assert.Equal(t, staff.ID, iss.User.ID)
	p, err := svc.Authenticate(ctx, iss.Token)
	require.NoError(t, err)
	assert.Equal(t, "kiosk", p.TokenKind)

	iss2, err := svc.KioskLogin(ctx, "", "BADGE-0042")
	require.NoError(t, err)
	assert.Equal(t, staff.ID, iss2.User.ID)

	// Technicians log in at a kiosk too (for test-open; what they may do
	// there is decided per operation).
	iss3, err := svc.KioskLogin(ctx, "77777777", "")
	require.NoError(t, err)
	assert.Equal(t, tech.ID, iss3.User.ID)
	assert.Equal(t, auth.RoleTechnician, iss3.User.Role)

	for _, c := range [][2]string{{"000000", ""}, {"", "BADGE-0043"}, {"", ""}, {"12", ""}} {
		_, err := svc.KioskLogin(ctx, c[0], c[1])
		assert.ErrorIs(t, err, auth.ErrInvalidCredentials, "%v", c)
	}

	_, err = svc.SetDisabled(ctx, tech.ID, true)
	require.NoError(t, err)
	_, err = svc.KioskLogin(ctx, "77777777", "")
	assert.ErrorIs(t, err, auth.ErrInvalidCredentials, "a disabled user cannot log in at a kiosk")

	// Kiosk sessions are short.
	clock.Set(clock.Now().Add(16 * time.Minute))
	_, err = svc.Authenticate(ctx, iss.Token)
	assert.ErrorIs(t, err, auth.ErrUnauthenticated)

	// Clearing the PIN keeps the badge.
	require.NoError(t, svc.SetKioskCredentials(ctx, staff.ID, ptr(""), nil))
	_, err = svc.KioskLogin(ctx, "48291637", "")
	assert.ErrorIs(t, err, auth.ErrInvalidCredentials)
	_, err = svc.KioskLogin(ctx, "", "BADGE-0042")
	require.NoError(t, err)

	// Without a key kiosk logins are off.
	off, err := auth.New(auth.Options{Pool: st.Pool(), Params: cheap})
	require.NoError(t, err)
	_, err = off.KioskLogin(ctx, "", "BADGE-0042")
	assert.ErrorIs(t, err, auth.ErrKioskDisabled)
}

// After a rotation of the backend's PIN key (from which the kiosk key is
// derived), staff PINs and badges set before it still log in through the
// previous key; new ones are stored under the new key; and a PIN or badge
// stored under the previous key is not given to another user.
func TestKioskLoginAcrossKeyRotation(t *testing.T) {
	ctx := context.Background()
	st := storetest.New(t)
	oldKey, newKey := []byte("0123456789abcdef0123456789abcdef"), []byte("fedcba9876543210fedcba9876543210")
	mk := func(key, prev []byte) *auth.Service {
		svc, err := auth.New(auth.Options{Pool: st.Pool(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Params: cheap, KioskKey: key, PreviousKioskKey: prev})
		require.NoError(t, err)
		return svc
	}
	before := mk(oldKey, nil)
	an, err := before.CreateUser(ctx, "an", "a long enough password", auth.RoleStaff)
	require.NoError(t, err)
	tom, err := before.CreateUser(ctx, "tom", "a long enough password", auth.RoleTechnician)
	require.NoError(t, err)
	require.NoError(t, before.SetKioskCredentials(ctx, an.ID, ptr("48291637"), ptr("BADGE-0042")))

	_, err = mk(newKey, nil).KioskLogin(ctx, "48291637", "")
	assert.ErrorIs(t, err, auth.ErrInvalidCredentials, "the new key alone does not know the PINs set before")

	during := mk(newKey, oldKey)
	iss, err := during.KioskLogin(ctx, "48291637", "")
	require.NoError(t, err, "set before the rotation: logs in through the previous key")
	assert.Equal(t, an.ID, iss.User.ID)
	iss, err = during.KioskLogin(ctx, "", "BADGE-0042")
	require.NoError(t, err)
	assert.Equal(t, an.ID, iss.User.ID)
	assert.ErrorIs(t, during.SetKioskCredentials(ctx, tom.ID, ptr("48291637"), nil), auth.ErrKioskCredentialTaken,
		"another user's PIN under the previous key is taken")
	assert.ErrorIs(t, during.SetKioskCredentials(ctx, tom.ID, nil, ptr("BADGE-0042")), auth.ErrKioskCredentialTaken)
	require.NoError(t, during.SetKioskCredentials(ctx, tom.ID, ptr("77777777"), nil))
	require.NoError(t, during.SetKioskCredentials(ctx, an.ID, ptr("48291637"), nil), "re-setting one's own PIN stores it under the new key")

	after := mk(newKey, nil)
	for pin, want := range map[string]int64{"48291637": an.ID, "77777777": tom.ID} {
		iss, err := after.KioskLogin(ctx, pin, "")
		require.NoError(t, err, "set during the rotation: under the new key")
		assert.Equal(t, want, iss.User.ID)
	}
	_, err = after.KioskLogin(ctx, "", "BADGE-0042")
	assert.ErrorIs(t, err, auth.ErrInvalidCredentials, "a badge not set again is gone once the previous key is dropped")
}

// A staff PIN set from now on has 8 to 12 digits; a PIN of 6 or 7 set
// before the rule keeps logging in, and its holder is flagged
// (User.KioskPINShort) once its length is known: at once for a PIN set
// after migration 0184, at its next use for one set before.
func TestNewKioskPINsNeedEightDigits(t *testing.T) {
	ctx := context.Background()
	st := storetest.New(t)
	key := []byte("0123456789abcdef0123456789abcdef")
	svc, err := auth.New(auth.Options{Pool: st.Pool(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Params: cheap, KioskKey: key})
	require.NoError(t, err)
	an, err := svc.CreateUser(ctx, "an", "a long enough password", auth.RoleStaff)
	require.NoError(t, err)
	for _, pin := range []string{"482916", "4829163", "1234567890123", "4829 1637"} {
		assert.ErrorIs(t, svc.SetKioskCredentials(ctx, an.ID, ptr(pin), nil), auth.ErrInvalidKioskPIN, pin)
	}
	require.NoError(t, svc.SetKioskCredentials(ctx, an.ID, ptr("48291637"), nil))
	u, err := svc.GetUser(ctx, an.ID)
	require.NoError(t, err)
	assert.False(t, u.KioskPINShort)

	// A 6-digit PIN stored before the migration: its digest, no length.
	m := hmac.New(sha256.New, key)
	m.Write([]byte("pin\x00739154"))
	_, err = st.Pool().Exec(ctx, `UPDATE auth_users SET kiosk_pin_digest = $2, kiosk_pin_digits = NULL WHERE id = $1`, an.ID, m.Sum(nil))
	require.NoError(t, err)
	u, err = svc.GetUser(ctx, an.ID)
	require.NoError(t, err)
	assert.False(t, u.KioskPINShort, "not known yet")
	n, short, err := svc.ShortKioskPINs(ctx, 10)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Empty(t, short)

	iss, err := svc.KioskLogin(ctx, "739154", "")
	require.NoError(t, err, "an old 6-digit PIN still logs in")
	assert.True(t, iss.User.KioskPINShort)
	u, err = svc.GetUser(ctx, an.ID)
	require.NoError(t, err)
	assert.True(t, u.KioskPINShort, "learnt at the login")
	n, short, err = svc.ShortKioskPINs(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	require.Len(t, short, 1)
	assert.Equal(t, an.Username, short[0].Username)
	assert.True(t, short[0].KioskPINShort)
	// Another short PIN (7 digits, its length known): the count is of
	// both, the list cut at the limit, by username.
	bo, err := svc.CreateUser(ctx, "bo", "a long enough password", auth.RoleStaff)
	require.NoError(t, err)
	m = hmac.New(sha256.New, key)
	m.Write([]byte("pin\x004829163"))
	_, err = st.Pool().Exec(ctx, `UPDATE auth_users SET kiosk_pin_digest = $2, kiosk_pin_digits = 7 WHERE id = $1`, bo.ID, m.Sum(nil))
	require.NoError(t, err)
	n, short, err = svc.ShortKioskPINs(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "counted over every short PIN, not the page")
	require.Len(t, short, 1)
	assert.Equal(t, an.Username, short[0].Username)
	_, err = st.Pool().Exec(ctx, `UPDATE auth_users SET kiosk_pin_digest = NULL, kiosk_pin_digits = NULL WHERE id = $1`, bo.ID)
	require.NoError(t, err)
	ws, err := svc.StartWebSession(ctx, u, "192.0.2.7")
	require.NoError(t, err)
	got, err := svc.WebSessionFor(ctx, ws.Token, false)
	require.NoError(t, err)
	assert.True(t, got.User.KioskPINShort, "the console sees it")

	require.NoError(t, svc.SetKioskCredentials(ctx, an.ID, ptr("739154026"), nil))
	u, err = svc.GetUser(ctx, an.ID)
	require.NoError(t, err)
	assert.False(t, u.KioskPINShort, "a new PIN of 9 digits")
	require.NoError(t, svc.SetKioskCredentials(ctx, an.ID, ptr(""), nil))
	n, short, err = svc.ShortKioskPINs(ctx, 10)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Empty(t, short)
}
