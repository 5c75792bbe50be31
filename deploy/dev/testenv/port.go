package testenv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Listen returns a TCP listener on a fresh loopback port, closed when t
// ends. Hand it to the server under test: unlike an address, it cannot be
// taken by someone else in between.
func Listen(t T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: listen: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// FreeAddr returns a loopback address "127.0.0.1:PORT" nobody listens on,
// for a server that must be given an address; see PickAddr.
func FreeAddr(t T) string {
	t.Helper()
	a, err := PickAddr()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return a
}

// FreePort is FreeAddr's port.
func FreePort(t T) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(FreeAddr(t))
	n, _ := strconv.Atoi(p)
	return n
}

// ports are the ports this process handed out: never twice. (The one piece
// of process-wide state here, because ports are process-wide.)
var ports struct {
	sync.Mutex
	given map[int]bool
}

// lowest is the lowest port PickAddr chooses.
const lowest = 20000

// PickAddr returns a loopback address "127.0.0.1:PORT" that was free a
// moment ago, for a server that must be given an address rather than a
// listener. The port lies below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), so neither another `listen :0` nor an
// outgoing connection can take it before the server binds it, and it is
// never handed out twice in one process. Only another process choosing
// the same random port in the same instant could; a server that fails to
// bind should then be started again on a new address.
func PickAddr() (string, error) {
	lo, hi := lowest, ephemeralLow()-1
	if hi-lo < 1000 { // an unusual range: let the kernel choose
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("pick a port: %w", err)
		}
		defer l.Close()
		return l.Addr().String(), nil
	}
	ports.Lock()
	defer ports.Unlock()
	if ports.given == nil {
		ports.given = map[int]bool{}
	}
	var lastErr error
	for range 200 {
		p := lo + rand.IntN(hi-lo+1)
		if ports.given[p] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			lastErr = err
			continue
		}
		_ = l.Close()
		ports.given[p] = true
		return addr, nil
	}
	return "", errors.Join(errors.New("pick a port: no free port found in 200 tries"), lastErr)
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}
