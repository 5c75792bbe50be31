package deviceops_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/deviceops"
	"kluis/controller/wire"
)

// Kiosk staff logins are limited per device (5 failures in 15 minutes),
// and the count is shared by every backend replica (the broker hands a
// device's requests to any of them) and kept over a restart.
func TestKioskLoginLimitSharedByReplicas(t *testing.T) {
	e := newEnv(t)
	as := e.kioskAuth(t)
	pin := e.counterClerk(t, as)
	replica := func() *deviceops.Staff {
		return deviceops.NewStaff(deviceops.StaffOptions{Auth: as, Service: e.svc, Pool: e.st.Pool(), Clock: e.clock.Now})
	}
	login := func(h *deviceops.Staff, dev, p string) wire.StaffResult {
		return h.HandleStaff(e.ctx, dev, wire.StaffRequest{ID: wire.NewID(e.clock.Now()), Op: wire.StaffLogin, At: e.clock.Now(), PIN: p}).Result
	}
	a, b := replica(), replica()
	for i := 0; i < 5; i++ {
		require.Equal(t, wire.StaffDenied, login([]*deviceops.Staff{a, b}[i%2], "k1", "111111"), "attempt %d", i+1)
	}
	for _, h := range []*deviceops.Staff{a, b, replica()} {
		assert.Equal(t, wire.StaffDenied, login(h, "k1", pin), "5 failures over two replicas lock k1's staff logins everywhere, after a restart too")
	}
	assert.Equal(t, wire.StaffOK, login(b, "k2", pin), "another device is not locked")
	e.clock.Add(15*time.Minute + time.Second)
	assert.Equal(t, wire.StaffOK, login(a, "k1", pin), "after the window")

	// Concurrent wrong PINs on two replicas: exactly five are tried.
	var wg sync.WaitGroup
	before := auditCount(t, e, "kiosk.login_failed")
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			login([]*deviceops.Staff{a, b}[i%2], "k1", "222222")
		}()
	}
	wg.Wait()
	tried := auditCount(t, e, "kiosk.login_failed") - before
	assert.Equal(t, 5, tried, "each evaluated wrong PIN is audited; the others were refused before")
}

