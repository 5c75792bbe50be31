package bench

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kluis/backend/auth"
	"kluis/backend/codes"
	"kluis/backend/server"
)

func TestStartBackend(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	keys, err := codes.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	// A backend that cannot be built is refused with the reason.
	if _, _, err := StartBackend(ctx, server.Options{Keys: keys}); err == nil || !strings.Contains(err.Error(), "database") {
		t.Fatalf("no database URL: err %v", err)
	}
	url, drop, err := TempDatabase(ctx, DefaultAdminURL(), "startbackend")
	if err != nil {
		t.Fatal(err)
	}
	defer drop()
	srv, stop, err := StartBackend(ctx, server.Options{DatabaseURL: url, Keys: keys,
		HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", SlipDir: filepath.Join(t.TempDir(), "slips"),
		AdminPassword: "start-backend-admin", Console: io.Discard, Logger: slog.New(slog.DiscardHandler),
		PasswordParams: auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	// Ready means serving.
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get("http://" + srv.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %s", res.Status)
	}
	if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("stop: %v", err)
	}
	if _, err := c.Get("http://" + srv.HTTPAddr() + "/readyz"); err == nil {
		t.Fatal("still serving after stop")
	}
}
