package kioskclient_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/config"
	"kluis/controller/engine"
	"kluis/controller/journal"
	"kluis/controller/kiosk"
	"kluis/controller/kiosk/kioskclient"
	"kluis/controller/offline"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
	"kluis/hardware"
	"kluis/hardware/hardwaretest"
)

const dev = "kioskclient-test"

// server starts an engine on a fake driver behind the real kiosk handler;
// it returns the engine, the driver, the signing key and the server's URL.
func server(t *testing.T) (*engine.Engine, *hardwaretest.Fake, ed25519.PrivateKey, string) {
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(`
device_id: `+dev+`
site: test
kind: locker
mqtt: {url: tcp://127.0.0.1:1883}
hardware: {driver: simfile, simfile: /dev/null}
journal_dir: `+dir+`
compartments:
  - {number: 1, board: 0, channel: 0}
  - {number: 2, board: 0, channel: 1}
`), config.ParseOptions{AllowTestDrivers: true})
	require.NoError(t, err)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	f := hardwaretest.New(hardwaretest.Options{Caps: hardware.Capabilities{DoorSensor: true, ItemSensor: true}})
	j, recs, _, err := journal.Open(journal.Options{Dir: dir, DeviceID: dev})
	require.NoError(t, err)
	cache, err := offline.Open(dir, dev, pub)
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := engine.New(engine.Options{Config: cfg, Driver: f, Journal: j, Replay: recs, Cache: cache, CommandKey: pub, Logger: log})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; j.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for !e.Ready() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	srv := httptest.NewServer(kiosk.Handler(e, log))
	t.Cleanup(srv.Close)
	return e, f, priv, srv.URL
}

// token syncs a QR code for channel ch into the offline cache.
func token(t *testing.T, e *engine.Engine, priv ed25519.PrivateKey, doc string, ch int) string {
	id := make([]byte, pickupcode.CodeIDSize)
	_, _ = rand.Read(id)
	cid := base64.RawURLEncoding.EncodeToString(id)
	now := time.Now()
	tok, err := pickupcode.SignToken(priv, pickupcode.Claims{CodeID: cid, DeviceID: dev, Expires: now.Add(time.Hour).Unix()})
	require.NoError(t, err)
	cmd := wire.Command{ID: wire.NewID(now), Kind: wire.CmdCodeSync, Issued: now,
		Expires: now.Add(time.Minute), Codes: &wire.CodeSync{Version: now.UnixNano(), Entries: []wire.CodeEntry{
			{DocumentID: doc, Addr: wire.Address{Channel: ch}, Expires: now.Add(time.Hour), QRHash: pickupcode.QRHash(cid)}}}}
	require.NoError(t, wire.SignCommand(priv, dev, &cmd))
	res := e.HandleCommand(context.Background(), cmd)
	require.Equal(t, wire.StatusDone, res.Status, res.Detail)
	return tok
}

func TestPickupAndSession(t *testing.T) {
	e, f, priv, base := server(t)
	c := kioskclient.New(base)
	ctx := context.Background()

	s, err := c.Session(ctx)
	require.NoError(t, err)
	require.Equal(t, engine.StateIdle, s.State)

	s, err = c.Post(ctx, "/kiosk/v1/pickup", map[string]string{"qr": "K1.nonsense", "lang": "en"})
	require.NoError(t, err)
	require.Equal(t, engine.StateWrongCode, s.State)
	require.NotEmpty(t, s.Message)

	tok := token(t, e, priv, "doc-1", 1)
	s, err = c.Post(ctx, "/kiosk/v1/pickup", map[string]string{"qr": tok, "lang": "en"})
	require.NoError(t, err)
	require.Equal(t, engine.StateOpen, s.State)
	require.Equal(t, 2, s.Compartment)
	require.Contains(t, s.Message, "Compartment 2 is open")
	seq := s.Seq

	s, err = c.Session(ctx)
	require.NoError(t, err)
	require.Equal(t, engine.StateOpen, s.State)
	require.GreaterOrEqual(t, s.Seq, seq)
	deadline := time.Now().Add(15 * time.Second)
	for f.PulseCount(hardware.Address{Channel: 1}) != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.Equal(t, 1, f.PulseCount(hardware.Address{Channel: 1}))

	d, err := c.Diagnostics(ctx)
	require.NoError(t, err)
	require.True(t, d.Ready)
	require.Nil(t, d.LockedUntil)
	require.NotEmpty(t, d.Boards)
}

func TestErrors(t *testing.T) {
	_, _, _, base := server(t)
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

	// No server at all: a transport error naming the request.
	_, err = kioskclient.New("http://127.0.0.1:1").Session(ctx)
	require.Error(t, err)
	require.False(t, errors.As(err, &se))
	require.Contains(t, err.Error(), "/kiosk/v1/session")
}
