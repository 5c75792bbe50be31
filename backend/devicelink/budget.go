package devicelink

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"kluis/internal/tokenbucket"
)

// Budget is a per-device token bucket: a device may send Burst messages
// at once, and Rate more per second after that. A message over budget is
// refused (an event is not acknowledged, a request is answered
// "unavailable", a command result is neither recorded nor acknowledged);
// see
// Options.VerifyBudget, EventBudget, AlarmBudget and ResultBudget.
type Budget struct {
	// Rate is how many messages a second refill the bucket.
	Rate float64
	// Burst is the bucket's size: how many messages a device that was
	// quiet may send at once.
	Burst int
}

// String is the budget as RATE/BURST, e.g. "2/60" (flag.Value).
func (b *Budget) String() string {
	return strconv.FormatFloat(b.Rate, 'f', -1, 64) + "/" + strconv.Itoa(b.Burst)
}

// Set parses RATE/BURST (flag.Value): RATE messages a second (above 0,
// a fraction allowed), BURST at once (at least 1).
func (b *Budget) Set(s string) error {
	r, n, ok := strings.Cut(s, "/")
	if !ok {
		return fmt.Errorf("budget %q: want RATE/BURST, e.g. 2/60", s)
	}
	rate, err := strconv.ParseFloat(r, 64)
	if err != nil {
		return fmt.Errorf("budget %q: rate: %w", s, err)
	}
	if !(rate > 0) || rate > 1e9 {
		return fmt.Errorf("budget %q: the rate (a second) must be above 0", s)
	}
	burst, err := strconv.Atoi(n)
	if err != nil {
		return fmt.Errorf("budget %q: burst: %w", s, err)
	}
	if burst < 1 {
		return fmt.Errorf("budget %q: the burst must be at least 1", s)
	}
	b.Rate, b.Burst = rate, burst
	return nil
}

// The default budgets, well above a real device's worst honest use. A
// busy evening is a citizen every few seconds, each with one
// verification or a few (a mistyped PIN, a date of birth); a staff member
// logs in now and then: 2 a second sustained is several times that, and
// 60 at once is more than a queue of citizens can type. A citizen's
// pickup makes a handful of events (verified, door opened and closed,
// collected): 10 a second sustained is several times a busy evening, and
// 600 at once lets a kluisd that was offline for a while replay its
// journal in one go; a longer journal drains at the rate (kluisd sends an
// unacknowledged event again, by default 30 s later), none is lost;
// kluisd paces its sending under it (controller/link.DefaultEventPace).
// Alarms and their clearing (wire.EventKind.Urgent) spend a budget of
// their own, so that a backlog spending the event budget holds back no
// alarm: a device raises a few an hour at worst, and 60 at once covers
// every door of a locker forced at once; 1 a second is what a stolen
// password can add to the event budget with them, no more. Command
// results answer the backend's own commands, one each, and share the
// verify budget's values.
const (
	DefaultVerifyRate  = 2.0
	DefaultVerifyBurst = 60
	DefaultEventRate   = 10.0
	DefaultEventBurst  = 600
	DefaultAlarmRate   = 1.0
	DefaultAlarmBurst  = 60
	DefaultResultRate  = 2.0
	DefaultResultBurst = 60
	// DefaultThrottleQuiet ends an episode of a device over budget: the
	// next refusal after this long without one starts a new episode (a
	// new audit record and a new first warning).
	DefaultThrottleQuiet = 10 * time.Minute
	// throttleLogEvery is how often a device still over budget is logged
	// again (with the refusals since the last line).
	throttleLogEvery = time.Minute
	// sweepEvery is how many budget checks pass between sweeps of the
	// devices whose buckets are full again (no longer worth remembering).
	sweepEvery = 4096
)

// DefaultVerifyBudget bounds a device's verify and staff requests.
func DefaultVerifyBudget() Budget { return Budget{Rate: DefaultVerifyRate, Burst: DefaultVerifyBurst} }

// DefaultEventBudget bounds a device's events but its alarms.
func DefaultEventBudget() Budget { return Budget{Rate: DefaultEventRate, Burst: DefaultEventBurst} }

