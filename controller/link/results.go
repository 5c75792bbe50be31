package link

import (
	"time"

	"kluis/controller/journal"
)

// maxHeldResults bounds the command results held for the backend's ack;
// maxHoldResult is how long one is held at most once it was first sent
// in this run of kluisd (time offline before that does not count; one
// whose hour ran out during an outage is sent once more on the new
// connection). A backend that records a result acknowledges it at once,
// or after a refusal (its result budget) at the next sending; these
// bounds only matter against a backend that never acknowledges (one older
// than the acks of results), which would otherwise be sent the same
// results for ever. A result given up at a bound is counted
// (kluisd_mqtt_command_results_given_up_total) and logged.
const (
	maxHeldResults = 32
	maxHoldResult  = time.Hour
)

// Why a held result was given up (the counter's reason label).
const (
	givenUpCount = "count"
	givenUpAge   = "age"
)

// heldResults are the command results (cmdres) not yet acknowledged by
// the backend (under Link.mu): each is published again every
// resend_after, and at once after a reconnection, until an ack names its
// command id. The backend records the first result of a command and
// acknowledges every copy, so a copy more is harmless. They are journaled
// (journal.HoldResult) before they are first published, so a restart
// holds them again (load) and sends them once connected; this is the
// memory of when each was sent.
type heldResults struct {
	m    map[string]*heldResult
	next uint64 // order of the next one held
}

type heldResult struct {
	payload []byte
	order   uint64    // the oldest is given up first
	held    time.Time // first published in this run; zero: not yet
	last    time.Time // last published; zero: at the next look
}

// add holds payload for command id with the given times; when
// maxHeldResults are held already it gives up the oldest and returns its
// id.
func (h *heldResults) add(id string, payload []byte, held, last time.Time) (dropped string) {
	if h.m == nil {
		h.m = map[string]*heldResult{}
	}
	if _, ok := h.m[id]; !ok && len(h.m) >= maxHeldResults {
		for k, r := range h.m {
			if dropped == "" || r.order < h.m[dropped].order {
				dropped = k
			}
		}
		delete(h.m, dropped)
	}
	h.m[id] = &heldResult{payload: payload, order: h.next, held: held, last: last}
	h.next++
	return dropped
}

// hold keeps the result of command id (payload, published at now); when
// maxHeldResults are held already it gives up the oldest and returns its
// id.
func (h *heldResults) hold(id string, payload []byte, now time.Time) (dropped string) {
	return h.add(id, payload, now, now)
}

// load holds the results a previous run journaled and the backend did not
// acknowledge (oldest first), to be sent at the next look once connected;
// it returns the ids given up beyond maxHeldResults (the oldest).
func (h *heldResults) load(rs []journal.Result) (dropped []string) {
	for _, r := range rs {
		if d := h.add(r.ID, r.Payload, time.Time{}, time.Time{}); d != "" {
			dropped = append(dropped, d)
		}
	}
	return dropped
}

// has reports whether the result of command id is held.
func (h *heldResults) has(id string) bool { _, ok := h.m[id]; return ok }

// again makes the held result of command id due at the next look.
func (h *heldResults) again(id string) {
	if r := h.m[id]; r != nil {
		r.last = time.Time{}
	}
}

// acked forgets the result of command id and reports whether it was held.
func (h *heldResults) acked(id string) bool {
	if _, ok := h.m[id]; !ok {
		return false
	}
	delete(h.m, id)
	return true
}

// reconnected makes every held result due at once: a new connection.
func (h *heldResults) reconnected() {
	for _, r := range h.m {
		r.last = time.Time{}
	}
}

// due returns the results to publish again at now (marked published), the
// ids of those given up (held longer than maxHoldResult since first
// published; one due at once, after a reconnection, is published a last
// time) and how long until the next one is due (0: none held). A clock set
// back delays a resend by resendAfter at most.
func (h *heldResults) due(now time.Time, resendAfter time.Duration) (again [][]byte, expired []string, wait time.Duration) {
	for id, r := range h.m {
		if r.held.IsZero() {
			r.held = now // first published now
		}
		r.held = earliest(r.held, now)
		if now.Sub(r.held) > maxHoldResult {
			delete(h.m, id)
			expired = append(expired, id)
			if r.last.IsZero() {
				// Due at once (a reconnection): an outage longer than
				// the hour leaves it one sending on the new connection.
				again = append(again, r.payload)
			}
			continue
		}
		if !r.last.IsZero() {
			r.last = earliest(r.last, now)
			if d := r.last.Add(resendAfter); d.After(now) {
				wait = shorter(wait, d.Sub(now))
				continue
			}
		}
		r.last = now
		again = append(again, r.payload)
		wait = shorter(wait, resendAfter)
	}
	return again, expired, wait
}

// count is the number of results waiting for the backend's ack.
func (h *heldResults) count() int { return len(h.m) }
