package engine

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
)

// A refused staff login under a lock of the device's staff logins tells
// staff which lock holds (the backend's denial carries expires, when the
// lock ends): the 15-minute lock, or the daily cap when it ends later than
// 16 minutes from now. A denial without expires (wrong credential, or an
// older backend) or with one already past is the plain refusal. Every
// language has its own text.
func TestStaffLoginRefusalNamesTheLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		for _, c := range []struct {
			name  string
			in    *time.Duration // expires from now; nil: none
			state string
			en    string
		}{
			{"wrong credential or older backend", nil, StateStaffDenied, "Login refused."},
			{"lock already over", ptr(-time.Second), StateStaffDenied, "Login refused."},
			{"burst lock", ptr(10 * time.Minute), StateStaffLocked, "Too many failed logins on this machine. Try again in 15 minutes."},
			{"burst lock made now, whole seconds", ptr(15*time.Minute + time.Second), StateStaffLocked, "Too many failed logins on this machine. Try again in 15 minutes."},
			{"daily cap", ptr(20 * time.Hour), StateStaffLockedToday,
				"Too many failed logins on this machine today. Login here is blocked for up to 24 hours: use the staff console or call the service desk."},
			{"daily cap near its end", ptr(17 * time.Minute), StateStaffLockedToday, ""},
		} {
			res := wire.StaffResponse{Op: wire.StaffLogin, Result: wire.StaffDenied}
			if c.in != nil {
				until := time.Now().Add(*c.in)
				res.Expires = &until
			}
			r.be.set(func() { r.be.staff["login:BADGE-7"] = res })
			s, err := r.e.StaffLogin(context.Background(), "BADGE-7", "", "en")
			require.NoError(t, err)
			require.Equal(t, c.state, s.State, c.name)
			if c.en != "" {
				require.Equal(t, c.en, s.Message, c.name)
			}
			seen := map[string]string{}
			for _, l := range langs {
				require.NotEmpty(t, s.Messages[l], "%s in %s", c.name, l)
				if c.state != StateStaffDenied {
					require.NotEqual(t, Message(StateStaffDenied, l, 0, 0), s.Messages[l], "%s in %s", c.name, l)
				}
				require.NotContains(t, seen, s.Messages[l], "%s: %s is %s's text", c.name, l, seen[s.Messages[l]])
				seen[s.Messages[l]] = l
			}
			r.e.mu.Lock()
			require.Nil(t, r.e.staff, "%s: no staff session", c.name)
			r.e.mu.Unlock()
		}
	})
}

func ptr(d time.Duration) *time.Duration { return &d }
