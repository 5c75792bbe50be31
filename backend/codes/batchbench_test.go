package codes

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/store/storetest"
)

// BenchmarkClaimBatch is the database side of a batch of QR claims: each
// iteration claims one fresh code on each of four devices in one batch
// transaction (claimBatch, what the verify bench's 8 devices make: four
// claims a batch), on a pool of one connection. Beside allocs/op it
// reports the CPU per claim of this process (user + system, getrusage,
// around claimBatch alone: pgx and the decisions) and of the PostgreSQL
// backend that ran it (/proc/<pid>/stat, 10 ms ticks): CPU figures a busy
// machine inflates less than times (docs/performance.md, "Sixteenth
// pass"). The audit records are chained between iterations, untimed.
func BenchmarkClaimBatch(b *testing.B) {
	const perBatch = 4
	f := newFixture(b)
	ctx := context.Background()
	devs, docs, tokens := f.devicesWithCodes(perBatch)
	// 20,000 used codes beside them, and the statistics that say so, as
	// on a backend that has served a while (the plans are those of a
	// table of that size; on a fresh table of four rows they are not).
	_, err := f.pool.Exec(ctx, `INSERT INTO codes (id, document_id, document_kind, device_id, compartment_id,
		compartment_number, board, channel, pin_digest, needs_dob, offline_verifier, offline_params, expires_at, created_at, used_at)
		SELECT decode(lpad(to_hex(n), 32, '0'), 'hex'), c.document_id, c.document_kind, c.device_id, c.compartment_id,
			c.compartment_number, c.board, c.channel, sha256(('filler' || n)::bytea), false, c.offline_verifier, c.offline_params,
			c.expires_at, c.created_at, c.created_at
		FROM generate_series(1, 20000) n, (SELECT * FROM codes WHERE document_id = $1::uuid) c`, docs[0])
	require.NoError(b, err)
	_, err = f.pool.Exec(ctx, "ANALYZE codes; ANALYZE code_devices")
	require.NoError(b, err)
	// Compartments 2..N on every device, each for one more document with
	// its code: b.N fresh codes per device.
	for _, d := range devs {
		_, err = f.pool.Exec(ctx, `INSERT INTO compartments (device_id, number, board, channel, size, height_cm)
			SELECT $1, n, (n-1)/16, (n-1)%16, 'M', 30 FROM generate_series(2, $2::int) n`, d, b.N)
		require.NoError(b, err)
	}
	cfg, err := pgxpool.ParseConfig(f.pool.Config().ConnString())
	require.NoError(b, err)
	cfg.MaxConns, cfg.MinConns = 1, 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(b, err)
	b.Cleanup(pool.Close)
	svc, err := New(Options{Pool: pool, Keys: f.keys, Argon: testArgon, Clock: f.clock.Now, Registerer: prometheus.NewRegistry(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(b, err)
	var pid int
	require.NoError(b, pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))

	var proc, pg time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		if i%64 == 0 {
			_, err := audit.Chain(ctx, pool)
			require.NoError(b, err)
		}
		// A fresh code on every device (the first batch claims the
		// devices' first codes); at most 48 are open on a device.
		items := make([]*batchItem, 0, perBatch)
		for j, d := range devs {
			tok := tokens[j]
			if i > 0 {
				_, _, cr := f.issue("driving_licence", d, i+1)
				tok = cr.QRToken
			}
			items = append(items, f.item(d, tok))
		}
		p0, g0 := storetest.ProcessCPU(b), storetest.BackendCPU(b, pid)
		b.StartTimer()
		err := svc.claimBatch(ctx, items)
		b.StopTimer()
		proc += storetest.ProcessCPU(b) - p0
		pg += storetest.BackendCPU(b, pid) - g0
		require.NoError(b, err)
		for _, it := range items {
			require.False(b, it.alone, "left out of the batch")
			require.NoError(b, it.out.err, "claimed")
		}
	}
	claims := float64(b.N * perBatch)
	b.ReportMetric(float64(proc.Microseconds())/claims, "proc-µs/claim")
	b.ReportMetric(float64(pg.Microseconds())/claims, "pg-µs/claim")
	w := f.writes()
	require.Equal(b, 20000+b.N*perBatch, w.used)
	rep, err := audit.Verify(ctx, pool)
	require.NoError(b, err)
	require.True(b, rep.OK(), rep.String())
}
