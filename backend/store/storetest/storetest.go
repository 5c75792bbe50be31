// Package storetest gives tests of other packages a private, migrated
// PostgreSQL database wrapped in a *store.Store.
package storetest

import (
	"context"
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
	url := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := store.Open(ctx, url, opts)
	if err != nil {
		t.Fatalf("storetest: open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
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
