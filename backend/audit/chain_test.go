package audit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/store/storetest"
	"kluis/deploy/dev/testenv"
)

func appendOne(t *testing.T, pool *pgxpool.Pool, subject string) audit.Record {
	t.Helper()
	var rec audit.Record
	require.NoError(t, pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		var err error
		rec, err = audit.Append(context.Background(), tx, audit.Entry{Actor: "device:d1", Action: "code.used", Subject: subject,
			Details: map[string]any{"reason": "ok"}})
		return err
	}))
	return rec
}

func count(t *testing.T, pool *pgxpool.Pool, table string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n))
	return n
}

// Append only queues; Chain gives the records their places, in the order
// they were queued, with the hashes Verify checks.
func TestAppendQueuesAndChainLinks(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	var queued []audit.Record
	for i := 0; i < 3; i++ {
		queued = append(queued, appendOne(t, s.Pool(), fmt.Sprintf("document:%d", i)))
	}
	require.Zero(t, queued[0].Seq, "not chained yet")
	require.Less(t, queued[0].Pending, queued[1].Pending)
	require.Equal(t, 0, count(t, s.Pool(), "audit_log"))
	require.Equal(t, 3, count(t, s.Pool(), "audit_pending"))

	n, err := audit.Chain(ctx, s.Pool())
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Equal(t, 0, count(t, s.Pool(), "audit_pending"))
	var recs []audit.Record
	require.NoError(t, pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
		var err error
		recs, err = audit.List(ctx, tx, audit.ListOptions{}) // in a transaction: reads only
		return err
	}))
	require.Len(t, recs, 3)
	for i, r := range recs {
		require.Equal(t, int64(i+1), r.Seq)
		require.Equal(t, queued[i].Subject, r.Subject)
		require.Equal(t, queued[i].At, r.At)
		require.Equal(t, audit.HashRecord(r.PrevHash, r.Seq, r.At, r.Actor, r.Action, r.Subject, r.Details), r.Hash)
	}
	n, err = audit.Chain(ctx, s.Pool())
	require.NoError(t, err)
	require.Zero(t, n, "nothing twice")
}

// Nobody but the chainer takes records out of audit_pending, and nobody
// changes them. The guard refuses the statement as a whole (it checks once
// per statement), also one that would match no row, one inside a
// writable CTE, and an UPDATE even in the chainer's transaction.
func TestPendingRecordsAreGuarded(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	appendOne(t, s.Pool(), "document:1")
	for _, sql := range []string{
		"UPDATE audit_pending SET actor = 'user:mallory'",
		"DELETE FROM audit_pending",
		"TRUNCATE audit_pending",
		"DELETE FROM audit_pending WHERE false",
		"WITH d AS (DELETE FROM audit_pending RETURNING id) SELECT count(*) FROM d",
		"SELECT set_config('kluis.audit_chainer', 'on', true); UPDATE audit_pending SET actor = 'user:mallory'",
	} {
		_, err := s.Pool().Exec(ctx, sql)
		require.ErrorContains(t, err, "only the audit chainer", sql)
	}
	require.Equal(t, 1, count(t, s.Pool(), "audit_pending"))
}

// A business transaction does not wait for the chain: an append commits
// while another session holds the chain's lock.
func TestAppendDoesNotWaitForTheChainLock(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	holder, err := s.Pool().Begin(ctx)
	require.NoError(t, err)
	defer holder.Rollback(ctx) //nolint:errcheck
	_, err = holder.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", audit.LockKey)
	require.NoError(t, err)

	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, pgx.BeginFunc(actx, s.Pool(), func(tx pgx.Tx) error {
		_, err := audit.Append(actx, tx, audit.Entry{Actor: "system", Action: "x"})
		return err
	}), "the append committed while the chain was locked")
	require.Equal(t, 1, count(t, s.Pool(), "audit_pending"))
	require.NoError(t, holder.Rollback(ctx))
	n, err := audit.Chain(ctx, s.Pool())
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

