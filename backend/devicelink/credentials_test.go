package devicelink

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/broker"
	"kluis/backend/broker/mqtttest"
	"kluis/backend/store/storetest"
	"kluis/controller/pickupcode"
	"kluis/deploy/dev/testenv"
)

var cheap = pickupcode.ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1}

func TestCredentials(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	c := NewCredentials(CredentialsOptions{Pool: pool, Params: cheap, Logger: quiet()})

	require.NoError(t, c.Set(ctx, "dev-1", broker.RoleDevice, "a-long-device-password"))
	require.NoError(t, c.Set(ctx, "kluis-backend", broker.RoleBackend, "a-long-backend-password"))
	assert.ErrorIs(t, c.Set(ctx, "Dev 1", broker.RoleDevice, "a-long-device-password"), ErrCredential)
	assert.ErrorIs(t, c.Set(ctx, "dev-2", broker.Role("root"), "a-long-device-password"), ErrCredential)
	assert.ErrorIs(t, c.Set(ctx, "dev-2", broker.RoleDevice, "short"), ErrCredential)

	dev, role, ok := c.Check(ctx, "dev-1", "a-long-device-password")
	assert.True(t, ok)
	assert.Equal(t, "dev-1", dev)
	assert.Equal(t, broker.RoleDevice, role)
	_, role, ok = c.Check(ctx, "kluis-backend", "a-long-backend-password")
	assert.True(t, ok)
	assert.Equal(t, broker.RoleBackend, role)
	_, _, ok = c.Check(ctx, "dev-1", "a-long-device-passworD")
	assert.False(t, ok)
	_, _, ok = c.Check(ctx, "nobody", "a-long-device-password")
	assert.False(t, ok)

	var hash string
	require.NoError(t, pool.QueryRow(ctx, `SELECT password_hash FROM mqtt_credentials WHERE username = 'dev-1'`).Scan(&hash))
	assert.NotContains(t, hash, "a-long-device-password")
	assert.Regexp(t, `^\$argon2id\$v=19\$m=64,t=1,p=1\$`, hash)

	// Rotation replaces the old password.
	require.NoError(t, c.Set(ctx, "dev-1", broker.RoleDevice, "the-rotated-password"))
	_, _, ok = c.Check(ctx, "dev-1", "a-long-device-password")
	assert.False(t, ok)
	_, _, ok = c.Check(ctx, "dev-1", "the-rotated-password")
	assert.True(t, ok)

	require.NoError(t, c.Disable(ctx, "dev-1"))
	_, _, ok = c.Check(ctx, "dev-1", "the-rotated-password")
	assert.False(t, ok)

	// A user name keeps its role: no device takes over the backend's user,
	// and the backend's role is never given to a device's user.
	assert.ErrorIs(t, c.Set(ctx, "kluis-backend", broker.RoleDevice, "a-device-wants-this"), ErrCredential)
	assert.ErrorIs(t, c.Set(ctx, "dev-1", broker.RoleBackend, "a-device-wants-more"), ErrCredential)
	_, role, ok = c.Check(ctx, "kluis-backend", "a-long-backend-password")
	assert.True(t, ok, "the backend's password is unchanged")
	assert.Equal(t, broker.RoleBackend, role)
	_, _, ok = c.Check(ctx, "kluis-backend", "a-device-wants-this")
	assert.False(t, ok)
}

func TestCredentialsWithEmbeddedBroker(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	c := NewCredentials(CredentialsOptions{Pool: pool, Params: cheap, Logger: quiet()})
	require.NoError(t, c.Set(ctx, "dev-1", broker.RoleDevice, "a-long-device-password"))
	require.NoError(t, c.Set(ctx, "kluis-backend", broker.RoleBackend, "a-long-backend-password"))
	url := startBroker(t, c)

	assert.NoError(t, mqtttest.ConnectErr(mqtttest.Options(url, "dev-1", "dev-1", "a-long-device-password")))
	assert.Error(t, mqtttest.ConnectErr(mqtttest.Options(url, "dev-1", "dev-1", "wrong-password-here")))

	// The whole path: a device's event through the embedded broker into
	// the database, acknowledged.
	rec := newRecorder()
	l, err := New(Options{URL: url, Username: "kluis-backend", Password: "a-long-backend-password",
		Pool: pool, Events: rec, Logger: quiet()})
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = l.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-l.Ready():
	case <-time.After(wait):
		t.Fatal("link not ready")
	}
	d := newDeviceAuth(t, url, "dev-1", "a-long-device-password")
	ev := d.event(time.Now())
	d.send(ev)
	testenv.Eventually(t, "ack through the embedded broker", func() bool { return d.ackCount(ev.ID) >= 1 })
	assert.Equal(t, 1, rec.count(ev.ID))
}

