package pgtest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestNewDatabaseIsEmptyAndPrivate(t *testing.T) {
	a, b := NewDatabase(t), NewDatabase(t)
	require.NotEqual(t, a, b)
	ctx := context.Background()
	ca, err := pgx.Connect(ctx, a)
	require.NoError(t, err)
	defer ca.Close(ctx)
	_, err = ca.Exec(ctx, "CREATE TABLE only_in_a (x int)")
	require.NoError(t, err)
	cb, err := pgx.Connect(ctx, b)
	require.NoError(t, err)
	defer cb.Close(ctx)
	var n int
	require.NoError(t, cb.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'only_in_a'").Scan(&n))
	require.Equal(t, 0, n)
}

func TestNewDatabaseFromCopiesATemplateBuiltOnce(t *testing.T) {
	ctx := context.Background()
	key := "t" + randomHex() // a template of this test alone
	dropTemplateAtEnd(t, key)
	builds := 0
	build := func(ctx context.Context, url string) error {
		builds++
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "CREATE TABLE from_template (x int); INSERT INTO from_template VALUES (7)")
		return err
	}
	a := NewDatabaseFrom(t, key, build)
	b := NewDatabaseFrom(t, key, build)
	require.Equal(t, 1, builds)
	require.NotEqual(t, a, b)
	for _, u := range []string{a, b} {
		c, err := pgx.Connect(ctx, u)
		require.NoError(t, err)
		var x int
		require.NoError(t, c.QueryRow(ctx, "SELECT x FROM from_template").Scan(&x))
		require.Equal(t, 7, x)
		_, err = c.Exec(ctx, "INSERT INTO from_template VALUES (8)") // private to this copy
		require.NoError(t, err)
		c.Close(ctx)
	}

	// A build that fails leaves no template: the next caller builds it.
	bad := "t" + randomHex()
	ok := false
	ft := &fakeTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		NewDatabaseFrom(ft, bad, func(context.Context, string) error { return errors.New("broken") })
	}()
	require.True(t, ft.failed)
	dropTemplateAtEnd(t, bad)
	NewDatabaseFrom(t, bad, func(ctx context.Context, url string) error { ok = true; return nil })
	require.True(t, ok)
}

// dropTemplateAtEnd drops the template of key when t ends (after the
// copies made from it, whose cleanups run first).
func dropTemplateAtEnd(t *testing.T, key string) {
	t.Cleanup(func() {
		ctx := context.Background()
		c, err := pgx.Connect(ctx, AdminURL())
		require.NoError(t, err)
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "DROP DATABASE IF EXISTS kluis_tmpl_"+key)
		require.NoError(t, err)
	})
}

// fakeTB records a Fatalf and stops the caller as t.Fatalf would.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	panic(fmt.Sprintf(format, args...))
}
