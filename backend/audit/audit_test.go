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
)

var t0 = time.Date(2026, 3, 1, 9, 30, 0, 123456789, time.UTC)

func appendN(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := audit.Append(ctx, tx, audit.Entry{
				At: t0.Add(time.Duration(i) * time.Minute), Actor: "user:alice", Action: "document.load",
				Subject: fmt.Sprintf("document:%d", i), Details: map[string]any{"n": i, "b": "x"},
			})
			return err
		})
		require.NoError(t, err)
	}
	_, err := audit.Chain(ctx, pool)
	require.NoError(t, err)
}

// tamper runs sql with triggers disabled, as a superuser could.
func tamper(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sql, args...)
		return err
	}))
}

func TestAppendAndVerifyIntact(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	rep, err := audit.Verify(ctx, s.Pool())
	require.NoError(t, err)
	require.True(t, rep.OK())
	require.Equal(t, 0, rep.Records)

	appendN(t, s.Pool(), 5)
	rep, err = audit.Verify(ctx, s.Pool())
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.Reason)
	require.Equal(t, 5, rep.Records)
	require.Equal(t, int64(5), rep.HeadSeq)
	require.Equal(t, "audit chain intact: 5 records", rep.String())

	recs, err := audit.List(ctx, s.Pool(), audit.ListOptions{AfterSeq: 1, Limit: 2})
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.Equal(t, int64(2), recs[0].Seq)
	require.Equal(t, t0.Add(time.Minute).Truncate(time.Microsecond), recs[0].At)
	require.JSONEq(t, `{"b":"x","n":1}`, string(recs[0].Details))
	require.Equal(t, recs[0].Hash, recs[1].PrevHash)
	recs, err = audit.List(ctx, s.Pool(), audit.ListOptions{Subject: "document:3"})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, int64(4), recs[0].Seq)
}

func TestTriggerRefusesChanges(t *testing.T) {
	s := storetest.New(t)
	appendN(t, s.Pool(), 2)
	ctx := context.Background()
	for _, sql := range []string{
		"UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 1",
		"DELETE FROM audit_log WHERE seq = 2",
		"TRUNCATE audit_log",
	} {
		_, err := s.Pool().Exec(ctx, sql)
		require.ErrorContains(t, err, "append-only", sql)
	}
	rep, err := audit.Verify(ctx, s.Pool())
	require.NoError(t, err)
	require.True(t, rep.OK())
	require.Equal(t, 2, rep.Records)
}

func TestVerifyNamesFirstAlteredRecord(t *testing.T) {
	cases := []struct {
		name   string
		sql    string
		bad    int64
		reason string
	}{
		{"actor changed", "UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 4", 4, "content does not match"},
		{"details changed", `UPDATE audit_log SET details = '{"b":"y","n":3}' WHERE seq = 4`, 4, "content does not match"},
		{"time changed", "UPDATE audit_log SET at = at + interval '1 second' WHERE seq = 3", 3, "content does not match"},
		{"deleted", "DELETE FROM audit_log WHERE seq = 5", 5, "missing"},
		{"first deleted", "DELETE FROM audit_log WHERE seq = 1", 1, "missing"},
		{"rehashed", "", 4, "links to a different hash"},
		{"prev link changed", "UPDATE audit_log SET prev_hash = sha256('x') WHERE seq = 6", 6, "previous-hash link"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := storetest.New(t)
			appendN(t, s.Pool(), 8)
			if c.sql != "" {
				tamper(t, s.Pool(), c.sql)
			} else {
				// A careful forger alters record 4 and recomputes its hash.
				ctx := context.Background()
				recs, err := audit.List(ctx, s.Pool(), audit.ListOptions{AfterSeq: 3, Limit: 1})
				require.NoError(t, err)
				r := recs[0]
				h := audit.HashRecord(r.PrevHash, r.Seq, r.At, "user:mallory", r.Action, r.Subject, r.Details)
				tamper(t, s.Pool(), "UPDATE audit_log SET actor = 'user:mallory', hash = $1 WHERE seq = 4", h)
			}
			rep, err := audit.Verify(context.Background(), s.Pool())
			require.NoError(t, err)
			require.False(t, rep.OK())
			require.Equal(t, c.bad, *rep.FirstBad, rep.Reason)
			require.Contains(t, rep.Reason, c.reason)
			require.Contains(t, rep.Reason, fmt.Sprintf("record %d", c.bad))
			require.Contains(t, rep.String(), fmt.Sprintf("broken at record %d", c.bad))
		})
	}
}

