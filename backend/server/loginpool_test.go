package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/backend/server/servertest"
	"kluis/deploy/dev/testenv"
)

// A flood of logins from many addresses does not queue a staff member out
// of the database pool. Before, every login read and wrote its login
// limits and read its user before it reached the fair hashing slots, so
// the flood's logins were the pool's line: here they all guess one
// username, whose limits' lock the test holds (as a slow database, or a
// flood on one name, would), and every connection of the pool waited on
// it while the staff member's login waited for a connection. Now the
// logins not known to come from their usual source take a fair place
// among a share of the pool first (one per source, a bounded line, the
// excess refused at once), and a staff member logging in from an address
// they used before goes straight on, over the API and on the console.
func TestLoginFloodDoesNotTakeThePool(t *testing.T) {
	b := servertest.Start(t, server.Options{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		// A small pool (the flood's share: one connection).
		DatabaseMaxConns: 4,
	})
	ctx := context.Background()
	require.NoError(t, b.Call(ctx, http.MethodPost, "/api/v1/users",
		map[string]string{"username": "an.balie", "password": "password of an.balie", "role": "staff"}, nil))
	const office = "198.51.100.20"
	status, code, _ := apiLogin(t, b, office, "an.balie", "password of an.balie")
	require.Equal(t, http.StatusCreated, status, code)

	// The flood's username: its limits wait for this lock.
	conn, err := pgx.Connect(ctx, b.Options.DatabaseURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended('kluis login ' || 'spray', 0))`)
	require.NoError(t, err)
	unlocked := false
	unlock := func() {
		if !unlocked {
			unlocked = true
			_, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended('kluis login ' || 'spray', 0))`)
			require.NoError(t, err)
		}
	}
	defer unlock()

	// 64 at once, each login from an address of its own.
	fctx, cancel := context.WithCancel(ctx)
	var (
		wg     sync.WaitGroup
		seq    atomic.Int64
		busy   atomic.Int64
		mu     sync.Mutex
		counts = map[string]int{}
	)
	hc := &http.Client{Timeout: 2 * time.Minute}
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for fctx.Err() == nil {
				k := seq.Add(1)
				body, _ := json.Marshal(map[string]string{"username": "spray", "password": "Winter2026!"})
				req, _ := http.NewRequest(http.MethodPost, b.URL("/api/v1/sessions"), bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", k>>16&255, k>>8&255, k&255))
				res, err := hc.Do(req)
				if err != nil {
					return
				}
				var e struct {
					Error struct{ Code string } `json:"error"`
				}
				_ = json.NewDecoder(res.Body).Decode(&e)
				res.Body.Close()
				if e.Error.Code == "login_busy" {
					busy.Add(1)
				}
				mu.Lock()
				counts[fmt.Sprintf("%d %s", res.StatusCode, e.Error.Code)]++
				mu.Unlock()
			}
		}()
	}
	stop := func() { cancel(); unlock(); wg.Wait() }
	defer stop()
	// waiting is how many of the backend's connections wait on the lock.
	waiting := func() int {
		var n int
		require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n))
		return n
	}
	testenv.Eventually(t, "the flood's logins wait on the lock", func() bool { return waiting() > 0 && seq.Load() >= 64 })

	type answer struct {
		status int
		code   string
	}
	got := make(chan answer, 1)
	go func() {
		status, code, _ := apiLogin(t, b, office, "an.balie", "password of an.balie")
		got <- answer{status, code}
	}()
	var a answer
	testenv.Eventually(t, "the staff member's login is answered while the flood's waits on its lock", func() bool {
		select {
		case a = <-got:
			return true
		default:
			return false
		}
	})
	require.Equal(t, http.StatusCreated, a.status, "a known address during the flood: %s", a.code)
	testenv.Eventually(t, "the flood's excess is refused at once", func() bool { return busy.Load() > 0 })
	require.Equal(t, 1, waiting(), "the flood holds its share of the pool (one connection), no more")
	status, _, _ = consoleLogin(t, b, office, "an.balie", "password of an.balie", "nl")
	require.Equal(t, http.StatusSeeOther, status, "on the console during the flood")

	stop()
	mu.Lock()
	t.Logf("flood: %v", counts)
	mu.Unlock()
	for k, n := range counts {
		require.Less(t, k, "500", "the flood's logins were answered: %d × %s", n, k)
	}
	status, code, _ = apiLogin(t, b, "192.0.2.44", "an.balie", "password of an.balie")
	require.Equal(t, http.StatusCreated, status, "from a new address after the flood: %s", code)
}
