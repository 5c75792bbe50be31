package audit_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/store/storetest"
)

// BenchmarkChain is the chainer's cost per record: each iteration queues
// a pass's worth of code attempts' records (about what 50 ms of the
// verify bench's quiet 5,800 claims a second leave) and chains them.
// Beside allocs/op it reports the CPU per record of this process (user +
// system, getrusage, around Chain alone) and of the PostgreSQL backend
// that ran it (one connection; /proc/<pid>/stat, 10 ms ticks): CPU
// figures a busy machine inflates less than times (docs/performance.md,
// "Fifteenth pass").
func BenchmarkChain(b *testing.B) {
	const perPass = 256
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
	var procUS, pgTicks float64
	b.ReportAllocs()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		batch := &pgx.Batch{}
		require.NoError(b, audit.QueueAppend(batch, entries))
		require.NoError(b, pool.SendBatch(ctx, batch).Close())
		p0, g0 := rusageUS(b), backendTicks(b, pid)
		b.StartTimer()
		n, err := audit.Chain(ctx, pool)
		b.StopTimer()
		procUS += rusageUS(b) - p0
		pgTicks += backendTicks(b, pid) - g0
		require.NoError(b, err)
		require.Equal(b, perPass, n)
	}
	records := float64(b.N * perPass)
	b.ReportMetric(procUS/records, "proc-µs/record")
	b.ReportMetric(pgTicks*1e6/100/records, "pg-µs/record") // USER_HZ 100
	rep, err := audit.Verify(ctx, pool)
	require.NoError(b, err)
	require.Nil(b, rep.FirstBad, rep.Reason)
}

func rusageUS(b *testing.B) float64 {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e3
}

// backendTicks is a PostgreSQL backend's user + system CPU in clock ticks.
func backendTicks(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(b, err)
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // state(0) ... utime(11) stime(12)
	u, err := strconv.ParseFloat(f[11], 64)
	require.NoError(b, err)
	st, err := strconv.ParseFloat(f[12], 64)
	require.NoError(b, err)
	return u + st
}
