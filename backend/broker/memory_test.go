package broker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"kluis/internal/mqttconn"
)

// BenchmarkSessions holds 3,000 kluisd-like sessions (CONNECT with a last
// will, four subscriptions, a retained presence, a 1.4 KB heartbeat) on
// the broker and reports the heap and goroutine stack per session
// (runtime.MemStats after GC; the heap includes this process's client
// sockets), then measures Publish to one of them (docs/performance.md,
// fleet).
func BenchmarkSessions(b *testing.B) {
	br := startBenchBroker(b)
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

// startBenchBroker starts a broker that lets every device in, closed when
// b ends.
func startBenchBroker(b *testing.B) *Broker {
	br, err := New(Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Credentials: func(_ context.Context, user, _ string) (string, Role, bool) { return user, RoleDevice, true }})
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = br.Close() })
	return br
}

// BenchmarkRequestAnswer is one kiosk's verification as the broker carries
// it (docs/performance.md, "Eighth pass"): a device publishes verify/req
// at QoS 1 over TCP, the in-process subscriber hands it to a worker
// goroutine (as devicelink does), the worker publishes verify/res at QoS
// 1 to the device, and the device reads the PUBACK and the answer and
// acknowledges the answer. Allocations are the whole process's, the
// hand-written client's included (it allocates nothing per request).
func BenchmarkRequestAnswer(b *testing.B) {
	br := startBenchBroker(b)
	const dev = "bench-001"
	answer := []byte(`{"v":1,"id":"0190a0b0-0000-7000-8000-000000000000","result":"ok","document_id":"0190a0b0-0000-7000-8000-000000000001",` +
		`"addr":{"board":0,"channel":1},"slot":1,"sig":"KR1.` + string(make([]byte, 220)) + `"}`)
	for i := range answer {
		if answer[i] == 0 {
			answer[i] = 'A'
		}
	}
	reqs := make(chan []byte, 64)
	defer close(reqs)
	go func() {
		for range reqs {
			if err := br.Publish("kluis/v1/dev/"+dev+"/verify/res", answer, false, 1); err != nil {
				b.Error(err)
			}
		}
	}()
	if err := br.Subscribe("kluis/v1/dev/+/verify/req", func(_ string, p []byte) { reqs <- p }); err != nil {
		b.Fatal(err)
	}
	c, err := net.Dial("tcp", br.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	step := func(p []byte) {
		if _, err := c.Write(p); err != nil {
			b.Fatal(err)
		}
		if _, _, err := readPacket(r, 1<<20); err != nil {
			b.Fatal(err)
		}
	}
	step(connectPkt("kluisd-"+dev, dev, "pw", 30, "", ""))
	step(packet(pktSubscribe<<4|2, []byte{0, 1}, str("kluis/v1/dev/"+dev+"/verify/res"), []byte{1}))
	req := packet(pktPublish<<4|2, str("kluis/v1/dev/"+dev+"/verify/req"), []byte{0, 7},
		[]byte(`{"v":1,"id":"0190a0b0-0000-7000-8000-000000000000","at":"2026-12-06T23:00:00.123456789Z","method":"qr","token":"K1.`+
			string(make([]byte, 180))+`"}`))
	ack := appendAck(nil, pktPuback<<4, 0)
	var buf [1024]byte
	read := func() (byte, []byte) {
		hdr, err := r.ReadByte()
		if err != nil {
			b.Fatal(err)
		}
		n, mult := 0, 1
		for {
			x, err := r.ReadByte()
			if err != nil {
				b.Fatal(err)
			}
			n += int(x&0x7f) * mult
			if x&0x80 == 0 {
				break
			}
			mult *= 128
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			b.Fatal(err)
		}
		return hdr, buf[:n]
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < 2; got++ {
			hdr, body := read()
			if hdr>>4 == pktPublish {
				tl := int(body[0])<<8 | int(body[1])
				ack[2], ack[3] = body[2+tl], body[3+tl]
				if _, err := c.Write(ack); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}

// BenchmarkKioskRoundTrip is BenchmarkRequestAnswer with kluis-bench
// verify's kiosk, a paho client reading through internal/mqttconn as
// kluisd's link does: verify/req at QoS 1, the answer published at QoS 1
// by a worker goroutine, delivered at the QoS the kiosk subscribed with
// (qos1: before kluisd subscribed to answers at QoS 0, so the kiosk sent
// a PUBACK for each; qos0: wire.Kind.SubscribeQoS). Allocations and time
// are the whole process's: the client's, the broker's and the worker's;
// cpu-ns/op is the process's user and system CPU per round trip
// (getrusage), which a busy machine inflates less than the time.
func BenchmarkKioskRoundTrip(b *testing.B) {
	for _, qos := range []byte{1, 0} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) {
			br := startBenchBroker(b)
			dev := fmt.Sprintf("bench-%d", qos)
			answer := []byte(`{"v":1,"id":"0190a0b0-0000-7000-8000-000000000000","result":"ok","sig":"KR1.` + strings.Repeat("A", 220) + `"}`)
			reqs := make(chan struct{}, 64)
			defer close(reqs)
			go func() {
				for range reqs {
					if err := br.Publish("kluis/v1/dev/"+dev+"/verify/res", answer, false, 1); err != nil {
						b.Error(err)
					}
				}
			}()
			if err := br.Subscribe("kluis/v1/dev/+/verify/req", func(string, []byte) { reqs <- struct{}{} }); err != nil {
				b.Fatal(err)
			}
			got := make(chan struct{}, 1)
			o := paho.NewClientOptions().AddBroker("tcp://" + br.Addr()).SetClientID(dev).SetUsername(dev).SetPassword("pw").
				SetProtocolVersion(4).SetAutoReconnect(false).SetOrderMatters(true).SetCustomOpenConnectionFn(mqttconn.Open)
			c := paho.NewClient(o)
			if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				b.Fatal("connect", tok.Error())
			}
			defer c.Disconnect(0)
			if tok := c.Subscribe("kluis/v1/dev/"+dev+"/verify/res", qos, func(paho.Client, paho.Message) { got <- struct{}{} }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				b.Fatal("subscribe", tok.Error())
			}
			req := []byte(`{"v":1,"id":"0190a0b0-0000-7000-8000-000000000000","at":"2026-12-06T23:00:00.123456789Z","method":"qr","token":"K1.` +
				strings.Repeat("A", 180) + `"}`)
			b.ReportAllocs()
			cpu0 := processCPU(b)
			for b.Loop() {
				c.Publish("kluis/v1/dev/"+dev+"/verify/req", 1, false, req)
				<-got
			}
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the process's user and system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
