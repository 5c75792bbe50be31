package auth_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/store/storetest"
)

func ptr(s string) *string { return &s }

func TestKioskLogin(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
	st := storetest.New(t)
	svc, err := auth.New(auth.Options{Pool: st.Pool(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Clock: clock.Now, Params: cheap, KioskKey: []byte("0123456789abcdef0123456789abcdef")})
	require.NoError(t, err)
	staff, err := svc.CreateUser(ctx, "an", "a long enough password", auth.RoleStaff)
	require.NoError(t, err)
	tech, err := svc.CreateUser(ctx, "tom", "a long enough password", auth.RoleTechnician)
	require.NoError(t, err)

	assert.ErrorIs(t, svc.SetKioskCredentials(ctx, staff.ID, ptr("12ab56"), nil), auth.ErrInvalidKioskPIN)
	assert.ErrorIs(t, svc.SetKioskCredentials(ctx, staff.ID, nil, ptr("x y")), auth.ErrInvalidBadge)
	require.NoError(t, svc.SetKioskCredentials(ctx, staff.ID, ptr("482916"), ptr("BADGE-0042")))
	require.NoError(t, svc.SetKioskCredentials(ctx, tech.ID, ptr("777777"), nil))
	assert.ErrorIs(t, svc.SetKioskCredentials(ctx, tech.ID, ptr("482916"), nil), auth.ErrKioskCredentialTaken)
	assert.ErrorIs(t, svc.SetKioskCredentials(ctx, 9999, ptr("111111"), nil), auth.ErrNotFound)

	iss, err := svc.KioskLogin(ctx, "482916", "")
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
	iss3, err := svc.KioskLogin(ctx, "777777", "")
	require.NoError(t, err)
	assert.Equal(t, tech.ID, iss3.User.ID)
	assert.Equal(t, auth.RoleTechnician, iss3.User.Role)

	for _, c := range [][2]string{{"000000", ""}, {"", "BADGE-0043"}, {"", ""}, {"12", ""}} {
		_, err := svc.KioskLogin(ctx, c[0], c[1])
		assert.ErrorIs(t, err, auth.ErrInvalidCredentials, "%v", c)
	}

	_, err = svc.SetDisabled(ctx, tech.ID, true)
	require.NoError(t, err)
	_, err = svc.KioskLogin(ctx, "777777", "")
	assert.ErrorIs(t, err, auth.ErrInvalidCredentials, "a disabled user cannot log in at a kiosk")

	// Kiosk sessions are short.
	clock.Set(clock.Now().Add(16 * time.Minute))
	_, err = svc.Authenticate(ctx, iss.Token)
	assert.ErrorIs(t, err, auth.ErrUnauthenticated)

	// Clearing the PIN keeps the badge.
	require.NoError(t, svc.SetKioskCredentials(ctx, staff.ID, ptr(""), nil))
	_, err = svc.KioskLogin(ctx, "482916", "")
	assert.ErrorIs(t, err, auth.ErrInvalidCredentials)
	_, err = svc.KioskLogin(ctx, "", "BADGE-0042")
	require.NoError(t, err)

	// Without a key kiosk logins are off.
	off, err := auth.New(auth.Options{Pool: st.Pool(), Params: cheap})
	require.NoError(t, err)
	_, err = off.KioskLogin(ctx, "", "BADGE-0042")
	assert.ErrorIs(t, err, auth.ErrKioskDisabled)
}