func TestCredentialsCheckBounded(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	c := NewCredentials(CredentialsOptions{Pool: pool, Params: cheap, Logger: quiet(), MaxConcurrent: 1})
	require.NoError(t, c.Set(ctx, "dev-1", broker.RoleDevice, "a-long-device-password"))
	c.slots <- struct{}{} // the only slot is busy
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, _, ok := c.Check(short, "dev-1", "a-long-device-password")
	assert.False(t, ok, "no slot before the deadline: refused")
	<-c.slots
	_, _, ok = c.Check(ctx, "dev-1", "a-long-device-password")
	assert.True(t, ok)
}

// A successful check is remembered (one HMAC for the next connect, across
// instances sharing the key); a new password or disabling the user
// forgets it at once; a wrong password is never taken from memory.
func TestCredentialsRememberedChecks(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	key := []byte("a key of sixteen bytes or more")
	reg := prometheus.NewRegistry()
	c := NewCredentials(CredentialsOptions{Pool: pool, Params: cheap, Logger: quiet(), CheckKey: key, Registerer: reg})
	checks := func(result string) float64 {
		return metricValue(t, reg, "kluis_mqtt_credential_checks_total", map[string]string{"result": result})
	}
	ok := func(c *Credentials, pw string) bool { _, _, ok := c.Check(ctx, "dev-1", pw); return ok }

	require.NoError(t, c.Set(ctx, "dev-1", broker.RoleDevice, "a-long-device-password"))
	assert.True(t, ok(c, "a-long-device-password"))
	assert.Equal(t, 1.0, checks("verified"))
	dev, role, good := c.Check(ctx, "dev-1", "a-long-device-password")
	assert.True(t, good)
	assert.Equal(t, "dev-1", dev)
	assert.Equal(t, broker.RoleDevice, role)
	assert.Equal(t, 1.0, checks("remembered"))
	assert.False(t, ok(c, "a-long-device-passworD"), "a wrong password is verified, and refused")
	assert.Equal(t, 1.0, checks("refused"))
	var mac []byte
	require.NoError(t, pool.QueryRow(ctx, `SELECT mac FROM mqtt_credential_checks WHERE username = 'dev-1'`).Scan(&mac))
	assert.NotContains(t, string(mac), "a-long-device-password")

	// Another instance (a replica, a restart) with the same key uses it;
	// one with another key verifies.
	// (Refresh 1 ns: no memory, every check asks the database.)
	c2 := NewCredentials(CredentialsOptions{Pool: pool, Params: cheap, Logger: quiet(), CheckKey: key, Refresh: time.Nanosecond})
	assert.True(t, ok(c2, "a-long-device-password"))
	reg3 := prometheus.NewRegistry()
	c3 := NewCredentials(CredentialsOptions{Pool: pool, Params: cheap, Logger: quiet(), Registerer: reg3})
	assert.True(t, ok(c3, "a-long-device-password"))
	assert.Equal(t, 1.0, metricValue(t, reg3, "kluis_mqtt_credential_checks_total", map[string]string{"result": "verified"}))

	// A new password invalidates the remembered check.
	require.NoError(t, c.Set(ctx, "dev-1", broker.RoleDevice, "the-rotated-password"))
	assert.False(t, ok(c, "a-long-device-password"))
	assert.False(t, ok(c2, "a-long-device-password"))
	assert.True(t, ok(c, "the-rotated-password"))
	assert.True(t, ok(c, "the-rotated-password"))
	assert.Equal(t, 2.0, checks("remembered"))

	// Disabled: refused although remembered.
	require.NoError(t, c.Disable(ctx, "dev-1"))
	assert.False(t, ok(c, "the-rotated-password"))
	assert.False(t, ok(c2, "the-rotated-password"))
	assert.Equal(t, 2.0, checks("remembered"))

	// Re-enabled by a new password; an old remembered check expires.
	now := time.Now()
	old := NewCredentials(CredentialsOptions{Pool: pool, Params: cheap, Logger: quiet(), CheckKey: key, CheckTTL: time.Hour,
		Now: func() time.Time { return now }})
	require.NoError(t, old.Set(ctx, "dev-1", broker.RoleDevice, "a-third-password-here"))
	assert.True(t, ok(old, "a-third-password-here"))
	now = now.Add(2 * time.Hour)
	regOld := prometheus.NewRegistry()
	later := NewCredentials(CredentialsOptions{Pool: pool, Params: cheap, Logger: quiet(), CheckKey: key, CheckTTL: time.Hour,
		Now: func() time.Time { return now }, Registerer: regOld})
	assert.True(t, ok(later, "a-third-password-here"))
	assert.Equal(t, 1.0, metricValue(t, regOld, "kluis_mqtt_credential_checks_total", map[string]string{"result": "verified"}), "expired: verified again")
}

