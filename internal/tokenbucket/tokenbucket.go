// Package tokenbucket is the one token bucket of kluisd and kluis-backend
// (stdlib only, so both may link it): the backend's per-device budgets
// (backend/devicelink), kluisd's outbox pace (controller/link) and the
// backend's code sync pacer (backend/deviceops).
//
// A Bucket holds at most Burst tokens and earns Rate more a second. It
// reads no clock: every method is given the time, by the caller's own
// injected clock. Time that goes backwards (an injected clock set back)
// earns nothing and stalls nothing: the bucket takes the earlier time as
// its reference and earns again from there, so a step back never leaves
// it waiting for the clock to catch up, and never makes tokens negative
// (only Reserve borrows, by design).
//
// A Bucket is not safe for concurrent use: its owner holds its own lock.
package tokenbucket

import (
	"math"
	"time"
)

// Bucket is a token bucket. The zero value has no rate and no room; make
// one with New.
type Bucket struct {
	rate   float64
	burst  float64
	tokens float64
	// at is the time tokens were last brought up to date; zero: never,
	// the bucket is full.
	at time.Time
}

// New returns a full bucket of burst tokens earning rate tokens a second.
// rate must be above 0 and burst at least 1.
func New(rate float64, burst int) Bucket {
	return Bucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// refill brings the tokens up to date at now: what was earned since the
// last time, up to the burst; nothing for time that went backwards, which
// becomes the new reference.
func (b *Bucket) refill(now time.Time) {
	if !b.at.IsZero() {
		if d := now.Sub(b.at); d > 0 {
			b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		}
	}
	b.at = now
}

// Take takes one token at now if the bucket has a whole one, and reports
// whether it did.
func (b *Bucket) Take(now time.Time) bool {
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Available is how many whole tokens the bucket has at now (Take
// succeeds that many times at now).
func (b *Bucket) Available(now time.Time) int {
	b.refill(now)
	return max(int(math.Floor(b.tokens)), 0)
}

// Full reports whether the bucket is full at now: the same as a new one,
// so an owner keeping one bucket per device may forget it.
func (b *Bucket) Full(now time.Time) bool {
	b.refill(now)
	return b.tokens >= b.burst
}

// Until is how long after now the bucket has a whole token (0: it has one
// now).
func (b *Bucket) Until(now time.Time) time.Duration {
	b.refill(now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration(math.Ceil((1 - b.tokens) / b.rate * float64(time.Second)))
}

// Reserve takes one token at now, borrowing it when there is none, and
// returns how long after now it is the caller's: 0 while the bucket has a
// whole token, then 1/rate more for each token borrowed before it. A pacer
// that waits that long before each send spaces its sends at the rate,
// after a burst, however many callers reserve at once.
func (b *Bucket) Reserve(now time.Time) time.Duration {
	b.refill(now)
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(math.Ceil(-b.tokens / b.rate * float64(time.Second)))
}
