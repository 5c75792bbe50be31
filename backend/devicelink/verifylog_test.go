package devicelink

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"kluis/backend/store/storetest"
	"kluis/controller/wire"
)

// BenchmarkVerifyLogLine is devicelink's side of a verification with the
// backend's info-level text log into nothing (as kluis-bench verify runs
// it): result=ok, logged at debug since the sixteenth pass (not written),
// against result=wrong_code, logged at info as every verification was
// before. cpu-ns/op is the process's CPU per verification (storetest.ProcessCPU).
//
//	go test -run XXX -bench VerifyLogLine -benchmem ./backend/devicelink/
func BenchmarkVerifyLogLine(b *testing.B) {
	for _, result := range []wire.VerifyResult{wire.VerifyOK, wire.VerifyWrongCode} {
		b.Run("result="+string(result), func(b *testing.B) {
			l := &Link{log: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})).With("part", "devicelink"),
				o: Options{Verifier: VerifierFunc(func(context.Context, string, wire.VerifyRequest) wire.VerifyResponse {
					return wire.VerifyResponse{Result: result}
				})}}
			req := &wire.VerifyRequest{ID: "0190a0b0-0000-7000-8000-000000000000", At: time.Now(), Method: wire.MethodQR, Token: "K1.x"}
			ctx := context.Background()
			b.ReportAllocs()
			cpu0 := storetest.ProcessCPU(b)
			for b.Loop() {
				l.verify(ctx, "bench-001", req)
			}
			b.ReportMetric(float64(storetest.ProcessCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
