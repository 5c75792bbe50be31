package deviceops_test

import (
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/auth"
	"kluis/backend/deviceops"
	"kluis/controller/wire"
)

// A kiosk session is a bearer token the backend hands one device (its
// staff/res). It was taken at any device: a session issued at k1 test-
// opened a compartment of k2 (found black-box with two device passwords,
// k2 at another site), so whoever read one device's answers, or a device
// that kept a session, acted at every kiosk for its 15 minutes. A kiosk
// session now works at the device it was issued at only: elsewhere it is
// session_expired, audited kiosk.denied with the reason.
func TestKioskSessionWorksAtItsOwnDeviceOnly(t *testing.T) {
	e, ask, session := techLoggedInAtK1(t)
	free := &wire.Address{Board: 0, Channel: 1}
	assert.Equal(t, wire.StaffSessionExpired, ask("k2", wire.StaffRequest{Op: wire.StaffTestOpen, Session: session, Addr: free}).Result,
		"another device's session")
	assert.Equal(t, wire.StaffSessionExpired, ask("k2", wire.StaffRequest{Op: wire.StaffClearLockout, Session: session}).Result)
	assert.Equal(t, wire.StaffOK, ask("k1", wire.StaffRequest{Op: wire.StaffTestOpen, Session: session, Addr: free}).Result,
		"its own device's")

	recs, err := audit.List(e.ctx, e.st.Pool(), audit.ListOptions{Subject: "device:k2"})
	require.NoError(t, err)
	var denied []string
	for _, r := range recs {
		if r.Action == "kiosk.denied" {
			denied = append(denied, string(r.Details))
		}
	}
	assert.Equal(t, []string{`{"op":"test_open","reason":"other_device","session_device":"k1"}`,
		`{"op":"clear_lockout","reason":"other_device","session_device":"k1"}`}, denied)
}

// Logging out from another device ends no session of this one.
func TestKioskLogoutAtItsOwnDeviceOnly(t *testing.T) {
	_, ask, session := techLoggedInAtK1(t)
	ask("k2", wire.StaffRequest{Op: wire.StaffLogout, Session: session})
	free := &wire.Address{Board: 0, Channel: 1}
	assert.Equal(t, wire.StaffOK, ask("k1", wire.StaffRequest{Op: wire.StaffTestOpen, Session: session, Addr: free}).Result)
	ask("k1", wire.StaffRequest{Op: wire.StaffLogout, Session: session})
	assert.Equal(t, wire.StaffSessionExpired, ask("k1", wire.StaffRequest{Op: wire.StaffTestOpen, Session: session, Addr: free}).Result)
}

// techLoggedInAtK1 is a technician logged in at device k1's kiosk: the
// env, a way to ask a device, and the session.
func techLoggedInAtK1(t *testing.T) (*env, func(device string, req wire.StaffRequest) wire.StaffResponse, string) {
	e := newEnv(t)
	as := e.kioskAuth(t)
	h := deviceops.NewStaff(deviceops.StaffOptions{Auth: as, Service: e.svc, Pool: e.st.Pool(), Clock: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	tech, err := as.CreateUser(e.ctx, "kiosk-tech", "a long enough password", auth.RoleTechnician)
	require.NoError(t, err)
	pin := "73915462"
	require.NoError(t, as.SetKioskCredentials(e.ctx, tech.ID, &pin, nil))
	ask := func(device string, req wire.StaffRequest) wire.StaffResponse {
		req.ID, req.At = wire.NewID(e.clock.Now()), e.clock.Now()
		return h.HandleStaff(e.ctx, device, req)
	}
	login := ask("k1", wire.StaffRequest{Op: wire.StaffLogin, PIN: pin})
	require.Equal(t, wire.StaffOK, login.Result)
	return e, ask, login.Session
}
