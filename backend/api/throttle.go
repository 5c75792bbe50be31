package api

import (
	"strings"
	"sync"
	"time"
)

// Login throttling: after maxLoginFailures failed logins for one username
// within loginWindow, further logins for it are refused with 429 until the
// oldest failure leaves the window. A success clears the username.
const (
	maxLoginFailures = 5
	loginWindow      = 15 * time.Minute
	maxTrackedNames  = 10000
)

type loginThrottle struct {
	mu       sync.Mutex
	failures map[string][]time.Time
}

func newLoginThrottle() *loginThrottle {
	return &loginThrottle{failures: map[string][]time.Time{}}
}

func throttleKey(username string) string { return strings.ToLower(strings.TrimSpace(username)) }

// blockedUntil returns when username may try again (zero when it may now).
func (l *loginThrottle) blockedUntil(username string, now time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := throttleKey(username)
	fs := l.recent(k, now)
	if len(fs) < maxLoginFailures {
		return time.Time{}
	}
	return fs[len(fs)-maxLoginFailures].Add(loginWindow)
}

// fail records a failed login.
func (l *loginThrottle) fail(username string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := throttleKey(username)
	if _, ok := l.failures[k]; !ok && len(l.failures) >= maxTrackedNames {
		l.sweep(now)
		if len(l.failures) >= maxTrackedNames {
			return // under a flood keep memory bounded; the argon2id cost still applies
		}
	}
	fs := append(l.recent(k, now), now)
	if len(fs) > maxLoginFailures {
		fs = fs[len(fs)-maxLoginFailures:]
	}
	l.failures[k] = fs
}

// succeed clears a username.
func (l *loginThrottle) succeed(username string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, throttleKey(username))
}

// recent drops failures outside the window; the caller holds mu.
func (l *loginThrottle) recent(k string, now time.Time) []time.Time {
	fs := l.failures[k]
	i := 0
	for i < len(fs) && !fs[i].After(now.Add(-loginWindow)) {
		i++
	}
	fs = fs[i:]
	if len(fs) == 0 {
		delete(l.failures, k)
		return nil
	}
	l.failures[k] = fs
	return fs
}

// sweep forgets every username without recent failures; the caller holds mu.
func (l *loginThrottle) sweep(now time.Time) {
	for k := range l.failures {
		l.recent(k, now)
	}
}
