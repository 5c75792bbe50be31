package devicelink

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
)

func TestNewChecksOptions(t *testing.T) {
	_, err := New(Options{})
	assert.Error(t, err, "no pool")
	pool := newPool(t)
	_, err = New(Options{Pool: pool, DeviceFilter: "#"})
	assert.ErrorIs(t, err, wire.ErrTopic)
	l, err := New(Options{Pool: pool, Logger: quiet()})
	require.NoError(t, err)
	assert.Equal(t, "+", l.o.DeviceFilter)
	assert.Equal(t, wire.BackendShareGroup, l.o.ShareGroup)

	// Before Run there is no connection: the command is stored as pending
	// and the caller learns it was not sent.
	id, err := l.SendCommand(context.Background(), "dev-x", wire.Command{Kind: wire.CmdOpen, Addr: &wire.Address{Channel: 1}})
	assert.ErrorIs(t, err, ErrNotConnected)
	st, err := l.CommandStatus(context.Background(), id)
	require.NoError(t, err)
	assert.Equal(t, "pending", st.Status)
	assert.WithinDuration(t, time.Now().Add(5*time.Minute), st.Expires, time.Minute)
	_, err = l.SendCommand(context.Background(), "Dev X", wire.Command{Kind: wire.CmdOpen, Addr: &wire.Address{Channel: 1}})
	assert.ErrorIs(t, err, wire.ErrTopic)
}
