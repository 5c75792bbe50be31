package kiosk

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/engine"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// lockoutBackend answers every PIN wrong, logs in badge STAFF-1 and lets the
// session lift the lockout; it records the staff operations asked.
type lockoutBackend struct {
	mu  sync.Mutex
	ops []wire.StaffOp
}

func (b *lockoutBackend) Verify(_ context.Context, req wire.VerifyRequest) (wire.VerifyResponse, error) {
	return wire.VerifyResponse{ID: req.ID, Result: wire.VerifyWrongCode}, nil
}

func (b *lockoutBackend) Staff(_ context.Context, req wire.StaffRequest) (wire.StaffResponse, error) {
	b.mu.Lock()
	b.ops = append(b.ops, req.Op)
	b.mu.Unlock()
	res := wire.StaffResponse{ID: req.ID, Op: req.Op, Result: wire.StaffDenied}
	switch {
	case req.Op == wire.StaffLogin && req.Badge == "STAFF-1":
		exp := time.Now().Add(time.Hour)
		res.Result, res.Session, res.StaffID, res.StaffName, res.Expires, res.Role = wire.StaffOK, "sess", "42", "An", &exp, wire.RoleStaff
	case req.Op == wire.StaffClearLockout && req.Session == "sess":
		res.Result = wire.StaffOK
	}
	return res, nil
}

// POST /kiosk/v1/staff/clear-lockout: staff login required (403), then the
// PIN lockout is lifted (the backend asked) and the screen says so.
func TestStaffClearLockoutOverHTTP(t *testing.T) {
	be := &lockoutBackend{}
	r := newRigWith(t, be)
	code, out := r.post(t, "/kiosk/v1/staff/clear-lockout", `{}`)
	require.Equal(t, http.StatusForbidden, code, out)
	var state any
	for i := 0; i < 5; i++ {
		_, out = r.post(t, "/kiosk/v1/pickup", `{"pin":"111222333","birth_date":"1990-01-01"}`)
		state = out["state"]
	}
	require.Equal(t, engine.StateLockedOut, state)
	require.NotNil(t, r.e.Diagnostics(context.Background()).LockedUntil)
	code, out = r.post(t, "/kiosk/v1/staff/login", `{"badge":"STAFF-1"}`)
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, engine.StateStaff, out["state"])
	code, out = r.post(t, "/kiosk/v1/staff/clear-lockout", `{"lang":"fr"}`)
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, engine.StateLockoutCleared, out["state"])
	require.Equal(t, "Le blocage des codes PIN est levé.", out["message"])
	require.Nil(t, r.e.Diagnostics(context.Background()).LockedUntil)
	require.Contains(t, be.ops, wire.StaffClearLockout)
	code, out = r.post(t, "/kiosk/v1/staff/clear-lockout", `{"lang":"xx","extra":1}`)
	require.Equal(t, http.StatusBadRequest, code, out)
	// No body at all is fine too.
	resp, err := testenv.HTTPClient().Post(r.srv.URL+"/kiosk/v1/staff/clear-lockout", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
