package connlimit_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/internal/connlimit"
)

// Past the cap every connection is refused and counted, the listener
// never holds more than the cap, and the warning is logged once for the
// whole flood (not once per connection).
func TestRefusalsAreCountedAndLoggedBounded(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var logs bytes.Buffer
	var refused atomic.Int64
	var most atomic.Int64
	l := connlimit.New(tcp, connlimit.Options{Max: 3, Name: "test", Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		OnRefuse: func() { refused.Add(1) },
		OnOpen: func(n int64) {
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
		}})
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", tcp.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		<-accepted
	}
	for range 200 {
		c, err := net.Dial("tcp", tcp.Addr().String())
		require.NoError(t, err)
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		b, _ := io.ReadAll(c) // the answer, or a close without one past the refusals in progress
		if len(b) > 0 {
			require.True(t, strings.HasPrefix(string(b), "HTTP/1.1 503 "), "%q", b)
		}
		c.Close()
	}
	require.EqualValues(t, 200, refused.Load())
	require.EqualValues(t, 3, most.Load())
	require.EqualValues(t, 3, l.Open())
	require.Equal(t, 1, strings.Count(logs.String(), "connection refused"), logs.String())
}