// A transaction that commits after later ones is chained after them, and
// a rolled-back one leaves no gap: the chain stays dense.
func TestLateCommitIsChainedLater(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	late, err := s.Pool().Begin(ctx)
	require.NoError(t, err)
	_, err = audit.Append(ctx, late, audit.Entry{Actor: "system", Action: "late"})
	require.NoError(t, err)
	gone, err := s.Pool().Begin(ctx)
	require.NoError(t, err)
	_, err = audit.Append(ctx, gone, audit.Entry{Actor: "system", Action: "rolled back"})
	require.NoError(t, err)
	require.NoError(t, gone.Rollback(ctx))
	appendOne(t, s.Pool(), "document:early")

	n, err := audit.Chain(ctx, s.Pool())
	require.NoError(t, err)
	require.Equal(t, 1, n, "only the committed record")
	require.NoError(t, late.Commit(ctx))
	rep, err := audit.Verify(ctx, s.Pool()) // chains first
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.Reason)
	require.Equal(t, 2, rep.Records)
	require.Zero(t, rep.Pending)
	recs, err := audit.List(ctx, s.Pool(), audit.ListOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"code.used", "late"}, []string{recs[0].Action, recs[1].Action})
}

// Many writers and several chainers at once (replicas, readers): every
// record is chained exactly once, in one intact chain.
func TestConcurrentWritersAndChainers(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	const writers, each = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers+3)
	stop := make(chan struct{})
	var cwg sync.WaitGroup
	for c := 0; c < 3; c++ {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := audit.Chain(ctx, s.Pool()); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
					_, err := audit.Append(ctx, tx, audit.Entry{Actor: "device:d1", Action: "door.opened",
						Subject: fmt.Sprintf("compartment:%d", w*each+i)})
					return err
				}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	cwg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	rep, err := audit.Verify(ctx, s.Pool())
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.Reason)
	require.Equal(t, writers*each, rep.Records)
	var distinct int
	require.NoError(t, s.Pool().QueryRow(ctx, "SELECT count(DISTINCT subject) FROM audit_log").Scan(&distinct))
	require.Equal(t, writers*each, distinct, "each record once")
}

