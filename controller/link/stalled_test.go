package link

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

// staller relays connections to target until stalled: then it reads
// nothing more from the client and sends it nothing, its sockets left
// open, so that what the client writes fills its socket buffers (a cut
// uplink: the kernel keeps what the peer never acknowledged; or a peer
// that stopped reading).
type staller struct {
	ln      net.Listener
	target  string
	stalled atomic.Bool
	done    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
}

func newStaller(t *testing.T, target string) *staller {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &staller{ln: ln, target: target, done: make(chan struct{})}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		close(s.done)
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *staller) serve() {
	defer s.wg.Done()
	for {
		in, err := s.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", s.target)
		if err != nil {
			in.Close()
			continue
		}
		s.mu.Lock()
		s.conns = append(s.conns, in, out)
		s.mu.Unlock()
		s.wg.Add(2)
		go s.pipe(out, in)
		go s.pipe(in, out)
	}
}

// pipe copies from to to until stalled; then it waits for the end.
func (s *staller) pipe(to, from net.Conn) {
	defer s.wg.Done()
	buf := make([]byte, 4096)
	for {
		if s.stalled.Load() {
			<-s.done
			return
		}
		n, err := from.Read(buf)
		if err != nil {
			return
		}
		if s.stalled.Load() {
			continue
		}
		if _, err := to.Write(buf[:n]); err != nil {
			return
		}
	}
}

// A connection whose peer stops taking bytes (a cut uplink, once kluisd's
// socket buffer is full of what the broker never acknowledged; a broker
// that stopped reading) no longer holds the kiosk: a verification falls
// back offline after its own wait, not 30 s later, and kluisd gives the
// connection up within its keep-alive bounds and connects again. Before,
// paho wrote without a deadline: its writer blocked on the full socket,
// every Publish (the request's too) waited 30 s for it, and its pings
// queued behind it, so the dead connection was never noticed (until the
// kernel's retransmissions gave up, some 15 minutes on a cut uplink).
func TestStalledConnectionDoesNotHoldTheKiosk(t *testing.T) {
	dev := fmt.Sprintf("st-%d", time.Now().UnixNano())
	b := startEmbedded(t, dev)
	var reqs atomic.Int64
	require.NoError(t, b.Subscribe(wire.Root+"/"+dev+"/verify/req", func(string, []byte) { reqs.Add(1) }))

	relay := newStaller(t, b.Addr())
	// A heartbeat of every door of 32 boards: the socket fills in moments.
	doors := make([]hardware.ChannelState, wire.MaxHeartbeat)
	for i := range doors {
		doors[i].Addr = hardware.Address{Board: i / 48, Channel: i % 48}
	}
	var l *Link
	defer runLink(t, Options{URL: "tcp://" + relay.ln.Addr().String(), DeviceID: dev, Username: dev, Password: "pw-" + dev,
		KeepAlive: 2 * time.Second, PingTimeout: 2 * time.Second, HeartbeatEvery: 20 * time.Millisecond,
		Heartbeat: func(context.Context) wire.Heartbeat { return wire.Heartbeat{Doors: doors} }}, &l)()
	testenv.Eventually(t, "connected", func() bool { return l.Connected() })

	relay.stalled.Store(true)
	time.Sleep(2 * time.Second) // heartbeats fill the sockets' buffers meanwhile
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err := l.Verify(ctx, wire.VerifyRequest{ID: wire.NewID(time.Now()), At: time.Now().UTC(), Method: wire.MethodPIN, PIN: "123456"})
	cancel()
	waited := time.Since(start)
	assert.True(t, errors.Is(err, ErrUnavailable), "no answer: %v", err)
	assert.Less(t, waited, 5*time.Second, "the kiosk's wait for its answer")

	relay.mu.Lock()
	before := len(relay.conns)
	relay.mu.Unlock()
	relay.stalled.Store(false) // new connections are relayed; the stalled one stays stalled
	testenv.Eventually(t, "kluisd gives the stalled connection up and connects again", func() bool {
		relay.mu.Lock()
		defer relay.mu.Unlock()
		return len(relay.conns) > before && l.Connected()
	})
}
