package devicelink

import (
	"context"
	"testing"
	"time"

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
