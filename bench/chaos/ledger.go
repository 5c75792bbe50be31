package chaos

import (
	"sync"
	"time"
)

// grant is a door the gauntlet asked to be opened: a valid code, a staff
// load or retrieval, a technician's test-open. A pulse of a device's lock
// is legitimate only inside a grant of that lock.
type grant struct {
	dev         string
	board, ch   int
	from, until time.Time // until is zero while the operation runs
	why         string
}

// ledger records the grants of a run.
type ledger struct {
	mu     sync.Mutex
	grants []*grant
}

// open starts a grant now.
func (l *ledger) open(dev string, board, ch int, why string) *grant {
	return l.openSince(dev, board, ch, why, time.Now())
}

// openSince starts a grant that began at from: an action whose lock is
// known only after it was asked for (a staff load: the backend names the
// compartment) covers its pulses from the moment it was asked for.
func (l *ledger) openSince(dev string, board, ch int, why string, from time.Time) *grant {
	g := &grant{dev: dev, board: board, ch: ch, from: from, why: why}
	l.mu.Lock()
	l.grants = append(l.grants, g)
	l.mu.Unlock()
	return g
}

// close ends a grant now.
func (l *ledger) close(g *grant) {
	l.mu.Lock()
	if g.until.IsZero() {
		g.until = time.Now()
	}
	l.mu.Unlock()
}

// pulseSlack is how long before a grant began (clock reads of two
// processes) and after it ended (a pulse still being recorded) a pulse
// still belongs to it.
const pulseSlack = 500 * time.Millisecond

// covering returns the grants of the lock that cover at.
func (l *ledger) covering(dev string, board, ch int, at time.Time) []*grant {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*grant
	for _, g := range l.grants {
		if g.dev != dev || g.board != board || g.ch != ch {
			continue
		}
		if at.Before(g.from.Add(-pulseSlack)) {
			continue
		}
		if !g.until.IsZero() && at.After(g.until.Add(pulseSlack)) {
			continue
		}
		out = append(out, g)
	}
	return out
}
