package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The argon2id hashing slots, shared fairly (docs/security.md, "Staff
// accounts: logins and tokens"). Each password check holds
// Params.MemoryKiB of memory, so at most MaxConcurrentHashes run at once
// and the others wait in line. The line is bounded and fair, so that a
// flood of wrong logins (from one address or from many) cannot make
// legitimate staff wait until they time out:
//
//   - a login holds at most one place (a slot or a place in line) per
//     client source: a second login from a source whose first is still
//     being checked is refused at once (ErrLoginBusy), so one source
//     cannot fill the line;
//   - a login of a username from a source that logged in as it lately
//     (LoginFrom.Known, from the login limits: an attacker cannot make a
//     pair known without the password) waits in its own line, served
//     before the other; its place is counted per username and source, so
//     colleagues behind one office address do not refuse each other;
//   - each line holds at most MaxQueuedHashes logins; one more is refused
//     at once (ErrLoginBusy) instead of waiting behind a flood;
//   - hashing a new password (creating a user, changing a password:
//     callers already authenticated) waits in the first line, without a
//     place of its own and without a bound.
//
// A refusal is answered 429 with Retry-After: LoginBusyRetry; nothing was
// checked, so the login limits do not count it (LoginLimits.Abandon).

// ErrLoginBusy means a password login was refused before its check: the
// same client source already has a login being checked, or too many
// logins wait for the hashing slots. Try again after LoginBusyRetry.
var ErrLoginBusy = errors.New("auth: too many logins are being checked; try again in a moment")

// LoginBusyRetry is the Retry-After of an ErrLoginBusy refusal.
const LoginBusyRetry = time.Second

// LoginFrom says where a password login comes from, for the fair share of
// the hashing slots.
type LoginFrom struct {
	// Source is the client's address as ClientSource gives it.
	Source string
	// Known is true when Source logged in as this username lately
	// (Attempt.Known of the login limits).
	Known bool
}

// hashGate hands out the hashing slots (see above).
type hashGate struct {
	// busy counts the refusals by reason: busyHeld (the key already
	// holds a place) and busyLine (its line is full). Never a user or an
	// address.
	busy *prometheus.CounterVec

	mu      sync.Mutex
	free    int                 // slots not held
	maxLine int                 // places in each line
	held    map[string]struct{} // keys holding a slot or a place in line
	lines   [2][]*hashWaiter    // 0: known logins and new passwords, 1: the others
}

type hashWaiter struct {
	ready   chan struct{} // closed when the slot is handed over
	granted bool          // under mu
}

// Reasons of kluis_auth_login_busy_total.
const (
	busyHeld = "source_busy" // the source (or known user and source) already has a login being checked
	busyLine = "line_full"   // the login's line held MaxQueuedHashes
)

func newHashGate(slots, line int) *hashGate {
	busy := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kluis_auth_login_busy_total",
		Help: "Password logins refused at once (429 login_busy) before their check, by reason: source_busy (a login from the same source is being checked) or line_full (too many wait for the argon2id slots, or for the database share of logins from unknown addresses)."},
		[]string{"reason"})
	busy.WithLabelValues(busyHeld)
	busy.WithLabelValues(busyLine)
	return &hashGate{busy: busy, free: slots, maxLine: line, held: map[string]struct{}{}}
}

// sibling is another gate of slots places and lines of line each whose
// refusals count in g's kluis_auth_login_busy_total (the same reasons).
func (g *hashGate) sibling(slots, line int) *hashGate {
	return &hashGate{busy: g.busy, free: slots, maxLine: line, held: map[string]struct{}{}}
}

// gateKey is where a login's place is counted.
func gateKey(f LoginFrom, username string) string {
	if f.Known {
		return "known\x00" + throttleKey(username) + "\x00" + f.Source
	}
	return "source\x00" + f.Source
}

// acquire waits for a slot (or for ctx) and returns its release. key ""
// is a new password's hash: first line, no place of its own, no bound.
// Otherwise a key already holding a place, or a full line, is
// ErrLoginBusy at once.
func (g *hashGate) acquire(ctx context.Context, key string, first bool) (func(), error) {
	line := 1
	if first {
		line = 0
	}
	g.mu.Lock()
	if key != "" {
		if _, ok := g.held[key]; ok {
			g.mu.Unlock()
			g.busy.WithLabelValues(busyHeld).Inc()
			return nil, ErrLoginBusy
		}
	}
	release := func() { g.release(key) }
	if g.free > 0 {
		g.free--
		if key != "" {
			g.held[key] = struct{}{}
		}
		g.mu.Unlock()
		return release, nil
	}
	if key != "" && len(g.lines[line]) >= g.maxLine {
		g.mu.Unlock()
		g.busy.WithLabelValues(busyLine).Inc()
		return nil, ErrLoginBusy
	}
	w := &hashWaiter{ready: make(chan struct{})}
	g.lines[line] = append(g.lines[line], w)
	if key != "" {
		g.held[key] = struct{}{}
	}
	g.mu.Unlock()
	select {
	case <-w.ready:
		return release, nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	if w.granted {
		g.mu.Unlock()
		release() // handed over while giving up: pass it on
	} else {
		for i, x := range g.lines[line] {
			if x == w {
				g.lines[line] = append(g.lines[line][:i], g.lines[line][i+1:]...)
				break
			}
		}
		if key != "" {
			delete(g.held, key)
		}
		g.mu.Unlock()
	}
	return nil, fmt.Errorf("waiting for a password hashing slot: %w", ctx.Err())
}

// release gives key's slot to the first waiter of the first line that
// has one, or frees it.
func (g *hashGate) release(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if key != "" {
		delete(g.held, key)
	}
	for i := range g.lines {
		if len(g.lines[i]) > 0 {
			w := g.lines[i][0]
			g.lines[i] = g.lines[i][1:]
			w.granted = true
			close(w.ready)
			return
		}
	}
	g.free++
}

// waiting reports how many wait in each line (for tests).
func (g *hashGate) waiting() (first, other int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.lines[0]), len(g.lines[1])
}
