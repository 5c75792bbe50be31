package api_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/api"
	"kluis/backend/auth"
	"kluis/backend/codes"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/controller/pickupcode"
)

// A pickup period the backend accepted (eid=60 days, up to 366 then)
// made every load fail in codes ("expiry not within 60 days":
// pickupcode.ErrInvalid, a 500 for the counter): the longest periods the
// service accepts now give codes within codes.MaxValidity, loaded at the
// worst moment (just after local midnight: the rest of the day is
// added), and a longer one is refused when the service is made (the
// backend does not start: backend/cli names the entry). The codes'
// other invalid inputs come from the database, never from a request:
// they stay 500.
func TestLongestPickupPeriodsLoad(t *testing.T) {
	require.LessOrEqual(t, time.Duration(service.MaxPickupDays)*24*time.Hour+25*time.Hour, codes.MaxValidity, "days: the rest of the loading day and a DST hour")
	require.LessOrEqual(t, service.MaxPickupPeriod, codes.MaxValidity)
	_, err := service.New(service.Options{Store: nil, PickupDays: map[store.DocumentKind]int{store.EID: service.MaxPickupDays + 1}})
	require.ErrorIs(t, err, service.ErrInvalid)
	_, err = service.New(service.Options{Store: nil, PickupPeriods: map[store.DocumentKind]time.Duration{store.EID: service.MaxPickupPeriod + time.Second}})
	require.ErrorIs(t, err, service.ErrInvalid)

	brussels, err := time.LoadLocation("Europe/Brussels")
	require.NoError(t, err)
	now := time.Date(2026, 3, 1, 0, 0, 1, 0, brussels) // a DST change within the period
	clock := func() time.Time { return now }
	e := newEnv(t, func(o *api.Options) {
		keys, err := codes.GenerateKeys()
		require.NoError(t, err)
		cs, err := codes.New(codes.Options{Pool: o.Pool, Keys: keys, Clock: clock, Logger: quietLogger(), Argon: pickupcode.ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1}})
		require.NoError(t, err)
		st, err := store.Open(t.Context(), o.Pool.Config().ConnString(), store.Options{Clock: clock})
		require.NoError(t, err)
		t.Cleanup(st.Close)
		o.Service, err = service.New(service.Options{Store: st, Clock: clock, Logger: quietLogger(), Codes: codes.Issuer{Service: cs},
			PickupDays:    map[store.DocumentKind]int{store.EID: service.MaxPickupDays},
			PickupPeriods: map[store.DocumentKind]time.Duration{store.Passport: service.MaxPickupPeriod}})
		require.NoError(t, err)
	})
	e.setupSite(2)
	staff := e.tokens[auth.RoleStaff]
	for _, kind := range []string{"eid", "passport"} {
		d := newDoc("591-1234567-8" + kind[:1])
		d["kind"] = kind
		r := e.do("POST", "/api/v1/documents", staff, d)
		require.Equal(t, 201, r.status, string(r.body))
		var doc store.Document
		r.decode(t, &doc)
		r = e.do("POST", "/api/v1/documents/"+doc.ID+"/reserve", staff, map[string]any{"device_id": "kortrijk-1"})
		require.Equal(t, 200, r.status, string(r.body))
		r = e.do("POST", "/api/v1/documents/"+doc.ID+"/load", staff, nil)
		require.Equal(t, 200, r.status, "%s: %s", kind, r.body)
		r.decode(t, &doc)
		require.NotNil(t, doc.Deadline)
		assert.LessOrEqual(t, doc.Deadline.Sub(now), codes.MaxValidity, kind)
		r = e.do("POST", "/api/v1/documents/"+doc.ID+"/reissue", staff, nil)
		require.Equal(t, 200, r.status, "%s: %s", kind, r.body)
	}
	assert.Empty(t, e.errors.String(), "no 500")
}
