package devicelink

import (
	"net/netip"
	"sync"
	"time"
)

// Defaults of the per-address bound on failed MQTT password checks.
const (
	defaultMaxFailuresPerAddress = 10
	defaultFailureWindow         = time.Minute
	// maxThrottledAddresses bounds the addresses remembered at once; past
	// it, expired ones are swept and, if none expired, a new address is
	// not tracked (memory stays bounded; the four hashing slots still
	// bound the CPU).
	maxThrottledAddresses = 1 << 16
)

// addressThrottle counts the failed password checks of each client
// address (IPv6 per /64) in a fixed window that starts with the address's
// first failure; once an address has max failures in its window, its
// further checks are refused without hashing until the window ends. A
// device whose successful check is remembered is never throttled (Check
// looks at memory first), so only unknown or wrong passwords wait.
type addressThrottle struct {
	max    int
	window time.Duration

	mu     sync.Mutex
	byAddr map[netip.Prefix]*addressFailures
}

type addressFailures struct {
	n     int
	since time.Time
}

func newAddressThrottle(max int, window time.Duration) *addressThrottle {
	return &addressThrottle{max: max, window: window, byAddr: map[netip.Prefix]*addressFailures{}}
}

// key is the block an address counts in: itself, or its /64 for IPv6.
func throttleKey(a netip.Addr) netip.Prefix {
	bits := a.BitLen()
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// refused reports whether a's checks are refused at now.
func (t *addressThrottle) refused(a netip.Addr, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.byAddr[throttleKey(a)]
	return ok && f.n >= t.max && now.Sub(f.since) < t.window
}

// failed counts a failed check from a at now.
func (t *addressThrottle) failed(a netip.Addr, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := throttleKey(a)
	f, ok := t.byAddr[k]
	if ok && now.Sub(f.since) >= t.window {
		f.n, f.since = 0, now
	}
	if !ok {
		if len(t.byAddr) >= maxThrottledAddresses {
			for ak, af := range t.byAddr {
				if now.Sub(af.since) >= t.window {
					delete(t.byAddr, ak)
				}
			}
			if len(t.byAddr) >= maxThrottledAddresses {
				return
			}
		}
		f = &addressFailures{since: now}
		t.byAddr[k] = f
	}
	f.n++
}
