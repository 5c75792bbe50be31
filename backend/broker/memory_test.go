package broker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
)

// BenchmarkSessions holds 3,000 kluisd-like sessions (CONNECT with a last
// will, four subscriptions, a retained presence, a 1.4 KB heartbeat) on
// the broker and reports the heap and goroutine stack per session
// (runtime.MemStats after GC; the heap includes this process's client
// sockets), then measures Publish to one of them (docs/performance.md,
// fleet).
func BenchmarkSessions(b *testing.B) {
	br, err := New(Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Credentials: func(_ context.Context, user, _ string) (string, Role, bool) { return user, RoleDevice, true }})
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Start(); err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	for _, k := range []string{"presence", "heartbeat", "event"} {
		if err := br.Subscribe("kluis/v1/dev/+/"+k, func(string, []byte) {}); err != nil {
			b.Fatal(err)
		}
	}
	mem := func() runtime.MemStats {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m
	}
	before := mem()
	const n = 3000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	heartbeat := make([]byte, 1400)
	step := func(c net.Conn, r *bufio.Reader, p []byte) {
		if _, err := c.Write(p); err != nil {
			b.Fatal(err)
		}
		if _, _, err := readPacket(r, 1<<20); err != nil {
			b.Fatal(err)
		}
	}
	for i := range n {
		dev := fmt.Sprintf("dev-%05d", i)
		c, err := net.Dial("tcp", br.Addr())
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		r := bufio.NewReader(c)
		step(c, r, connectPkt("kluisd-"+dev, dev, "pw", 30, "kluis/v1/dev/"+dev+"/presence", `{"v":1,"state":"offline"}`))
		for k, kind := range []string{"ack", "cmd", "verify/res", "staff/res"} {
			step(c, r, packet(pktSubscribe<<4|2, []byte{0, byte(k + 1)}, str("kluis/v1/dev/"+dev+"/"+kind), []byte{1}))
		}
		step(c, r, packet(pktPublish<<4|2|1, str("kluis/v1/dev/"+dev+"/presence"), []byte{0, 9},
			[]byte(`{"v":1,"state":"online","since":"2026-12-06T03:00:00Z","version":"1.0.0"}`)))
		step(c, r, packet(pktPublish<<4|2, str("kluis/v1/dev/"+dev+"/heartbeat"), []byte{0, 10}, heartbeat))
	}
	after := mem()
	per := func(a, b uint64) float64 { return float64(int64(a)-int64(b)) / n }
	payload := []byte(`{"v":1,"id":"c1","op":"ping"}`)
	i := 0
	for b.Loop() {
		if err := br.Publish(fmt.Sprintf("kluis/v1/dev/dev-%05d/cmd", i%n), payload, false, 0); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(per(after.HeapInuse, before.HeapInuse), "heap-B/session") // after b.Loop, which resets them
	b.ReportMetric(per(after.StackInuse, before.StackInuse), "stack-B/session")
}