// Without the database a kiosk staff login is answered unavailable, not
// tried uncounted.
func TestKioskLoginUnavailableWithoutTheDatabase(t *testing.T) {
	e := newEnv(t)
	down, err := pgxpool.New(context.Background(), e.st.Pool().Config().ConnString())
	require.NoError(t, err)
	down.Close()
	as := e.kioskAuth(t)
	h := deviceops.NewStaff(deviceops.StaffOptions{Auth: as, Service: e.svc, Pool: down, Clock: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	r := h.HandleStaff(e.ctx, "k1", wire.StaffRequest{ID: wire.NewID(e.clock.Now()), Op: wire.StaffLogin, At: e.clock.Now(), PIN: "111111"})
	assert.Equal(t, wire.StaffUnavailable, r.Result)
}

func auditCount(t *testing.T, e *env, action string) int {
	t.Helper()
	var n int
	require.NoError(t, e.st.Pool().QueryRow(e.ctx, `SELECT (SELECT count(*) FROM audit_log WHERE action = $1) + (SELECT count(*) FROM audit_pending WHERE action = $1)`, action).Scan(&n))
	return n
}

// PruneKioskLogins removes the failures older than the daily window as of
// the time it is given (more than one batch), and keeps the window's,
// whose lock still holds.
func TestKioskLoginFailuresPrunedWithoutLogins(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	_, err := e.st.Pool().Exec(ctx, `INSERT INTO kiosk_login_failures (device_id, at)
		SELECT 'k' || g, $1 FROM generate_series(1, 230) g`, now)
	require.NoError(t, err)
	_, err = e.st.Pool().Exec(ctx, `INSERT INTO kiosk_login_failures (device_id, at)
		SELECT 'k-locked', $1 FROM generate_series(1, 10) g`, now.Add(10*time.Minute))
	require.NoError(t, err)
	count := func() (n int) {
		require.NoError(t, e.st.Pool().QueryRow(ctx, `SELECT count(*) FROM kiosk_login_failures`).Scan(&n))
		return n
	}
	n, err := deviceops.PruneKioskLogins(ctx, e.st.Pool(), now.Add(24*time.Hour-time.Second))
	require.NoError(t, err)
	assert.Zero(t, n, "nothing has left the daily window yet")
	n, err = deviceops.PruneKioskLogins(ctx, e.st.Pool(), now.Add(24*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 230, n)
	assert.Equal(t, 10, count())

	e.clock.Set(now.Add(24 * time.Hour))
	h := deviceops.NewStaff(deviceops.StaffOptions{Service: e.svc, Pool: e.st.Pool(), Clock: e.clock.Now})
	res := h.HandleStaff(ctx, "k-locked", wire.StaffRequest{ID: wire.NewID(e.clock.Now()), Op: wire.StaffLogin, At: e.clock.Now(), PIN: "48291637"})
	assert.Equal(t, wire.StaffDenied, res.Result, "the kept failures still lock the device's staff logins")

	down, err := pgxpool.New(ctx, e.st.Pool().Config().ConnString())
	require.NoError(t, err)
	down.Close()
	_, err = deviceops.PruneKioskLogins(ctx, down, now)
	assert.Error(t, err)
}

// A guesser at one kiosk typing staff PINs 5 at a time, waiting out each
// 15-minute lock, had 480 guesses a day without end (found black-box: 5
// refused, then the lock, then 5 more after 15 minutes, and a rightful
// login in between forgot them all). Now the device refuses staff logins
// after 10 failures in 24 hours, the rightful staff's login in between
// does not give the guesser a new day, and successful logins use up
// nothing.
func TestKioskStaffPINGuessingHasADailyCap(t *testing.T) {
	e := newEnv(t)
	as := e.kioskAuth(t)
	pin := e.counterClerk(t, as)
	h := deviceops.NewStaff(deviceops.StaffOptions{Auth: as, Service: e.svc, Pool: e.st.Pool(), Clock: e.clock.Now})
	login := func(dev, p string) wire.StaffResult {
		return h.HandleStaff(e.ctx, dev, wire.StaffRequest{ID: wire.NewID(e.clock.Now()), Op: wire.StaffLogin, At: e.clock.Now(), PIN: p}).Result
	}

	for i := 0; i < 12; i++ {
		require.Equal(t, wire.StaffOK, login("k1", pin), "successful login %d counts towards no cap", i+1)
	}
	before := auditCount(t, e, "kiosk.login_failed")
	for i := 0; i < 4; i++ {
		require.Equal(t, wire.StaffDenied, login("k1", "111111"))
	}
	require.Equal(t, wire.StaffOK, login("k1", pin), "the rightful staff member logs in between")
	for i := 0; i < 5; i++ {
		require.Equal(t, wire.StaffDenied, login("k1", "111111"))
	}
	e.clock.Add(15*time.Minute + time.Second)
	require.Equal(t, wire.StaffDenied, login("k1", "111111"), "the burst lock is over: the tenth failure of the day is tried")
	assert.Equal(t, 10, auditCount(t, e, "kiosk.login_failed")-before)
	for _, step := range []time.Duration{0, 15*time.Minute + time.Second, 12 * time.Hour} {
		e.clock.Add(step)
		assert.Equal(t, wire.StaffDenied, login("k1", pin), "the daily cap refuses even the right PIN, untried")
	}
	assert.Equal(t, 10, auditCount(t, e, "kiosk.login_failed")-before, "nothing was tried under the cap")
	assert.Equal(t, 3, auditCount(t, e, "kiosk.login_refused"), "each login refused under the lock is a denied attempt, audited once")
	assert.Equal(t, wire.StaffOK, login("k2", pin), "another device is not locked")

	// 24 hours after the first nine failures they have left the window
	// (one is left): the device lets logins through again.
	e.clock.Add(12*time.Hour - 30*time.Minute)
	assert.Equal(t, wire.StaffOK, login("k1", pin))
}

// kioskAuth is the auth service of kiosk staff logins at test cost.
func (e *env) kioskAuth(t *testing.T) *auth.Service {
	t.Helper()
	as, err := auth.New(auth.Options{Pool: e.st.Pool(), Clock: e.clock.Now, KioskKey: []byte("kiosk-key-0123456789"),
		Params: auth.Params{Time: 1, MemoryKiB: 64, Threads: 1}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	return as
}

// counterClerk creates the counter clerk "an" (staff) with a kiosk staff
// PIN and returns the PIN.
func (e *env) counterClerk(t *testing.T, as *auth.Service) string {
	t.Helper()
	u, err := as.CreateUser(e.ctx, "an", "counter password 1", auth.RoleStaff)
	require.NoError(t, err)
	pin := "48291637"
	require.NoError(t, as.SetKioskCredentials(e.ctx, u.ID, &pin, nil))
	return pin
}

// A refused kiosk staff login under a lock says when the lock ends, in
// expires (a field every kluisd knows: an older one shows its plain
// refusal), for the kiosk to tell the burst lock (at most 15 minutes)
// from the daily cap; the failure that makes the lock says it already.
// Wrong credentials without a lock carry no expires, and the answers
// for a right and a wrong PIN under a lock are the same.
func TestKioskStaffLoginRefusalSaysWhenTheLockEnds(t *testing.T) {
	e := newEnv(t)
	as := e.kioskAuth(t)
	pin := e.counterClerk(t, as)
	h := deviceops.NewStaff(deviceops.StaffOptions{Auth: as, Service: e.svc, Pool: e.st.Pool(), Clock: e.clock.Now})
	login := func(p string) wire.StaffResponse {
		return h.HandleStaff(e.ctx, "k1", wire.StaffRequest{ID: wire.NewID(e.clock.Now()), Op: wire.StaffLogin, At: e.clock.Now(), PIN: p})
	}
	lockEnd := func(r wire.StaffResponse) time.Duration {
		t.Helper()
		require.Equal(t, wire.StaffDenied, r.Result)
		require.NotNil(t, r.Expires, "a refusal under a lock says when it ends")
		assert.Zero(t, r.Expires.Nanosecond(), "whole seconds")
		return r.Expires.Sub(e.clock.Now())
	}

	for i := 0; i < 4; i++ {
		r := login("111111")
		require.Equal(t, wire.StaffDenied, r.Result)
		assert.Nil(t, r.Expires, "a wrong PIN without a lock says nothing more (failure %d)", i+1)
	}
	first := lockEnd(login("111111"))
	assert.True(t, first > 14*time.Minute && first <= 15*time.Minute+time.Second, "the fifth failure makes the burst lock: %v", first)
	right, wrong := login(pin), login("111111")
	assert.Equal(t, right.Expires, wrong.Expires, "under the lock a right and a wrong PIN get the same answer")
	assert.Equal(t, right.Result, wrong.Result)
	assert.True(t, lockEnd(right) <= 15*time.Minute+time.Second)

	// Five more failures after the burst lock: the daily cap, which ends 24
	// hours after the first of the day's ten.
	e.clock.Add(15*time.Minute + time.Second)
	for i := 0; i < 4; i++ {
		require.Nil(t, login("111111").Expires)
	}
	daily := lockEnd(login("111111"))
	assert.True(t, daily > 23*time.Hour && daily <= 24*time.Hour-15*time.Minute, "the tenth failure makes the daily cap: %v", daily)
	e.clock.Add(15*time.Minute + time.Second)
	later := lockEnd(login(pin))
	assert.Equal(t, daily-15*time.Minute-time.Second, later, "the daily cap's end stays put")
}
