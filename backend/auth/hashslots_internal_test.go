package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"kluis/backend/store/storetest"
	"kluis/deploy/dev/testenv"
)

// holdSlots takes every slot of g, as checks under way would, and
// returns a release per slot.
func holdSlots(t *testing.T, g *hashGate, n int) []func() {
	t.Helper()
	var out []func()
	for i := 0; i < n; i++ {
		rel, err := g.acquire(context.Background(), "", true)
		require.NoError(t, err)
		out = append(out, rel)
	}
	return out
}

// A login flood (every new username passes the login limits) must not run
// argon2id without bound: each check holds Params.MemoryKiB (19 MiB by
// default), so 150 concurrent logins for unknown users took a backend
// from 80 MB to 2.3 GB. Checks beyond MaxConcurrentHashes wait for a slot,
// holding no database connection, and give up with their context.
func TestPasswordChecksWaitForAHashingSlot(t *testing.T) {
	st := storetest.New(t)
	s, err := New(Options{Pool: st.Pool(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Params: Params{Time: 1, MemoryKiB: 1024, Threads: 1}, MaxConcurrentHashes: 2, MaxQueuedHashes: 20})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = s.CreateUser(ctx, "an", "password-of-an", RoleStaff)
	require.NoError(t, err)

	// Both slots taken (two checks under way).
	held := holdSlots(t, s.gate, 2)
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
			// Each from its own address (one place per address).
			_, err := s.CheckPassword(ctx, user, pw, LoginFrom{Source: fmt.Sprintf("192.0.2.%d", i+1)})
			done <- result{user, err}
		}(i)
	}
	testenv.Eventually(t, "20 checks wait", func() bool { _, n := s.gate.waiting(); return n == 20 })
	// A check that cannot get a slot in time gives up without checking:
	// not a success and not a wrong password either.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = s.CheckPassword(short, "an", "password-of-an", LoginFrom{Known: true, Source: "198.51.100.1"})
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotErrorIs(t, err, ErrInvalidCredentials)
	short, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = s.hashPassword(short, "another-password")
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	select {
	case r := <-done:
		t.Fatalf("a password check ran while every slot was taken: %s: %v", r.who, r.err)
	default:
	}
	first, other := s.gate.waiting()
	require.Equal(t, [2]int{0, 20}, [2]int{first, other}, "who gave up left the line")
	// The database pool is free while they wait: other work goes on.
	_, err = s.UserByName(ctx, "an")
	require.NoError(t, err)

	// One slot freed: they all go through it, each with its own answer.
	held[0]()
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
	held[1]()
	require.Equal(t, 2, s.gate.free, "every check gave its slot back")
	require.Empty(t, s.gate.held)
}

// The line is fair: one place per source (a second login from a source
// whose first waits is refused at once), a bounded line (one more is
// refused at once), and logins of known pairs and new passwords served
// before the others, in their own line.
func TestHashingSlotsAreSharedFairly(t *testing.T) {
	g := newHashGate(1, 2)
	held := holdSlots(t, g, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type got struct {
		name    string
		release func()
	}
	granted := make(chan got, 10)
	wait := func(name, key string, first bool) {
		go func() {
			rel, err := g.acquire(ctx, key, first)
			if err == nil {
				granted <- got{name, rel}
			}
		}()
	}
	flood := gateKey(LoginFrom{Source: "203.0.113.7"}, "x")
	wait("flood", flood, false)
	testenv.Eventually(t, "the flood's first login waits", func() bool { _, n := g.waiting(); return n == 1 })
	_, err := g.acquire(ctx, flood, false)
	require.ErrorIs(t, err, ErrLoginBusy, "a second login from the same source")
	_, err = g.acquire(ctx, gateKey(LoginFrom{Source: "203.0.113.7"}, "other.name"), false)
	require.ErrorIs(t, err, ErrLoginBusy, "whatever username it names")
	require.Equal(t, 2.0, testutil.ToFloat64(g.busy.WithLabelValues(busyHeld)), "each refusal counted")
	require.Zero(t, testutil.ToFloat64(g.busy.WithLabelValues(busyLine)))

	wait("newcomer", gateKey(LoginFrom{Source: "198.51.100.9"}, "tom"), false)
	testenv.Eventually(t, "two wait", func() bool { _, n := g.waiting(); return n == 2 })
	_, err = g.acquire(ctx, gateKey(LoginFrom{Source: "203.0.113.8"}, "y"), false)
	require.ErrorIs(t, err, ErrLoginBusy, "the line is full")
	require.Equal(t, 1.0, testutil.ToFloat64(g.busy.WithLabelValues(busyLine)), "counted as line_full")

	// Known pairs: their own line, one place per username and source, so
	// colleagues behind the flood's address are not refused by it.
	wait("an", gateKey(LoginFrom{Source: "203.0.113.7", Known: true}, "an"), true)
	wait("bo", gateKey(LoginFrom{Source: "203.0.113.7", Known: true}, "bo"), true)
	testenv.Eventually(t, "two known wait", func() bool { n, _ := g.waiting(); return n == 2 })
	_, err = g.acquire(ctx, gateKey(LoginFrom{Source: "203.0.113.7", Known: true}, "An"), true)
	require.ErrorIs(t, err, ErrLoginBusy, "one place per username and source")
	require.Equal(t, 3.0, testutil.ToFloat64(g.busy.WithLabelValues(busyHeld)))

	next := func() string {
		t.Helper()
		select {
		case g := <-granted:
			held = append(held, g.release)
			return g.name
		case <-time.After(30 * time.Second):
			t.Fatal("no slot was handed over")
			return ""
		}
	}
	order := []string{}
	for range 4 {
		held[len(held)-1]() // the holder finishes: the slot goes to the next
		order = append(order, next())
	}
	require.ElementsMatch(t, []string{"an", "bo"}, order[:2], "the known line first")
	require.Equal(t, []string{"flood", "newcomer"}, order[2:], "then the others in order of arrival")
	held[len(held)-1]()
	require.Equal(t, 1, g.free)
	require.Empty(t, g.held)
}
