package verify

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// waitSampler samples pg_stat_activity for the bench database's client
// backends every interval during a phase (-pg-waits): what each backend
// is doing (its statement, its state) and what it waits on
// (wait_event_type and wait_event; none while it runs on a CPU). It
// connects to the admin database, not the bench's, so that its own
// backend is not one of those sampled nor in the PostgreSQL CPU figure.
type waitSampler struct {
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	samples int
	counts  map[string]int // backends seen in a state over all samples, by waitKey
	wal     walCounts      // the phase's: the end's less the start's
}

// walCounts are the server's WAL flushes (pg_stat_wal.wal_sync, every
// database's: the server is shared) and the bench database's commits
// (pg_stat_database.xact_commit).
type walCounts struct {
	syncs, commits, bytes int64
	took                  time.Duration // the sampler's time
}

func readWAL(ctx context.Context, conn *pgx.Conn, db string) (walCounts, error) {
	w := walCounts{took: time.Duration(time.Now().UnixNano())}
	err := conn.QueryRow(ctx, `SELECT wal_sync, wal_bytes::bigint, (SELECT xact_commit FROM pg_stat_database WHERE datname = $1) FROM pg_stat_wal`, db).
		Scan(&w.syncs, &w.bytes, &w.commits)
	return w, err
}

var spaces = regexp.MustCompile(`\s+`)

// waitKey names a backend's state in one sample: its statement's first
// words, its state and what it waits on.
func waitKey(state, wtype, wevent, query string) string {
	if state == "idle" {
		return "idle (between transactions)"
	}
	q := spaces.ReplaceAllString(strings.TrimSpace(query), " ")
	if len(q) > 48 {
		q = q[:48]
	}
	w := "CPU (no wait event)"
	if wtype != "" {
		w = wtype + ":" + wevent
	}
	return fmt.Sprintf("%-28s %-32s %s", state, w, q)
}

func startWaits(ctx context.Context, adminURL, db string, every time.Duration) (*waitSampler, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("verify: -pg-waits: %w", err)
	}
	w := &waitSampler{stop: make(chan struct{}), done: make(chan struct{}), counts: map[string]int{}}
	// Statistics reach pg_stat_wal and pg_stat_database when a backend
	// flushes them (at most once a second): clear the snapshot, read.
	if _, err := conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("verify: -pg-waits: %w", err)
	}
	wal0, err := readWAL(ctx, conn, db)
	if err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("verify: -pg-waits: %w", err)
	}
	go func() {
		defer close(w.done)
		defer conn.Close(context.Background())
		for {
			select {
			case <-w.stop:
				if wal1, err := readWAL(context.WithoutCancel(ctx), conn, db); err == nil {
					w.wal = walCounts{wal1.syncs - wal0.syncs, wal1.commits - wal0.commits, wal1.bytes - wal0.bytes, wal1.took - wal0.took}
				}
				return
			case <-ctx.Done():
				return
			default:
			}
			rows, err := conn.Query(ctx, `SELECT state, coalesce(wait_event_type, ''), coalesce(wait_event, ''), query
				FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' AND state IS NOT NULL`, db)
			if err != nil {
				return
			}
			var keys []string
			for rows.Next() {
				var st, wt, we, q string
				if rows.Scan(&st, &wt, &we, &q) == nil {
					keys = append(keys, waitKey(st, wt, we, q))
				}
			}
			rows.Close()
			w.mu.Lock()
			w.samples++
			for _, k := range keys {
				w.counts[k]++
			}
			w.mu.Unlock()
			time.Sleep(every)
		}
	}()
	return w, nil
}

// end stops the sampler and returns its samples, counts and WAL counts.
func (w *waitSampler) end() (int, map[string]int, walCounts) {
	close(w.stop)
	<-w.done
	return w.samples, w.counts, w.wal
}

// waitsNote says, for one kind of phase, how many of the bench
// database's backends were in each state on average (the busiest first).
func waitsNote(title string, samples int, counts map[string]int, wal walCounts) string {
	if samples == 0 {
		return ""
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return counts[b] - counts[a] })
	var b strings.Builder
	fmt.Fprintf(&b, "%s: in %.1f s, %d commits in the bench database, %d WAL flushes and %.0f KB of WAL by the server (pg_stat_wal, every database's), %.2f commits per flush; "+
		"pg_stat_activity, %d samples; backends in each state on average:", title, wal.took.Seconds(), wal.commits, wal.syncs, float64(wal.bytes)/1000,
		float64(wal.commits)/float64(max(wal.syncs, 1)), samples)
	for _, k := range keys {
		if avg := float64(counts[k]) / float64(samples); avg >= 0.005 {
			fmt.Fprintf(&b, "\n    %5.2f  %s", avg, k)
		}
	}
	return b.String()
}