// The remembered checks are held in memory (no query per CONNECT): a Set
// or Disable in the same process takes effect at once, one made elsewhere
// within two refresh periods.
func TestCredentialsRememberedInMemory(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	key := []byte("a key of sixteen bytes or more")
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	reg := prometheus.NewRegistry()
	c := NewCredentials(CredentialsOptions{Pool: pool, Params: cheap, Logger: quiet(), CheckKey: key, Registerer: reg,
		Refresh: time.Minute, Now: clock})
	other := NewCredentials(CredentialsOptions{Pool: pool, Params: cheap, Logger: quiet(), CheckKey: key})
	ok := func(user, pw string) bool { _, _, ok := c.Check(ctx, user, pw); return ok }
	remembered := func() float64 {
		return metricValue(t, reg, "kluis_mqtt_credential_checks_total", map[string]string{"result": "remembered"})
	}
	loaded := func() bool { c.mu.Lock(); defer c.mu.Unlock(); return !c.memAt.IsZero() && !c.loading }

	for _, u := range []string{"dev-1", "dev-2"} {
		require.NoError(t, other.Set(ctx, u, broker.RoleDevice, "password-of-"+u))
		_, _, good := other.Check(ctx, u, "password-of-"+u) // remembered in the database
		require.True(t, good)
	}
	assert.True(t, ok("dev-1", "password-of-dev-1"), "from the database, starting the load")
	testenv.Eventually(t, "memory loaded", loaded)
	_, err := pool.Exec(ctx, `UPDATE mqtt_credential_checks SET mac = 'x' WHERE username = 'dev-2'`)
	require.NoError(t, err)
	assert.True(t, ok("dev-2", "password-of-dev-2"), "from memory: the database's entry is no longer asked")
	assert.False(t, ok("dev-2", "password-of-dev-1"), "a wrong password is never taken from memory")
	assert.Equal(t, 2.0, remembered())

	require.NoError(t, c.Disable(ctx, "dev-1"))
	assert.False(t, ok("dev-1", "password-of-dev-1"), "disabled here: at once")
	require.NoError(t, other.Disable(ctx, "dev-2"))
	assert.True(t, ok("dev-2", "password-of-dev-2"), "disabled elsewhere: memory still says yes, for a while")
	advance(2 * time.Minute)
	assert.False(t, ok("dev-2", "password-of-dev-2"), "after two refresh periods memory is not used")
	testenv.Eventually(t, "memory reloaded", loaded)
	assert.False(t, ok("dev-2", "password-of-dev-2"), "the reload knows it is disabled")
}

