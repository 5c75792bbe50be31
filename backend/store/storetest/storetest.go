// Package storetest gives tests of other packages a private, migrated
// PostgreSQL database wrapped in a *store.Store.
package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"kluis/backend/pgtest"
	"kluis/backend/store"
)

// New returns a Store on a fresh private database with every embedded
// migration applied, closed and dropped when t ends. The clock is the real
// time; use NewWithOptions to inject one.
func New(t testing.TB) *store.Store {
	t.Helper()
	return NewWithOptions(t, store.Options{})
}

// NewWithOptions is New with explicit options (Logger defaults to a
// discarding logger).
func NewWithOptions(t testing.TB, opts store.Options) *store.Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	url := MigratedDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := store.Open(ctx, url, opts)
	if err != nil {
		t.Fatalf("storetest: open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// MigratedDatabase creates a private database for t with every embedded
// migration applied, dropped when t ends, and returns its URL. It is a copy
// of a template database that [store.Migrate] made on an empty database
// (pgtest.NewDatabaseFrom, keyed by a hash of the migrations): the same
// schema and rows as migrating a fresh database, without running the
// migrations again for every test. Tests of the migrations themselves use
// pgtest.NewDatabase.
func MigratedDatabase(t testing.TB) string {
	t.Helper()
	ms, err := store.Migrations()
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	h := sha256.New()
	for _, m := range ms {
		fmt.Fprintf(h, "%d\x00%s\x00%d\x00%s\x00", m.Version, m.Name, len(m.SQL), m.SQL)
	}
	key := "m" + hex.EncodeToString(h.Sum(nil))[:20]
	return pgtest.NewDatabaseFrom(t, key, func(ctx context.Context, url string) error {
		s, err := store.Open(ctx, url, store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxConns: 1})
		if err != nil {
			return err
		}
		s.Close()
		return nil
	})
}

// Clock is a settable fake clock for tests, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the current fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
