package broker

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"kluis/deploy/dev/testenv"
)

// count is how often sub was written to logs.
func count(logs *testenv.SyncBuffer, sub string) int { return strings.Count(logs.String(), sub) }

// Refused CONNECTs and protocol violations, which anyone who reaches the
// port can send, are logged at most 20 times per 10 s each. Found
// black-box: 5,096 CONNECTs with a wrong password in 20 s wrote 5,096
// warnings (0.9 MB) to the backend's log, and a refusal without a hash
// costs the sender next to nothing. The metric counts every one.
func TestClientCausedWarningsAreBounded(t *testing.T) {
	var logs testenv.SyncBuffer
	reg := prometheus.NewRegistry()
	b, err := New(Options{Addr: "127.0.0.1:0", Credentials: testCreds,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Registry: reg})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	for i := 0; i < 60; i++ {
		rc := dialRaw(t, b.Addr())
		rc.send(connectPkt("dev-a", "dev-a", "wrong", 30, "", ""))
		hdr, body := rc.next()
		require.Equal(t, byte(pktConnack<<4), hdr)
		require.Equal(t, []byte{0, connBadCredentials}, body)
		_ = rc.c.Close()
		rc = dialRaw(t, b.Addr())
		rc.send(packet(pktPingreq << 4))
		assert.True(t, rc.closed())
	}
	assert.Equal(t, 60.0, testutil.ToFloat64(b.srv.m.authFail), "every refusal counted")
	assert.Equal(t, logBurst, count(&logs, `msg="connection refused"`))
	assert.Equal(t, logBurst, count(&logs, `msg="closing a connection: protocol violation"`))
	// A genuine device still connects, and the broker goes on.
	rc := dialRaw(t, b.Addr())
	rc.login("dev-a", "dev-a", "pw-dev-a", 30, "", "")
}
