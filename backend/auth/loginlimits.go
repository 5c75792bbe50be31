package auth

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Login limits (docs/security.md, "Staff accounts: logins and tokens"),
// shared by every way in with a password: the REST API's POST
// /api/v1/sessions and the staff console's login form (backend/web) use
// one LoginLimits, so a guesser gains nothing by switching. Failed logins
// are counted twice:
//
//   - per username and source (the client address, see ClientSource):
//     after maxSourceFailures within loginWindow that source is refused
//     for that username (429) until the oldest of them leaves the window.
//     This locks the guesser's address, not the account.
//   - per username over all sources: from freeFailures failures within
//     loginWindow on, an attempt must wait a back-off after the latest
//     failure, firstBackoff doubling with every further failure up to
//     maxBackoff. Never a lock: anyone waits at most maxBackoff, and a
//     source that logged in successfully as that user within knownFor does
//     not wait at all (it still has its own per-source limit).
//
// A success clears its own (username, source) failures and remembers the
// source; an admin clears everything of a username
// (POST /api/v1/users/{id}/clear-login-lockout). The counts live in the
// memory of this process and are bounded.
const (
	maxSourceFailures = 5
	freeFailures      = 10
	loginWindow       = 15 * time.Minute
	firstBackoff      = time.Second
	maxBackoff        = time.Minute
	knownFor          = 30 * 24 * time.Hour
	maxKnownPerUser   = 8
	maxTrackedKeys    = 10000
	// keepUserFailures is enough failures to reach maxBackoff.
	keepUserFailures = freeFailures + 8
)

// LoginLimits counts failed logins and refuses guessing (see above). The
// zero value is not usable: call NewLoginLimits. Safe for concurrent use.
type LoginLimits struct {
	mu sync.Mutex
	// bySource holds failure times per throttleKey(username)+"\x00"+source.
	bySource map[string][]time.Time
	// byUser holds the latest failure times per throttleKey(username).
	byUser map[string][]time.Time
	// known holds, per username, the sources of successful logins.
	known map[string]map[string]time.Time
}

// NewLoginLimits returns empty login limits.
func NewLoginLimits() *LoginLimits {
	return &LoginLimits{bySource: map[string][]time.Time{}, byUser: map[string][]time.Time{}, known: map[string]map[string]time.Time{}}
}

func throttleKey(username string) string { return strings.ToLower(strings.TrimSpace(username)) }

// Refusal says why and until when a login is refused.
type Refusal struct {
	// Until is when a login may be tried again.
	Until time.Time
	// Source is true when the source is locked for the username, false
	// for the username's back-off.
	Source bool
}

