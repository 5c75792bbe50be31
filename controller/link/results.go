package link

import "time"

// maxHeldResults bounds the command results held for the backend's ack;
// maxHoldResult is how long one is held at most. A backend that records a
// result acknowledges it at once, or after a refusal (its result budget)
// at the next sending; these bounds only matter against a backend that
// never acknowledges (one older than the acks of results), which would
// otherwise be sent the same results for ever.
const (
	maxHeldResults = 32
	maxHoldResult  = time.Hour
)

// heldResults are the command results (cmdres) published and not yet
// acknowledged by the backend (under Link.mu): each is published again
// every resend_after, and at once after a reconnection, until an ack names
// its command id. The backend records the first result of a command and
// acknowledges every copy, so a copy more is harmless. They are kept in
// memory only: a result lost to a restart leaves the command without one,
// as before (the backend's command expires).
type heldResults map[string]*heldResult

type heldResult struct {
	payload []byte
	held    time.Time // first published
	last    time.Time // last published; zero: at the next look
}

// hold keeps the result of command id (payload, published at now); when
// maxHeldResults are held already it gives up the oldest and returns its
// id.
func (h *heldResults) hold(id string, payload []byte, now time.Time) (dropped string) {
	if *h == nil {
		*h = heldResults{}
	}
	if _, ok := (*h)[id]; !ok && len(*h) >= maxHeldResults {
		for k, r := range *h {
			if dropped == "" || r.held.Before((*h)[dropped].held) {
				dropped = k
			}
		}
		delete(*h, dropped)
	}
	(*h)[id] = &heldResult{payload: payload, held: now, last: now}
	return dropped
}

// acked forgets the result of command id and reports whether it was held.
func (h heldResults) acked(id string) bool {
	if _, ok := h[id]; !ok {
		return false
	}
	delete(h, id)
	return true
}

// reconnected makes every held result due at once: a new connection.
func (h heldResults) reconnected() {
	for _, r := range h {
		r.last = time.Time{}
	}
}

// due returns the results to publish again at now (marked published) and
// how long until the next one is due (0: none held). A result held longer
// than maxHoldResult is given up. A clock set back delays a resend by
// resendAfter at most.
func (h heldResults) due(now time.Time, resendAfter time.Duration) (again [][]byte, wait time.Duration) {
	for id, r := range h {
		r.held = earliest(r.held, now)
		if now.Sub(r.held) > maxHoldResult {
			delete(h, id)
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
	return again, wait
}

// count is the number of results waiting for the backend's ack.
func (h heldResults) count() int { return len(h) }
