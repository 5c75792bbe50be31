package link

import (
	"sort"
	"time"

	"kluis/controller/journal"
	"kluis/controller/wire"
	"kluis/internal/tokenbucket"
)

// Pace bounds one lane of the outbox's sending: at most Window events in
// flight (published, not yet acknowledged), and a token bucket of Rate
// publications a second, Burst at once, for first sendings and resendings
// alike.
type Pace struct {
	Window int
	Rate   float64
	Burst  int
}

// The default paces stay under kluis-backend's default budgets
// (backend/devicelink: events 10 a second, 600 at once; alarms 1 a
// second, 60 at once): four fifths of the rate, a third of the burst. A
// stream of publications that keeps to a (rate r, burst b) bucket is
// always let through by a fuller, faster bucket, so an honest kluisd is
// never refused however long its backlog; it drains at the pace's rate.
var (
	DefaultEventPace = Pace{Window: 100, Rate: 8, Burst: 200}
	DefaultAlarmPace = Pace{Window: 20, Rate: 0.8, Burst: 20}
)

// Urgent reports whether events of kind go ahead of the backlog (the
// journal's urgent lane, the link's alarm pace): wire.EventKind.Urgent,
// alarms and their clearing, so that a technician hears of a forced door
// at once, not after a week's backlog. It is the journal's
// Options.Urgent for kluisd.
func Urgent(kind string) bool { return wire.EventKind(kind).Urgent() }

// lane indexes the window's lanes.
const (
	laneEvent = 0
	laneAlarm = 1
)

func laneName(i int) string {
	if i == laneAlarm {
		return "alarm"
	}
	return "event"
}

// window is the outbox sender's state (under Link.mu): per lane the
// events in flight, when each was last published, and the pace's tokens.
// It decides, from the journal's outbox index and the clock alone, what
// to publish now and when to look again: the oldest events first, the
// alarm lane before the event lane, a lane's events in flight published
// again once resendAfter has passed without their ack. It publishes
// nothing itself.
type window struct {
	resendAfter time.Duration
	lanes       [2]laneState
}

type laneState struct {
	pace     Pace
	inflight map[string]*flight
	tokens   tokenbucket.Bucket
}

// flight is an event in flight and when it was last published.
type flight struct {
	ev   journal.Event
	last time.Time
}

func newWindow(event, alarm Pace, resendAfter time.Duration) *window {
	w := &window{resendAfter: resendAfter}
	for i, p := range [2]Pace{laneEvent: event, laneAlarm: alarm} {
		w.lanes[i] = laneState{pace: p, inflight: map[string]*flight{}, tokens: tokenbucket.New(p.Rate, p.Burst)}
	}
	return w
}

// send is one publication the window decided on.
type send struct {
	ev     journal.Event
	lane   int
	resend bool
}

// plan returns what to publish at now (marked in flight, tokens spent)
// and how long until plan has something to do again (0: nothing to wait
// for but an ack, a new event or a reconnection). It costs O(window) and
// a walk of the journal's index past the events in flight, whatever the
// backlog.
func (w *window) plan(now time.Time, j *journal.Journal) (out []send, wait time.Duration) {
	for _, i := range []int{laneAlarm, laneEvent} {
		ls := &w.lanes[i]
		// Resendings first, oldest first: the events in flight are the
		// lane's oldest.
		var overdue []*flight
		for _, f := range ls.inflight {
			// A clock set back (an injected one: time.Now's readings
			// compare by the monotonic clock) delays a resend by
			// resendAfter at most, not by the step.
			f.last = earliest(f.last, now)
			if d := f.last.Add(w.resendAfter); d.After(now) {
				wait = shorter(wait, d.Sub(now))
			} else {
				overdue = append(overdue, f)
			}
		}
		sort.Slice(overdue, func(a, b int) bool {
			x, y := overdue[a].ev, overdue[b].ev
			return x.At.Before(y.At) || x.At.Equal(y.At) && x.ID < y.ID
		})
		for _, f := range overdue {
			if !ls.tokens.Take(now) {
				wait = shorter(wait, ls.tokens.Until(now))
				break
			}
			f.last = now
			out = append(out, send{ev: f.ev, lane: i, resend: true})
			wait = shorter(wait, w.resendAfter)
		}
		free := ls.pace.Window - len(ls.inflight)
		if free <= 0 {
			continue
		}
		urgent := i == laneAlarm
		n := min(free, ls.tokens.Available(now))
		var evs []journal.Event
		if n > 0 {
			evs = j.OutboxNext(urgent, n, ls.busy)
		}
		for _, e := range evs {
			ls.tokens.Take(now)
			ls.inflight[e.ID] = &flight{ev: e, last: now}
			out = append(out, send{ev: e, lane: i})
			wait = shorter(wait, w.resendAfter)
		}
		if len(evs) == n && n < free && j.OutboxNext(urgent, 1, ls.busy) != nil {
			wait = shorter(wait, ls.tokens.Until(now)) // more to send once a token comes
		}
	}
	return out, wait
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (ls *laneState) busy(id string) bool { _, ok := ls.inflight[id]; return ok }

// acked takes id out of flight (its slot is free for the next event);
// it reports whether it was in flight.
func (w *window) acked(id string) bool {
	for i := range w.lanes {
		if _, ok := w.lanes[i].inflight[id]; ok {
			delete(w.lanes[i].inflight, id)
			return true
		}
	}
	return false
}

// reset forgets what is in flight (a new connection: everything unacked
// goes again, oldest first, at the pace); the tokens stay spent, as the
// backend's budget does.
func (w *window) reset() {
	for i := range w.lanes {
		clear(w.lanes[i].inflight)
	}
}

// inFlight is the number of events in flight in lane i.
func (w *window) inFlight(i int) int { return len(w.lanes[i].inflight) }

// shorter is the shorter of two waits, 0 meaning none.
func shorter(a, b time.Duration) time.Duration {
	if a == 0 || b > 0 && b < a {
		return max(b, time.Millisecond)
	}
	return a
}
