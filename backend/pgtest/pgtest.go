// Package pgtest gives each test its own throw-away PostgreSQL database on
// the real server, so that tests in parallel packages never see each other's
// rows.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// AdminURL is the server the test databases are created on:
// KLUIS_TEST_DATABASE_URL, else a trust-auth server on 127.0.0.1:5432.
func AdminURL() string {
	if u := os.Getenv("KLUIS_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// NewDatabase creates an empty database for t, drops it when t ends, and
// returns its URL. It fails t when the server cannot be reached.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return newDatabase(t, "")
}

// NewDatabaseFrom creates a database for t as a copy of the template
// database kluis_tmpl_<key>, drops it when t ends, and returns its URL. The
// first caller on the server (of any test process) makes the template: an
// empty database that build fills (given its URL; build must close every
// connection it opened before it returns), renamed to its name only once
// build succeeded, so a template that exists is complete. key must say
// everything build puts in (a hash of it): templates are kept between runs
// and shared by every process using the server.
func NewDatabaseFrom(t testing.TB, key string, build func(ctx context.Context, url string) error) string {
	t.Helper()
	if !validKey.MatchString(key) {
		t.Fatalf("pgtest: template key %q: want 1 to 32 of [a-z0-9_]", key)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tmpl := "kluis_tmpl_" + key
	if err := ensureTemplate(ctx, tmpl, build); err != nil {
		t.Fatalf("pgtest: template %s: %v", tmpl, err)
	}
	return newDatabase(t, tmpl)
}

var validKey = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

// ensureTemplate makes the database tmpl with build unless it exists,
// under an advisory lock (on the admin database) so that processes
// starting together build it once.
func ensureTemplate(ctx context.Context, tmpl string, build func(ctx context.Context, url string) error) error {
	admin := AdminURL()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redact(admin), err)
	}
	defer conn.Close(context.Background())
	exists := func() (bool, error) {
		var n int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", tmpl).Scan(&n)
		return n > 0, err
	}
	if ok, err := exists(); err != nil || ok {
		return err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext($1))", tmpl); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtext($1))", tmpl) }()
	if ok, err := exists(); err != nil || ok {
		return err
	}
	tmp := tmpl + "_b" + randomHex()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+tmp); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	drop := func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+tmp+" WITH (FORCE)")
	}
	if err := build(ctx, databaseURL(admin, tmp)); err != nil {
		drop()
		return fmt.Errorf("build: %w", err)
	}
	// The server ends a closed connection's backend a moment after the
	// client let go: a rename meanwhile is refused.
	for i := 0; ; i++ {
		_, err = conn.Exec(ctx, "ALTER DATABASE "+tmp+" RENAME TO "+tmpl)
		if err == nil {
			return nil
		}
		if i == 50 || ctx.Err() != nil {
			drop()
			return fmt.Errorf("rename: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func randomHex() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func databaseURL(admin, name string) string {
	u, err := url.Parse(admin)
	if err != nil {
		return ""
	}
	u.Path = "/" + name
	return u.String()
}

// newDatabase creates a database for t (a copy of tmpl, or an empty one when
// tmpl is ""), drops it when t ends, and returns its URL.
func newDatabase(t testing.TB, tmpl string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := AdminURL()
	if _, err := url.Parse(admin); err != nil {
		t.Fatalf("pgtest: parse %s: %v", redact(admin), err)
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v (is PostgreSQL running? make test starts it)", redact(admin), err)
	}
	defer conn.Close(context.Background())
	name := "kluis_test_" + randomHex()
	create := "CREATE DATABASE " + name
	if tmpl != "" {
		create += " TEMPLATE " + tmpl
	}
	if _, err := conn.Exec(ctx, create); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
		}
	})
	return databaseURL(admin, name)
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