func TestConcurrentAppendsKeepOneChain(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
				_, err := audit.Append(ctx, tx, audit.Entry{Actor: "device:d1", Action: "door.opened",
					Subject: fmt.Sprintf("compartment:%d", i)})
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// A rolled-back append leaves no gap.
	err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
		if _, err := audit.Append(ctx, tx, audit.Entry{Actor: "system", Action: "x"}); err != nil {
			return err
		}
		return fmt.Errorf("roll back")
	})
	require.Error(t, err)
	appendN(t, s.Pool(), 1)
	rep, err := audit.Verify(ctx, s.Pool())
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.Reason)
	require.Equal(t, n+1, rep.Records)
	require.Equal(t, int64(n+1), rep.HeadSeq)
}

func TestAppendRefusesBadEntries(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	for name, e := range map[string]audit.Entry{
		"no actor":  {Action: "x"},
		"no action": {Actor: "system"},
		"array":     {Actor: "system", Action: "x", Details: []int{1}},
		"unmarshal": {Actor: "system", Action: "x", Details: map[string]any{"f": func() {}}},
	} {
		err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
			_, err := audit.Append(ctx, tx, e)
			return err
		})
		require.ErrorIs(t, err, audit.ErrInvalid, name)
	}
}

// BenchmarkChain is the chainer's cost per record: each iteration queues
// a pass's worth of code attempts' records and chains them; a pass of 256
// is about what 50 ms of the verify bench's quiet 5,800 claims a second
// leave, one of 16 what a busy machine's 300 a second leave.
// Beside allocs/op it reports the CPU per record of this process (user +
// system, getrusage, around Chain alone) and of the PostgreSQL backend
// that ran it (one connection; /proc/<pid>/stat, 10 ms ticks): CPU
// figures a busy machine inflates less than times (docs/performance.md,
// "Fifteenth pass").
//
// The chainer=1 runs time a whole Chainer.Pass (its look, then the chain
// transaction), the others audit.Chain.
func BenchmarkChain(b *testing.B) {
	for _, n := range []int{16, 256} {
		b.Run(fmt.Sprintf("pass=%d", n), func(b *testing.B) { benchmarkChain(b, n, false) })
		b.Run(fmt.Sprintf("pass=%d/chainer=1", n), func(b *testing.B) { benchmarkChain(b, n, true) })
	}
}

func benchmarkChain(b *testing.B, perPass int, pass bool) {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(storetest.MigratedDatabase(b))
	require.NoError(b, err)
	cfg.MaxConns, cfg.MinConns = 1, 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(b, err)
	b.Cleanup(pool.Close)
	var pid int
	require.NoError(b, pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	type details struct {
		CodeID string `json:"code_id,omitempty"`
		Device string `json:"device"`
		Method string `json:"method"`
		Reason string `json:"reason"`
	}
	entries := make([]audit.Entry, perPass)
	at := time.Date(2026, 12, 7, 23, 0, 0, 0, time.UTC)
	for i := range entries {
		dev := fmt.Sprintf("bench-kiosk-%03d", i%8)
		entries[i] = audit.Entry{At: at.Add(time.Duration(i) * time.Microsecond), Actor: "device:" + dev, Action: "code.used",
			Subject: "document:0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c",
			Details: details{CodeID: "q83vEjRWeJq83vEjRWeJqw", Device: dev, Method: "qr", Reason: "ok"}}
	}
	chainer, err := audit.NewChainer(audit.ChainerOptions{DB: pool, Registerer: prometheus.NewRegistry()})
	require.NoError(b, err)
	var proc, pg time.Duration
	b.ReportAllocs()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		batch := &pgx.Batch{}
		require.NoError(b, audit.QueueAppend(batch, entries))
		require.NoError(b, pool.SendBatch(ctx, batch).Close())
		p0, g0 := storetest.ProcessCPU(b), storetest.BackendCPU(b, pid)
		b.StartTimer()
		n := perPass
		if pass {
			chainer.Pass(ctx)
		} else {
			n, err = audit.Chain(ctx, pool)
		}
		b.StopTimer()
		proc += storetest.ProcessCPU(b) - p0
		pg += storetest.BackendCPU(b, pid) - g0
		require.NoError(b, err)
		require.Equal(b, perPass, n)
		var left int
		require.NoError(b, pool.QueryRow(ctx, "SELECT count(*) FROM audit_pending").Scan(&left))
		require.Zero(b, left, "every record chained")
	}
	records := float64(b.N * perPass)
	b.ReportMetric(float64(proc.Microseconds())/records, "proc-µs/record")
	b.ReportMetric(float64(pg.Microseconds())/records, "pg-µs/record")
	rep, err := audit.Verify(ctx, pool)
	require.NoError(b, err)
	require.Nil(b, rep.FirstBad, rep.Reason)
}
