// Package servertest starts the real kluis-backend (backend/server)
// in-process for tests of it and of its clients (kluisd's daemon): a
// private, migrated PostgreSQL database (storetest.MigratedDatabase), fresh
// code keys, the REST API and the embedded MQTT broker on free loopback
// ports, argon2id at test cost, and a logged-in admin.
package servertest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"kluis/backend/api/apiclient"
	"kluis/backend/auth"
	"kluis/backend/codes"
	"kluis/backend/server"
	"kluis/backend/store/storetest"
	"kluis/controller/pickupcode"
	"kluis/deploy/dev/testenv"
)

// AdminPassword is the bootstrap admin's password unless Options set one.
const AdminPassword = "servertest admin password"

// Backend is a running backend.
type Backend struct {
	*server.Server
	// Options are those the server was started with (database URL, keys).
	Options server.Options
	// HTTP and Broker are the API's and the embedded broker's addresses.
	HTTP, Broker string
	// Token is an admin session token.
	Token string
	// Log holds what the server logged.
	Log *SyncBuffer

	stop func()
}

// Start starts a backend for t and stops it when t ends. Zero fields of o
// get test values: a new migrated database, fresh keys, loopback ports, a slip
// directory in t.TempDir, AdminPassword, cheap argon2id, a logger at warn
// level into Backend.Log.
func Start(t testing.TB, o server.Options) *Backend {
	t.Helper()
	if o.DatabaseURL == "" {
		o.DatabaseURL = storetest.MigratedDatabase(t)
	}
	if o.Keys.Signing == nil {
		k, err := codes.GenerateKeys()
		if err != nil {
			t.Fatalf("servertest: %v", err)
		}
		o.Keys = k
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.HTTPAddr, "127.0.0.1:0")
	def(&o.MQTTAddr, "127.0.0.1:0")
	def(&o.SlipDir, t.TempDir())
	def(&o.AdminUser, server.DefaultAdminUser)
	def(&o.AdminPassword, AdminPassword)
	if o.PasswordParams == (auth.Params{}) {
		o.PasswordParams = auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1}
	}
	if o.MQTTParams == (pickupcode.ArgonParams{}) {
		o.MQTTParams = pickupcode.ArgonParams{Time: 1, MemoryKiB: 1024, Threads: 1}
	}
	b := &Backend{Log: &SyncBuffer{}}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(b.Log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if o.Console == nil {
		o.Console = b.Log
	}
	srv, err := server.New(o)
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	b.Server, b.Options = srv, o
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var once sync.Once
	b.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("servertest: the backend stopped with %v\n%s", err, b.Log)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("servertest: the backend did not stop\n%s", b.Log)
			}
		})
	}
	t.Cleanup(b.Stop)
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("servertest: the backend did not start: %v\n%s", err, b.Log)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("servertest: the backend did not start in time\n%s", b.Log)
	}
	b.HTTP, b.Broker = srv.HTTPAddr(), srv.BrokerAddr()
	sess, err := apiclient.Login(context.Background(), &http.Client{Timeout: 30 * time.Second}, b.URL(""), o.AdminUser, o.AdminPassword)
	if err != nil {
		t.Fatalf("servertest: admin %v\n%s", err, b.Log)
	}
	b.Token = sess.Token
	return b
}

// Stop stops the backend now (it is also stopped when the test ends).
func (b *Backend) Stop() { b.stop() }

// URL is the API's URL of path.
func (b *Backend) URL(path string) string { return "http://" + b.HTTP + path }

// Call sends in as JSON to path with the admin token and decodes the 2xx
// answer into out (see apiclient.DoJSON; other answers are a
// *apiclient.StatusError).
func (b *Backend) Call(ctx context.Context, method, path string, in, out any) error {
	return apiclient.DoJSON(ctx, &http.Client{Timeout: 30 * time.Second}, method, b.URL(path), b.Token, in, out)
}

// Session is the API as the admin (Token), for apiclient's calls such as
// the audit pager.
func (b *Backend) Session() apiclient.Session {
	return apiclient.Session{Base: b.URL(""), Token: b.Token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// DevicePassword gives device a new MQTT password for the embedded broker
// and returns it.
func (b *Backend) DevicePassword(ctx context.Context, device string) (string, error) {
	var res struct {
		Password string `json:"password"`
	}
	if err := b.Call(ctx, http.MethodPost, "/api/v1/devices/"+device+"/mqtt-password", nil, &res); err != nil {
		return "", err
	}
	if res.Password == "" {
		return "", fmt.Errorf("servertest: no password for %s", device)
	}
	return res.Password, nil
}

// SyncBuffer is a bytes.Buffer safe for concurrent use.
type SyncBuffer = testenv.SyncBuffer