// Failed password checks are bounded per client address. Found black-box:
// 16 clients sending CONNECTs with a wrong password to the embedded broker
// from one address had 5,096 checks refused in 20 s, each an argon2id
// verification (at the demo's test cost 0.42 cores; at the production
// cost every one of the four hashing slots busy), with no limit at all.
// Now an address's 11th failure within a minute of its first is refused
// without a hash until the minute is over; a device whose successful
// check is remembered still connects from there at once.
func TestCredentialsFailuresThrottledPerAddress(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	clock := storetest.NewClock(time.Now())
	reg := prometheus.NewRegistry()
	c := NewCredentials(CredentialsOptions{Pool: pool, Params: cheap, Logger: quiet(), Now: clock.Now, Registerer: reg})
	require.NoError(t, c.Set(ctx, "dev-1", broker.RoleDevice, "a-long-device-password"))
	require.NoError(t, c.Set(ctx, "dev-2", broker.RoleDevice, "another-device-password"))
	url := startBroker(t, c)
	checks := func(result string) float64 {
		return metricValue(t, reg, "kluis_mqtt_credential_checks_total", map[string]string{"result": result})
	}

	require.NoError(t, mqtttest.ConnectErr(mqtttest.Options(url, "dev-1", "dev-1", "a-long-device-password")))
	for i := 0; i < 10; i++ {
		require.Error(t, mqtttest.ConnectErr(mqtttest.Options(url, "dev-1", "dev-1", "wrong-password-here")))
	}
	require.Equal(t, 10.0, checks("refused"), "ten wrong passwords hashed and refused")
	for i := 0; i < 5; i++ {
		require.Error(t, mqtttest.ConnectErr(mqtttest.Options(url, "dev-1", "dev-1", "wrong-password-here")))
		require.Error(t, mqtttest.ConnectErr(mqtttest.Options(url, "nobody", "nobody", "wrong-password-here")))
	}
	assert.Equal(t, 10.0, checks("refused"), "no more hashes from that address")
	assert.Equal(t, 10.0, checks("throttled"))
	assert.NoError(t, mqtttest.ConnectErr(mqtttest.Options(url, "dev-1", "dev-1", "a-long-device-password")),
		"a remembered device still connects from there")
	assert.Error(t, mqtttest.ConnectErr(mqtttest.Options(url, "dev-2", "dev-2", "another-device-password")),
		"a device never checked waits for the window, like the guesser")

	clock.Add(time.Minute)
	assert.NoError(t, mqtttest.ConnectErr(mqtttest.Options(url, "dev-2", "dev-2", "another-device-password")))
	assert.Error(t, mqtttest.ConnectErr(mqtttest.Options(url, "dev-1", "dev-1", "wrong-password-here")))
	assert.Equal(t, 11.0, checks("refused"), "a new window: hashed again")
}

// The throttle counts IPv6 per /64, forgets a window once it is over and
// keeps at most maxThrottledAddresses addresses.
func TestAddressThrottle(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	th := newAddressThrottle(2, time.Minute)
	a, same64 := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	th.failed(a, now)
	assert.False(t, th.refused(same64, now))
	th.failed(same64, now)
	assert.True(t, th.refused(a, now), "one /64")
	assert.False(t, th.refused(netip.MustParseAddr("2001:db8:1:3::1"), now), "another /64")
	assert.False(t, th.refused(a, now.Add(time.Minute)), "the window is over")
	th.failed(a, now.Add(time.Minute))
	assert.False(t, th.refused(a, now.Add(time.Minute)), "a new window starts with one failure")

	v4 := netip.MustParseAddr("192.0.2.1")
	for i := 0; len(th.byAddr) < maxThrottledAddresses; i++ {
		th.failed(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	th.failed(v4, now)
	th.failed(v4, now)
	assert.False(t, th.refused(v4, now), "full of live windows: a new address is not tracked")
	assert.LessOrEqual(t, len(th.byAddr), maxThrottledAddresses)
	th.failed(v4, now.Add(2*time.Minute))
	th.failed(v4, now.Add(2*time.Minute))
	assert.True(t, th.refused(v4, now.Add(2*time.Minute)), "expired windows are swept to make room")
}

// startBroker starts an embedded broker checking passwords with c until
// the test ends and returns its URL.
func startBroker(t *testing.T, c *Credentials) string {
	t.Helper()
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0", Credentials: c.Check, Logger: quiet()})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	return "tcp://" + b.Addr()
}

// A check of the old password that read the credential before a new one
// was set, and finished after, remembered the old password in memory:
// the next CONNECTs with it passed from memory (one HMAC, no database)
// until the memory was reloaded. Raced many times: once Set has returned
// and the racing checks have ended, the old password is refused.
func TestOldPasswordNotRememberedAfterANewOne(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	c := NewCredentials(CredentialsOptions{Pool: pool, Params: cheap, Logger: quiet(), Refresh: time.Hour})
	for i := range 100 {
		old := fmt.Sprintf("old-device-password-%03d", i)
		require.NoError(t, c.Set(ctx, "dev-1", broker.RoleDevice, old))
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() { defer wg.Done(); c.Check(ctx, "dev-1", old) }()
		}
		require.NoError(t, c.Set(ctx, "dev-1", broker.RoleDevice, fmt.Sprintf("new-device-password-%03d", i)))
		wg.Wait()
		_, _, ok := c.Check(ctx, "dev-1", old)
		require.False(t, ok, "round %d: the old password still passes after the new one was set", i)
	}
}
