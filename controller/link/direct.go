package link

import "time"

// maxDirect bounds the events held for PublishNow: alarms about the
// journal itself, a raise and a clear at a time.
const maxDirect = 16

// directEvent is an event published out of band (PublishNow): its
// encoded payload and when it was last published (zero: not yet on this
// connection).
type directEvent struct {
	payload []byte
	sent    time.Time
}

// PublishNow publishes an event the journal cannot take now (an alarm
// about the journal itself: a journal that fails every write is the
// outbox that would carry it) out of band: at once when connected,
// otherwise at the next connection, and again every ResendAfter until the
// backend acknowledges its id. The engine journals the same event (same
// id) once the journal takes writes again, and the outbox sends it then
// too: the backend records an event id once and acknowledges the repeat,
// so the alarm reaches the backend while the journal fails, once, and is
// never lost (a restart before it was acknowledged raises it again).
// Beyond maxDirect held events the newest is dropped (logged): it still
// goes through the journal.
func (l *Link) PublishNow(id string, payload []byte) {
	l.mu.Lock()
	if _, ok := l.direct[id]; !ok && len(l.direct) >= maxDirect {
		l.mu.Unlock()
		l.log.Error("out-of-band event dropped: too many held (it goes through the journal once it takes writes)", "id", id)
		return
	}
	if l.direct == nil {
		l.direct = map[string]*directEvent{}
	}
	l.direct[id] = &directEvent{payload: payload}
	l.mu.Unlock()
	l.log.Warn("event published out of band: the journal does not take it now", "id", id)
	l.poke()
}

// directDueLocked returns the out-of-band events to publish now (marked sent)
// and how long until the next is due again (0: none held). l.mu held.
func (l *Link) directDueLocked(now time.Time) (due [][]byte, wait time.Duration) {
	for _, d := range l.direct {
		if !d.sent.IsZero() && now.Sub(d.sent) < l.o.ResendAfter {
			wait = shorter(wait, l.o.ResendAfter-now.Sub(d.sent))
			continue
		}
		d.sent = now
		due = append(due, d.payload)
		wait = shorter(wait, l.o.ResendAfter)
	}
	return due, wait
}

// directReconnectedLocked sends every held out-of-band event again on a
// new connection. l.mu held.
func (l *Link) directReconnectedLocked() {
	for _, d := range l.direct {
		d.sent = time.Time{}
	}
}
