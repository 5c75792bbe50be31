package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"kluis/backend/pgtest"
	"kluis/backend/store"
)

func openPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

func TestMigrateConcurrentReplicasApplyOnce(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	const replicas = 6
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	for i := 0; i < replicas; i++ {
		pool := openPool(t, url)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = store.Migrate(ctx, pool)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "replica %d", i)
	}
	ms, err := store.Migrations()
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	pool := openPool(t, url)
	got, err := store.AppliedVersions(ctx, pool)
	require.NoError(t, err)
	want := make([]int, len(ms))
	for i, m := range ms {
		want[i] = m.Version
	}
	require.Equal(t, want, got)
	// A second run is a no-op.
	require.NoError(t, store.Migrate(ctx, pool))
	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n))
	require.Equal(t, len(ms), n)
}

func TestMigrateFailingMigrationRollsBackAndStops(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	pool := openPool(t, url)
	fsys := fstest.MapFS{
		"0001_a.sql": {Data: []byte("CREATE TABLE a (x int);")},
		"0002_b.sql": {Data: []byte("CREATE TABLE b (x int); SELECT no_such_function();")},
		"0003_c.sql": {Data: []byte("CREATE TABLE c (x int);")},
	}
	err := store.MigrateFS(ctx, pool, fsys)
	require.Error(t, err)
	require.Contains(t, err.Error(), "0002_b.sql")
	got, err := store.AppliedVersions(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, []int{1}, got)
	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('b','c')").Scan(&n))
	require.Equal(t, 0, n, "failed migration must leave nothing behind")
	// The lock was released: fixing the file lets a later run finish.
	fsys["0002_b.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE b (x int);")}
	require.NoError(t, store.MigrateFS(ctx, pool, fsys))
	got, err = store.AppliedVersions(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, []int{1, 2, 3}, got)
}

func TestMigrateRefusesBadFileNames(t *testing.T) {
	pool := openPool(t, pgtest.NewDatabase(t))
	for name, fsys := range map[string]fstest.MapFS{
		"bad name":  {"1_a.sql": {Data: []byte("SELECT 1")}},
		"duplicate": {"0001_a.sql": {Data: []byte("SELECT 1")}, "0001_b.sql": {Data: []byte("SELECT 1")}},
	} {
		err := store.MigrateFS(context.Background(), pool, fsys)
		require.True(t, errors.Is(err, store.ErrInvalid), "%s: %v", name, err)
	}
}

func TestOpenBadURL(t *testing.T) {
	_, err := store.Open(context.Background(), "postgres://%zz", store.Options{})
	require.Error(t, err)
}
