package devicelink

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// A verifier that panics must not leave the request's reply-cache entry
// open: its repeat (a QoS 1 redelivery, the kiosk asking again) used to
// wait for the link's timeout and get no answer, and the entry held back
// the pruning of every later one. Both are answered unavailable at once,
// the panic is logged without the request's code, the link lives on.
func TestPanickingVerifierAnswersUnavailable(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	var calls atomic.Int32
	v := VerifierFunc(func(ctx context.Context, device string, req wire.VerifyRequest) wire.VerifyResponse {
		if calls.Add(1) == 1 {
			panic("verifier bug with PIN " + req.PIN)
		}
		return wire.VerifyResponse{Result: wire.VerifyWrongCode}
	})
	var logs testenv.SyncBuffer
	l := runLink(t, Options{URL: testenv.BrokerURL(), ClientID: "kluis-backend-test-" + randHex(4),
		ShareGroup: "kluis-test-" + randHex(4), DeviceFilter: dev, Pool: pool, Verifier: v,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Registry: prometheus.NewRegistry(), Workers: 3,
		Timeout: time.Minute}) // a repeat held until the timeout would outlast the test's wait
	d := newDevice(t, testenv.BrokerURL(), dev)

	req, err := wire.Encode(&wire.VerifyRequest{ID: "req-p", At: time.Now(), Method: wire.MethodPIN, PIN: "482913"})
	require.NoError(t, err)
	d.raw(wire.KindVerifyReq, req)
	d.raw(wire.KindVerifyReq, req) // a QoS 1 redelivery
	testenv.Eventually(t, "both requests answered", func() bool { return len(d.received(wire.KindVerifyRes)) >= 2 })
	for _, b := range d.received(wire.KindVerifyRes) {
		m, err := wire.DecodeKind(wire.KindVerifyRes, b)
		require.NoError(t, err)
		assert.Equal(t, &wire.VerifyResponse{V: 1, ID: "req-p", Result: wire.VerifyUnavailable}, m)
	}
	assert.Equal(t, int32(1), calls.Load(), "the repeat got the first answer")
	testenv.Eventually(t, "the reply-cache entry answered", func() bool {
		l.replies.mu.Lock()
		defer l.replies.mu.Unlock()
		r := l.replies.entries[dev+"\x00"+string(wire.KindVerifyRes)+"\x00req-p"]
		if r == nil {
			return false
		}
		select {
		case <-r.done:
			return true
		default:
			return false
		}
	})

	// The link lives on: a next request is verified.
	next, err := wire.Encode(&wire.VerifyRequest{ID: "req-q", At: time.Now(), Method: wire.MethodPIN, PIN: "111111"})
	require.NoError(t, err)
	d.raw(wire.KindVerifyReq, next)
	testenv.Eventually(t, "the next request answered", func() bool { return len(d.received(wire.KindVerifyRes)) >= 3 })

	out := logs.String()
	var panicLine string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, "panic") {
			panicLine = line
		}
	}
	assert.NotEmpty(t, panicLine, "the panic logged as an error: %s", out)
	assert.NotContains(t, out, "482913", "no code in the log")
}

// A panicking event handler is logged with the panic's type and stack, not
// its value, which may quote the device's payload (the request handler's
// catcher already logged no value).
func TestPanickingEventHandlerLogsNoValue(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	var calls atomic.Int32
	h := EventHandlerFunc(func(ctx context.Context, tx pgx.Tx, device string, ev wire.Event) error {
		calls.Add(1)
		panic("handler bug with event " + ev.ID)
	})
	var logs testenv.SyncBuffer
	runLink(t, Options{URL: testenv.BrokerURL(), ClientID: "kluis-backend-test-" + randHex(4),
		ShareGroup: "kluis-test-" + randHex(4), DeviceFilter: dev, Pool: pool, Events: h,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Registry: prometheus.NewRegistry(), Workers: 3})
	d := newDevice(t, testenv.BrokerURL(), dev)
	id := "ev-secret-" + randHex(6)
	ev, err := wire.Encode(&wire.Event{ID: id, Kind: wire.EvDoorOpened, At: time.Now().UTC(), Addr: &wire.Address{Board: 0, Channel: 1}})
	require.NoError(t, err)
	d.raw(wire.KindEvent, ev)
	testenv.Eventually(t, "the panic logged", func() bool {
		return calls.Load() >= 1 && strings.Contains(logs.String(), "panic while handling a message")
	})
	out := logs.String()
	assert.Contains(t, out, "panic.type=string")
	assert.NotContains(t, out, "handler bug with event", "the panic's value is not logged")
}
