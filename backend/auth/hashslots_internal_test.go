package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/store/storetest"
)

// A login flood (every new username passes the login limits) must not run
// argon2id without bound: each check holds Params.MemoryKiB (19 MiB by
// default), so 150 concurrent logins for unknown users took a backend
// from 80 MB to 2.3 GB. Checks beyond MaxConcurrentHashes wait for a slot,
// holding no database connection, and give up with their context.
func TestPasswordChecksWaitForAHashingSlot(t *testing.T) {
	st := storetest.New(t)
	s, err := New(Options{Pool: st.Pool(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Params: Params{Time: 1, MemoryKiB: 1024, Threads: 1}, MaxConcurrentHashes: 2})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = s.CreateUser(ctx, "an", "password-of-an", RoleStaff)
	require.NoError(t, err)
	require.Equal(t, 2, cap(s.slots))

	// Both slots taken (two checks under way).
	s.slots <- struct{}{}
	s.slots <- struct{}{}
	type result struct {
		who string
		err error
	}
	done := make(chan result, 40)
	for i := 0; i < 20; i++ {
		go func(i int) {
			user, pw := fmt.Sprintf("spray%d", i), "Winter2026!"
			if i%2 == 0 {
				user, pw = "an", "password-of-an"
			}
			_, err := s.CheckPassword(ctx, user, pw)
			done <- result{user, err}
		}(i)
	}
	// A check that cannot get a slot in time gives up without checking:
	// not a success and not a wrong password either.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = s.CheckPassword(short, "an", "password-of-an")
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotErrorIs(t, err, ErrInvalidCredentials)
	_, err = s.hashPassword(short, "another-password")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	select {
	case r := <-done:
		t.Fatalf("a password check ran while every slot was taken: %s: %v", r.who, r.err)
	default:
	}
	// The database pool is free while they wait: other work goes on.
	_, err = s.UserByName(ctx, "an")
	require.NoError(t, err)

	// One slot freed: they all go through it, each with its own answer.
	<-s.slots
	ok, wrong := 0, 0
	for i := 0; i < 20; i++ {
		select {
		case r := <-done:
			switch {
			case r.err == nil && r.who == "an":
				ok++
			case errors.Is(r.err, ErrInvalidCredentials) && r.who != "an":
				wrong++
			default:
				t.Fatalf("%s: %v", r.who, r.err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of 20 checks finished", ok+wrong)
		}
	}
	require.Equal(t, 10, ok)
	require.Equal(t, 10, wrong)
	require.Len(t, s.slots, 1, "every check gave its slot back")
}
