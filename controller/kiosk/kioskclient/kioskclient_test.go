package kioskclient_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/engine"
	"kluis/controller/engine/enginetest"
	"kluis/controller/kiosk"
	"kluis/controller/kiosk/kioskclient"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

const dev = "kioskclient-test"

// server starts an engine on a fake driver behind the real kiosk handler;
// it returns the engine and the server's URL.
func server(t *testing.T) (*enginetest.Rig, string) {
	r := enginetest.Start(t, enginetest.Options{DeviceID: dev})
	srv := httptest.NewServer(kiosk.Handler(r.Engine, r.Logger))
	t.Cleanup(srv.Close)
	return r, srv.URL
}

func TestPickupAndSession(t *testing.T) {
	r, base := server(t)
	f := r.Driver
	c := kioskclient.New(base)
	ctx := context.Background()

	s, err := c.Session(ctx)
	require.NoError(t, err)
	require.Equal(t, engine.StateIdle, s.State)

	s, err = c.Post(ctx, "/kiosk/v1/pickup", map[string]string{"qr": "K1.nonsense", "lang": "en"})
	require.NoError(t, err)
	require.Equal(t, engine.StateWrongCode, s.State)
	require.NotEmpty(t, s.Message)

	tok := r.SyncQR(t, "doc-1", 1)
	s, err = c.Post(ctx, "/kiosk/v1/pickup", map[string]string{"qr": tok, "lang": "en"})
	require.NoError(t, err)
	require.Equal(t, engine.StateOpen, s.State)
	require.Equal(t, 2, s.Compartment)
	require.Contains(t, s.Message, "Compartment\u00a02 is open")
	seq := s.Seq

	s, err = c.Session(ctx)
	require.NoError(t, err)
	require.Equal(t, engine.StateOpen, s.State)
	require.GreaterOrEqual(t, s.Seq, seq)
	testenv.Eventually(t, "one pulse at channel 1", func() bool { return f.PulseCount(hardware.Address{Channel: 1}) == 1 })

}

func TestErrors(t *testing.T) {
	_, base := server(t)
	c := &kioskclient.Client{Base: base, HTTP: &http.Client{Timeout: 5 * time.Second}}
	ctx := context.Background()

	// A refused request is a StatusError with the server's explanation.
	_, err := c.Post(ctx, "/kiosk/v1/pickup", map[string]string{"pin": "98765abc"})
	var se *kioskclient.StatusError
	require.True(t, errors.As(err, &se), "%v", err)
	require.Equal(t, http.StatusBadRequest, se.Status)
	require.Equal(t, http.MethodPost, se.Method)
	require.Contains(t, se.Error(), "400")

	_, err = c.Post(ctx, "/kiosk/v1/tech/test-open", map[string]int{"compartment": 1})
	require.True(t, errors.As(err, &se), "%v", err)
	require.Equal(t, http.StatusForbidden, se.Status)
	// The diagnostics are for a technician logged in at the kiosk.
	_, err = c.Diagnostics(ctx)
	require.True(t, errors.As(err, &se), "%v", err)
	require.Equal(t, http.StatusForbidden, se.Status)

	// No server at all: a transport error naming the request.
	_, err = kioskclient.New("http://127.0.0.1:1").Session(ctx)
	require.Error(t, err)
	require.False(t, errors.As(err, &se))
	require.Contains(t, err.Error(), "/kiosk/v1/session")
}
