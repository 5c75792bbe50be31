package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/devicelink"
	"kluis/backend/server"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// A device (a stolen password) that verifies PINs faster than its budget:
// the requests over budget are answered "unavailable", signed for the
// device and the request (kluisd takes it and checks offline), and write
// no code attempt; the others are verified as usual. The episode is
// counted and audited.
func TestDeviceOverVerifyBudget(t *testing.T) {
	const burst, n = 3, 8
	// No refill within the test: one token in about 17 minutes.
	s := startBackend(t, server.Options{DeviceVerifyBudget: devicelink.Budget{Rate: 0.001, Burst: burst}})
	testenv.Eventually(t, "the backend's link to connect", func() bool {
		return strings.Contains(s.metrics(), "kluis_devicelink_broker_connected 1")
	})
	s.call("POST", "/api/v1/sites", map[string]any{"id": "kortrijk", "name": "Stadhuis"}, 201)
	s.call("POST", "/api/v1/devices", map[string]any{"id": "k1", "site_id": "kortrijk", "kind": "locker",
		"compartments": []map[string]any{{"board": 0, "channel": 3, "size": "M", "height_cm": 100}}}, 201)
	pw := s.call("POST", "/api/v1/devices/k1/mqtt-password", nil, 201)["password"].(string)
	dev := connectDevice(t, s.Broker, "k1", pw)

	for i := range n {
		dev.publish(wire.KindVerifyReq, &wire.VerifyRequest{ID: fmt.Sprint("r-", i), At: time.Now().UTC(),
			Method: wire.MethodPIN, PIN: fmt.Sprintf("12345678%d", i)})
	}
	testenv.Eventually(t, "every request answered", func() bool { return len(dev.received(wire.KindVerifyRes)) == n })
	results := map[wire.VerifyResult]int{}
	for _, b := range dev.received(wire.KindVerifyRes) {
		m, err := wire.DecodeKind(wire.KindVerifyRes, b)
		require.NoError(t, err)
		r := m.(*wire.VerifyResponse)
		results[r.Result]++
		assert.NoError(t, wire.VerifyResponseSig(s.Options.Keys.Public(), "k1", r.ID, r, time.Now()), "signed: kluisd acts on it")
	}
	// Within budget the PIN is checked (an unknown PIN without a date of
	// birth asks for one, as for any PIN: nothing leaks).
	assert.Equal(t, map[wire.VerifyResult]int{wire.VerifySecondFactorRequired: burst, wire.VerifyUnavailable: n - burst}, results)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.Options.DatabaseURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var attempts int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM code_attempts WHERE device_id = 'k1'`).Scan(&attempts))
	assert.Equal(t, burst, attempts, "no attempt row for a request over budget")
	testenv.Eventually(t, "the episode audited", func() bool {
		var c int
		_ = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_log WHERE action = 'device.throttled' AND subject = 'device:k1')
			+ (SELECT count(*) FROM audit_pending WHERE action = 'device.throttled' AND subject = 'device:k1')`).Scan(&c)
		return c == 1
	})
	m := s.metrics()
	assert.Contains(t, m, fmt.Sprintf(`kluis_devicelink_messages_total{kind="verify/req",outcome="throttled"} %d`, n-burst))
	assert.Contains(t, m, `kluis_devicelink_throttle_episodes_total{budget="verify"} 1`)
	assert.Contains(t, s.Log.String(), "device over its budget")
}
