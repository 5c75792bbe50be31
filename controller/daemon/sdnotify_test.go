package daemon

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// READY=1 goes out once ready is closed, not before: a notifier whose
// context ends while start-up is still under way sends nothing, one whose
// ready channel is closed sends READY=1 (on a real unixgram socket, as
// systemd's $NOTIFY_SOCKET).
func TestNotifierReadyWhenReady(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	defer sock.Close()
	n := notifier{socket: path}
	healthy := func() bool { return true }

	// Not ready: watchdog returns when ctx ends, having sent nothing (a
	// send is a synchronous datagram: it would be queued by now).
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); n.watchdog(ctx, 0, ready, healthy) }()
	cancel()
	<-done
	require.NoError(t, sock.SetReadDeadline(time.Now()))
	buf := make([]byte, 64)
	_, err = sock.Read(buf)
	require.True(t, errors.Is(err, os.ErrDeadlineExceeded), "nothing sent before ready, got err %v", err)

	// Ready: READY=1, then (no watchdog interval) watchdog returns.
	close(ready)
	n.watchdog(context.Background(), 0, ready, healthy)
	require.NoError(t, sock.SetReadDeadline(time.Now().Add(10*time.Second)))
	k, err := sock.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "READY=1", string(buf[:k]))
}