// DefaultAlarmBudget bounds a device's alarms and their clearing.
func DefaultAlarmBudget() Budget { return Budget{Rate: DefaultAlarmRate, Burst: DefaultAlarmBurst} }

// DefaultResultBudget bounds a device's command results.
func DefaultResultBudget() Budget { return Budget{Rate: DefaultResultRate, Burst: DefaultResultBurst} }

// budgetKind is which of a device's budgets a message spends.
type budgetKind uint8

const (
	budgetVerify budgetKind = iota // verify/req and staff/req
	budgetEvent                    // event (but alarms)
	budgetAlarm                    // event of an urgent kind: alarm, alarm_cleared
	budgetResult                   // cmdres
	budgetKinds
)

func (k budgetKind) String() string {
	switch k {
	case budgetEvent:
		return "event"
	case budgetAlarm:
		return "alarm"
	case budgetResult:
		return "cmdres"
	}
	return "verify"
}

type bucketKey struct {
	device string
	kind   budgetKind
}

// bucket is one device's budget of one kind, and its episode over budget.
type bucket struct {
	tokens tokenbucket.Bucket
	// refusedAt is the last refusal (zero: none); an episode lasts while
	// refusals come less than quiet apart.
	refusedAt time.Time
	// since is the episode's start; refused counts the refusals since
	// the last log line, at loggedAt.
	since    time.Time
	refused  int
	loggedAt time.Time
}

// verdict is what a budget check decided, and what to tell about it.
type verdict struct {
	ok bool
	// started: this refusal begins an episode (log, count, audit once).
	started bool
	// report: the episode goes on and is due another log line, with
	// refused refusals since the last one and the episode's start.
	report  bool
	refused int
	since   time.Time
}

// budgets keeps every device's token buckets. Its size is bounded by the
// devices that sent something lately: a bucket that is full again, with
// no episode going on, is swept (it is the same as a fresh one).
type budgets struct {
	of    [budgetKinds]Budget
	quiet time.Duration

	mu      sync.Mutex
	buckets map[bucketKey]*bucket
	checks  int
}

func newBudgets(of [budgetKinds]Budget, quiet time.Duration) *budgets {
	return &budgets{of: of, quiet: quiet, buckets: map[bucketKey]*bucket{}}
}

// spend takes one token of device's kind budget at now.
func (b *budgets) spend(device string, kind budgetKind, now time.Time) verdict {
	bud := b.of[kind]
	b.mu.Lock()
	defer b.mu.Unlock()
	b.checks++
	if b.checks%sweepEvery == 0 {
		b.sweepLocked(now)
	}
	k := bucketKey{device, kind}
	bk := b.buckets[k]
	if bk == nil {
		bk = &bucket{tokens: tokenbucket.New(bud.Rate, bud.Burst)}
		b.buckets[k] = bk
	}
	if bk.tokens.Take(now) {
		return verdict{ok: true}
	}
	v := verdict{}
	if bk.refusedAt.IsZero() || now.Sub(bk.refusedAt) >= b.quiet {
		bk.since, bk.loggedAt, bk.refused = now, now, 0
		v.started = true
	} else {
		bk.refused++
		if now.Sub(bk.loggedAt) >= throttleLogEvery {
			v.report, v.refused = true, bk.refused
			bk.loggedAt, bk.refused = now, 0
		}
	}
	bk.refusedAt = now
	v.since = bk.since
	return v
}

// sweepLocked forgets the buckets that are full again at now and whose
// episode (if any) is over.
func (b *budgets) sweepLocked(now time.Time) {
	for k, bk := range b.buckets {
		if bk.tokens.Full(now) && (bk.refusedAt.IsZero() || now.Sub(bk.refusedAt) >= b.quiet) {
			delete(b.buckets, k)
		}
	}
}

// throttled reports how many devices are in an episode over budget of
// kind at now.
func (b *budgets) throttled(kind budgetKind, now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for k, bk := range b.buckets {
		if k.kind == kind && !bk.refusedAt.IsZero() && now.Sub(bk.refusedAt) < b.quiet {
			n++
		}
	}
	return n
}

// size is the number of buckets remembered.
func (b *budgets) size() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buckets)
}
