package devicelink

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/broker"
	"kluis/backend/broker/mqtttest"
	"kluis/controller/pickupcode"
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
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0", Credentials: c.Check, Logger: quiet()})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	url := "tcp://" + b.Addr()

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
	eventually(t, "ack through the embedded broker", func() bool { return d.ackCount(ev.ID) >= 1 })
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
	c2 := NewCredentials(CredentialsOptions{Pool: pool, Params: cheap, Logger: quiet(), CheckKey: key})
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