// The chainer chains in the background, reports what waits, and leaves
// nothing pending when it stops.
func TestChainerRuns(t *testing.T) {
	s := storetest.New(t)
	reg := prometheus.NewRegistry()
	c, err := audit.NewChainer(audit.ChainerOptions{DB: s.Pool(), Every: 10 * time.Millisecond, Registerer: reg})
	require.NoError(t, err)
	_, err = audit.NewChainer(audit.ChainerOptions{DB: s.Pool()})
	require.Error(t, err, "a registerer is required")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	appendOne(t, s.Pool(), "document:1")
	testenv.EventuallyWithin(t, 10*time.Second, "the record chained", func() bool { return count(t, s.Pool(), "audit_log") >= 1 })
	require.Equal(t, 1, count(t, s.Pool(), "audit_log"), "chained without being asked")
	appendOne(t, s.Pool(), "document:2")
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, 2, count(t, s.Pool(), "audit_log"), "the last pass at the stop")

	// Stopped: a record waits, and Verify reports it.
	appendOne(t, s.Pool(), "document:3")
	tx, err := s.Pool().Begin(context.Background())
	require.NoError(t, err)
	rep, err := audit.Verify(context.Background(), tx) // in a transaction: no chaining
	require.NoError(t, err)
	require.Equal(t, 2, rep.Records)
	require.Equal(t, 1, rep.Pending)
	require.False(t, rep.OldestPending.IsZero())
	require.Contains(t, rep.String(), "1 more waiting to be chained")
	require.NoError(t, tx.Rollback(context.Background()))

	c.Pass(context.Background())
	require.Equal(t, 3, count(t, s.Pool(), "audit_log"))
	require.Equal(t, 3.0, gauge(t, reg, "kluis_audit_chained_total"))
	require.Equal(t, 0.0, gauge(t, reg, "kluis_audit_pending_records"))
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// A backlog larger than one chain transaction (audit.DefaultBatch) is
// chained in several, oldest first: every record once, in the order it
// was queued, with gaps in the pending numbers (a rolled-back
// transaction's) and the records chained before left behind as dead rows.
func TestChainTakesABacklogInBatches(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	queue := func(from, n int, commit bool) {
		t.Helper()
		entries := make([]audit.Entry, n)
		for i := range entries {
			entries[i] = audit.Entry{Actor: "device:d1", Action: "code.used", Subject: fmt.Sprintf("document:%d", from+i),
				Details: map[string]any{"reason": "ok"}}
		}
		tx, err := s.Pool().Begin(ctx)
		require.NoError(t, err)
		b := &pgx.Batch{}
		require.NoError(t, audit.QueueAppend(b, entries))
		require.NoError(t, tx.SendBatch(ctx, b).Close())
		if commit {
			require.NoError(t, tx.Commit(ctx))
		} else {
			require.NoError(t, tx.Rollback(ctx))
		}
	}
	queue(0, 10, true)
	n, err := audit.Chain(ctx, s.Pool())
	require.NoError(t, err)
	require.Equal(t, 10, n)
	queue(-100, 100, false) // numbers taken, never committed: a gap
	queue(10, audit.DefaultBatch-1, true)
	queue(-100, 7, false)
	queue(audit.DefaultBatch+9, audit.DefaultBatch+2, true)
	want := 2*audit.DefaultBatch + 11

	n, err = audit.Chain(ctx, s.Pool())
	require.NoError(t, err)
	require.Equal(t, want-10, n)
	require.Equal(t, 0, count(t, s.Pool(), "audit_pending"))
	rows, err := s.Pool().Query(ctx, "SELECT seq, subject FROM audit_log ORDER BY seq")
	require.NoError(t, err)
	i := 0
	for rows.Next() {
		var seq int64
		var subject string
		require.NoError(t, rows.Scan(&seq, &subject))
		require.Equal(t, int64(i+1), seq)
		require.Equal(t, fmt.Sprintf("document:%d", i), subject)
		i++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, want, i)
	rep, err := audit.Verify(ctx, s.Pool())
	require.NoError(t, err)
	require.Nil(t, rep.FirstBad, rep.Reason)
	require.Equal(t, want, rep.Records)
}

// statements counts the statements a pool's connections start.
type statements struct {
	mu  sync.Mutex
	sql []string
}

func (s *statements) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	s.mu.Lock()
	s.sql = append(s.sql, d.SQL)
	s.mu.Unlock()
	return ctx
}

func (s *statements) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (s *statements) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.sql
	s.sql = nil
	return out
}

// A pass that finds records makes seven statements: its look (which also
// reads what it chains up to), then the chain transaction's BEGIN, lock,
// head, read, move and COMMIT; one that finds none makes its look alone.
// Each statement is a round trip and PostgreSQL's work per statement,
// paid once a pass (docs/performance.md, "Sixteenth pass"). The chain is
// whole afterwards.
func TestChainerPassStatements(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(s.Pool().Config().ConnString())
	require.NoError(t, err)
	tr := &statements{}
	cfg.ConnConfig.Tracer = tr
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	c, err := audit.NewChainer(audit.ChainerOptions{DB: pool, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)

	c.Pass(ctx)
	require.Len(t, tr.take(), 1, "nothing pending: the look alone")
	for i := range 3 {
		appendOne(t, s.Pool(), fmt.Sprintf("document:%d", i))
	}
	c.Pass(ctx)
	sql := tr.take()
	require.Len(t, sql, 7, "the pass's statements: %q", sql)
	require.Equal(t, 3, count(t, s.Pool(), "audit_log"))
	require.Zero(t, count(t, s.Pool(), "audit_pending"))
	rep, err := audit.Verify(ctx, s.Pool())
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.String())
	require.Equal(t, 3, rep.Records)
}