// backoff is how long an attempt waits after the latest of n failures.
func backoff(n int) time.Duration {
	if n < freeFailures {
		return 0
	}
	d := firstBackoff
	for i := freeFailures; i < n && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// Check returns a refusal for a login of username from source at now, or
// nil when it may be tried.
func (l *LoginLimits) Check(username, source string, now time.Time) *Refusal {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := throttleKey(username)
	if fs := recent(l.bySource, u+"\x00"+source, now); len(fs) >= maxSourceFailures {
		return &Refusal{Until: fs[len(fs)-maxSourceFailures].Add(loginWindow), Source: true}
	}
	if l.isKnown(u, source, now) {
		return nil
	}
	fs := recent(l.byUser, u, now)
	if d := backoff(len(fs)); d > 0 {
		if next := fs[len(fs)-1].Add(d); now.Before(next) {
			return &Refusal{Until: next}
		}
	}
	return nil
}

func (l *LoginLimits) isKnown(u, source string, now time.Time) bool {
	at, ok := l.known[u][source]
	return ok && now.Sub(at) < knownFor
}

// Fail records a failed login.
func (l *LoginLimits) Fail(username, source string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := throttleKey(username)
	add(l.bySource, u+"\x00"+source, now, maxSourceFailures)
	add(l.byUser, u, now, keepUserFailures)
}

// Succeed clears the failures of username from source and remembers the
// source as one the user logs in from.
func (l *LoginLimits) Succeed(username, source string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := throttleKey(username)
	delete(l.bySource, u+"\x00"+source)
	srcs := l.known[u]
	if srcs == nil {
		if len(l.known) >= maxTrackedKeys {
			for k, m := range l.known {
				for s, at := range m {
					if now.Sub(at) >= knownFor {
						delete(m, s)
					}
				}
				if len(m) == 0 {
					delete(l.known, k)
				}
			}
			if len(l.known) >= maxTrackedKeys {
				return // bounded memory; the user then waits at most maxBackoff
			}
		}
		srcs = map[string]time.Time{}
		l.known[u] = srcs
	}
	if _, ok := srcs[source]; !ok && len(srcs) >= maxKnownPerUser {
		oldest := ""
		for s, at := range srcs {
			if oldest == "" || at.Before(srcs[oldest]) {
				oldest = s
			}
		}
		delete(srcs, oldest)
	}
	srcs[source] = now
}

// Clear forgets every failure of username (from every source) and reports
// how many were dropped.
func (l *LoginLimits) Clear(username string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := throttleKey(username)
	n := len(l.byUser[u])
	delete(l.byUser, u)
	for k := range l.bySource {
		if strings.HasPrefix(k, u+"\x00") {
			delete(l.bySource, k)
		}
	}
	return n
}

// recent drops failures outside the window from m[k] and returns the rest;
// the caller holds the lock.
func recent(m map[string][]time.Time, k string, now time.Time) []time.Time {
	fs := m[k]
	i := 0
	for i < len(fs) && !fs[i].After(now.Add(-loginWindow)) {
		i++
	}
	fs = fs[i:]
	if len(fs) == 0 {
		delete(m, k)
		return nil
	}
	m[k] = fs
	return fs
}

// add appends now to m[k], keeping the last keep entries; under a flood of
// new keys memory stays bounded (the argon2id cost still applies).
func add(m map[string][]time.Time, k string, now time.Time, keep int) {
	fs := recent(m, k, now)
	if fs == nil && len(m) >= maxTrackedKeys {
		for key := range m {
			recent(m, key, now)
		}
		if len(m) >= maxTrackedKeys {
			return
		}
	}
	fs = append(fs, now)
	if len(fs) > keep {
		fs = fs[len(fs)-keep:]
	}
	m[k] = fs
}

// ClientSource is the address a request comes from, as the login throttle
// counts it: the peer address, or, when the peer is one of the trusted
// proxies, the right-most X-Forwarded-For address that is not itself a
// trusted proxy (the left part of the header is whatever the client
// wrote). IPv6 addresses count per /64, the block a single subscriber
// usually holds.
func ClientSource(r *http.Request, trusted []netip.Prefix) string {
	peer := parseAddr(r.RemoteAddr)
	if !peer.IsValid() {
		return "unknown"
	}
	addr := peer
	if inPrefixes(peer, trusted) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a := parseAddr(strings.TrimSpace(hops[i]))
			if !a.IsValid() {
				break // garbage: trust no further left than the last proxy
			}
			addr = a
			if !inPrefixes(a, trusted) {
				break
			}
		}
	}
	if addr.Is6() {
		p, err := addr.Prefix(64)
		if err == nil {
			return p.String()
		}
	}
	return addr.String()
}

// parseAddr reads "ip", "ip:port" or "[ip]:port"; 4in6 addresses become IPv4.
func parseAddr(s string) netip.Addr {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.WithZone("").Unmap()
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseTrustedProxies reads a comma list of addresses or CIDR prefixes
// ("10.0.0.5, 10.1.0.0/16, fd00::/8") for the trusted proxies of ClientSource; "" is
// none.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: want an IP address or a CIDR prefix", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
