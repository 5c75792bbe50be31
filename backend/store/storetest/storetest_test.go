package storetest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/store/storetest"
)

func TestNewIsMigratedAndPrivate(t *testing.T) {
	a, b := storetest.New(t), storetest.New(t)
	ctx := context.Background()
	_, err := a.Pool().Exec(ctx, "INSERT INTO sites (id, name, created_at) VALUES ('x', 'X', now())")
	require.NoError(t, err)
	var n int
	require.NoError(t, b.Pool().QueryRow(ctx, "SELECT count(*) FROM sites").Scan(&n))
	require.Equal(t, 0, n)
}

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := storetest.NewClock(t0)
	require.Equal(t, t0, c.Now())
	c.Add(time.Hour)
	require.Equal(t, t0.Add(time.Hour), c.Now())
	c.Set(t0)
	require.Equal(t, t0, c.Now())
}
