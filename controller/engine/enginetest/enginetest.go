// Package enginetest starts a real engine (controller/engine) for the tests
// of the layers above it, such as the kiosk API and its client: a locker of
// two compartments (board 0, channels 0 and 1) on a recording fake driver
// (hardware/hardwaretest) with door and item sensors, a journal and an
// offline code cache in a temporary directory, a fresh Ed25519 key that
// signs the commands, and SyncQR to put a QR code into the offline cache the
// way the backend's code sync does.
package enginetest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"testing"
	"time"

	"kluis/controller/config"
	"kluis/controller/engine"
	"kluis/controller/journal"
	"kluis/controller/offline"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
	"kluis/hardware/hardwaretest"
)

// Options configure Start.
type Options struct {
	// DeviceID; default "enginetest".
	DeviceID string
	// Backend answers verifications and staff requests; nil: none, every
	// code is checked offline.
	Backend engine.Backend
	// Key is the backend's signing key (commands, QR tokens, answers);
	// default a fresh one.
	Key ed25519.PrivateKey
	// Logger; default discards.
	Logger *slog.Logger
}

// Rig is a running engine.
type Rig struct {
	Engine   *engine.Engine
	Driver   *hardwaretest.Fake
	Journal  *journal.Journal
	DeviceID string
	// Key signs commands (and QR tokens) for this device.
	Key    ed25519.PrivateKey
	Logger *slog.Logger
}

// Start runs an engine until t ends and returns once it is ready (or fails
// t).
func Start(t testing.TB, o Options) *Rig {
	t.Helper()
	if o.DeviceID == "" {
		o.DeviceID = "enginetest"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(`
device_id: `+o.DeviceID+`
site: test
kind: locker
mqtt: {url: tcp://127.0.0.1:1883}
hardware: {driver: simfile, simfile: /dev/null}
journal_dir: `+dir+`
compartments:
  - {number: 1, board: 0, channel: 0}
  - {number: 2, board: 0, channel: 1}
`), config.ParseOptions{AllowTestDrivers: true})
	if err != nil {
		t.Fatalf("enginetest: config: %v", err)
	}
	priv := o.Key
	if priv == nil {
		var err error
		if _, priv, err = ed25519.GenerateKey(rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	pub := priv.Public().(ed25519.PublicKey)
	f := hardwaretest.New(hardwaretest.Options{Caps: hardware.Capabilities{DoorSensor: true, ItemSensor: true}})
	j, recs, _, err := journal.Open(journal.Options{Dir: dir, DeviceID: o.DeviceID})
	if err != nil {
		t.Fatalf("enginetest: journal: %v", err)
	}
	cache, err := offline.Open(dir, o.DeviceID, pub)
	if err != nil {
		j.Close()
		t.Fatalf("enginetest: offline cache: %v", err)
	}
	e, err := engine.New(engine.Options{Config: cfg, Driver: f, Journal: j, Replay: recs, Cache: cache, CommandKey: pub,
		Logger: o.Logger, Backend: o.Backend})
	if err != nil {
		j.Close()
		t.Fatalf("enginetest: engine: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; j.Close() })
	testenv.EventuallyWithin(t, 10*time.Second, "the engine ready", e.Ready)
	return &Rig{Engine: e, Driver: f, Journal: j, DeviceID: o.DeviceID, Key: priv, Logger: o.Logger}
}

// SyncQR syncs a QR code for document doc behind channel ch (board 0) into
// the offline cache with a signed code-sync command, and returns the token
// a citizen would show.
func (r *Rig) SyncQR(t testing.TB, doc string, ch int) string {
	t.Helper()
	id := make([]byte, pickupcode.CodeIDSize)
	_, _ = rand.Read(id)
	cid := base64.RawURLEncoding.EncodeToString(id)
	now := time.Now()
	tok, err := pickupcode.SignToken(r.Key, pickupcode.Claims{CodeID: cid, DeviceID: r.DeviceID, Expires: now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatalf("enginetest: sign token: %v", err)
	}
	cmd := wire.Command{ID: wire.NewID(now), Kind: wire.CmdCodeSync, Issued: now,
		Expires: now.Add(time.Minute), Codes: &wire.CodeSync{Version: now.UnixNano(), Entries: []wire.CodeEntry{
			{DocumentID: doc, Addr: wire.Address{Channel: ch}, Expires: now.Add(time.Hour), QRHash: pickupcode.QRHash(cid)}}}}
	if err := wire.SignCommand(r.Key, r.DeviceID, &cmd); err != nil {
		t.Fatalf("enginetest: sign command: %v", err)
	}
	if res := r.Engine.HandleCommand(context.Background(), cmd); res.Status != wire.StatusDone {
		t.Fatalf("enginetest: code sync: %s %s", res.Status, res.Detail)
	}
	return tok
}
