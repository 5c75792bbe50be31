package link

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/journal"
	"kluis/deploy/dev/testenv"
)

// backlog journals n events of kind (ids k-0000 ...) into a real journal
// whose urgent lane is Urgent's, as kluisd's.
func backlog(t *testing.T, j *journal.Journal, kind string, n int, at time.Time) []string {
	t.Helper()
	var ids []string
	for i := range n {
		e, err := j.AppendEvent(journal.Event{ID: fmt.Sprintf("%s-%05d", kind, j.OutboxLen()), Kind: kind, At: at.Add(time.Duration(i) * time.Millisecond)})
		require.NoError(t, err)
		ids = append(ids, e.ID)
	}
	return ids
}

func openJournal(t *testing.T) *journal.Journal {
	t.Helper()
	return openJournalIn(t, t.TempDir())
}

// openJournalIn is openJournal in dir.
func openJournalIn(t *testing.T, dir string) *journal.Journal {
	t.Helper()
	j, _, _, err := journal.Open(journal.Options{Dir: dir, DeviceID: "dev-w", Reserve: -1, Urgent: Urgent})
	require.NoError(t, err)
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func sentIDs(ss []send) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ev.ID)
	}
	return out
}

// A long backlog is not published at once: a window of the oldest
// events goes out, the next ones as acks come back, and nothing more
// while no ack comes; an event in flight is published again after
// resendAfter, and only those.
func TestWindowBoundsWhatIsInFlight(t *testing.T) {
	j := openJournal(t)
	t0 := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	ids := backlog(t, j, "door_opened", 1000, t0)
	w := newWindow(Pace{Window: 100, Rate: 8, Burst: 200}, DefaultAlarmPace, 30*time.Second)

	out, wait := w.plan(t0, j)
	require.Equal(t, ids[:100], sentIDs(out), "the window's worth, oldest first")
	assert.Zero(t, wait-30*time.Second, "nothing to do until the resend is due (or an ack)")
	out, _ = w.plan(t0.Add(time.Second), j)
	assert.Empty(t, out, "no ack, no more")

	for _, id := range ids[:10] {
		require.True(t, w.acked(id))
		_, err := j.Ack(id)
		require.NoError(t, err)
	}
	out, _ = w.plan(t0.Add(2*time.Second), j)
	require.Equal(t, ids[100:110], sentIDs(out), "ten acks, ten more")
	assert.Equal(t, 100, w.inFlight(laneEvent))

	out, _ = w.plan(t0.Add(30*time.Second), j)
	require.Equal(t, ids[10:100], sentIDs(out), "the overdue ones again, oldest first")
	for _, s := range out {
		assert.True(t, s.resend)
	}
	out, _ = w.plan(t0.Add(32*time.Second), j)
	require.Equal(t, ids[100:110], sentIDs(out))

	out, wait = w.plan(t0.Add(-time.Hour), j) // the clock set back an hour
	assert.Empty(t, out)
	assert.Equal(t, 30*time.Second, wait, "the resend due resendAfter later, not an hour")
	out, _ = w.plan(t0.Add(-time.Hour+30*time.Second), j)
	assert.Len(t, out, 100, "all in flight sent again")

	w.reset() // a new connection
	out, _ = w.plan(t0.Add(33*time.Second), j)
	require.Len(t, out, 100)
	require.Equal(t, ids[10], out[0].ev.ID, "everything unacknowledged again, oldest first")
}

// Acked as soon as published, the window's pace stays under the
// backend's default event budget (10 a second, 600 at once): a bucket
// of that size, full at the start, refuses nothing over a simulated hour,
// and the backlog drains at the pace's rate. Also for three busy days
// offline (10,000 events: about 800 pickups and loads a day, 4 events
// each): about 20 minutes (logged), no refusal, nothing sent again.
func TestWindowPaceStaysUnderTheBackendBudget(t *testing.T) {
	for _, c := range []struct{ events, alarms int }{{1500, 60}, {10000, 20}} {
		t.Run(fmt.Sprint(c.events), func(t *testing.T) { paceUnderBudget(t, c.events, c.alarms) })
	}
}

func paceUnderBudget(t *testing.T, events, alarms int) {
	// 20,000 fdatasyncs (each event and its ack) on a tmpfs when there
	// is one: the drain is simulated, the disk's speed says nothing.
	j := openJournalIn(t, testenv.TmpfsDir(t, "kluis-window-"))
	t0 := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	backlog(t, j, "door_opened", events, t0)
	backlog(t, j, "alarm", alarms, t0)
	w := newWindow(DefaultEventPace, DefaultAlarmPace, 30*time.Second)
	type bucket struct{ tokens, rate, burst float64 }
	backend := map[int]*bucket{laneEvent: {600, 10, 600}, laneAlarm: {60, 1, 60}} // devicelink's defaults
	now, last := t0, t0
	sent := map[int]int{}
	for step := 0; step < 100000 && now.Sub(t0) < time.Hour; step++ {
		out, wait := w.plan(now, j)
		for _, b := range backend {
			b.tokens = min(b.burst, b.tokens+now.Sub(last).Seconds()*b.rate)
		}
		last = now
		for _, s := range out {
			b := backend[s.lane]
			require.GreaterOrEqual(t, b.tokens, 1.0, "refused by the backend at %v (%s lane)", now.Sub(t0), laneName(s.lane))
			b.tokens--
			sent[s.lane]++
			w.acked(s.ev.ID)
			_, err := j.Ack(s.ev.ID)
			require.NoError(t, err)
		}
		if j.OutboxLen() == 0 {
			break
		}
		if len(out) > 0 {
			continue // the acks made room: plan again at once, as an ack wakes the link
		}
		require.Positive(t, wait, "a backlog left: plan says when to look again")
		now = now.Add(wait)
	}
	assert.Zero(t, j.OutboxLen(), "drained within the hour")
	assert.Equal(t, events, sent[laneEvent], "each sent once")
	assert.Equal(t, alarms, sent[laneAlarm])
	drain := now.Sub(t0)
	assert.InDelta(t, (float64(events)-200)/8, drain.Seconds(), 60, "the events drain at the pace's rate: %v", drain)
	t.Logf("%d events and %d alarms drained in %v (simulated), none refused by the backend's default budget", events, alarms, drain.Round(time.Second))
}

// Alarms go ahead of the backlog: an alarm journaled behind a long backlog
// is published at the next plan even with the event window full and its
// tokens spent, and alarms keep their order among themselves.
func TestWindowAlarmsGoFirst(t *testing.T) {
	j := openJournal(t)
	t0 := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	backlog(t, j, "door_opened", 1000, t0)
	w := newWindow(DefaultEventPace, DefaultAlarmPace, 30*time.Second)
	out, _ := w.plan(t0, j)
	require.Len(t, out, 100)
	alarms := backlog(t, j, "alarm", 1, t0.Add(time.Minute))
	alarms = append(alarms, backlog(t, j, "alarm_cleared", 1, t0.Add(2*time.Minute))...)
	out, _ = w.plan(t0.Add(time.Second), j)
	require.Equal(t, alarms, sentIDs(out), "the alarm and its clearing, in order, nothing of the backlog")
	for _, s := range out {
		assert.Equal(t, laneAlarm, s.lane)
	}
	assert.Equal(t, 2, j.OutboxUrgent())
}

// longJournal is a journal holding n unacknowledged events, appended by
// several writers at once (they share fdatasyncs: group commit).
func longJournal(b *testing.B, n int) *journal.Journal {
	j, _, _, err := journal.Open(journal.Options{Dir: b.TempDir(), DeviceID: "dev-b", Reserve: -1, Urgent: Urgent})
	require.NoError(b, err)
	b.Cleanup(func() { _ = j.Close() })
	const writers = 32
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += writers {
				_, err := j.AppendEvent(journal.Event{ID: fmt.Sprintf("e-%06d", i), Kind: "door_opened", At: time.Now()})
				if err != nil {
					panic(err)
				}
			}
		}()
	}
	wg.Wait()
	return j
}

// BenchmarkPlanAfterAckLongBacklog is what an ack costs the sender with
// 10,000 events waiting: its slot freed, the next event found past the
// window's (docs/performance.md). BenchmarkOutboxCopyLongBacklog is what
// it cost before the window: the whole outbox read at every ack.
func BenchmarkPlanAfterAckLongBacklog(b *testing.B) {
	j := longJournal(b, 10000)
	w := newWindow(Pace{Window: 100, Rate: 1e12, Burst: 1 << 30}, DefaultAlarmPace, time.Hour)
	t0 := time.Now()
	out, _ := w.plan(t0, j)
	require.Len(b, out, 100)
	freed := out[0].ev.ID
	b.ResetTimer()
	for range b.N {
		w.acked(freed)
		out, _ = w.plan(t0, j)
		if len(out) != 1 {
			b.Fatalf("sent %d", len(out))
		}
		freed = out[0].ev.ID
	}
}

func BenchmarkOutboxCopyLongBacklog(b *testing.B) {
	j := longJournal(b, 10000)
	b.ResetTimer()
	for range b.N {
		if len(j.Outbox()) != 10000 {
			b.Fatal("outbox")
		}
	}
}

// A connected link with an empty outbox and no held result has nothing to
// do until an ack, an event or a reconnection: publishOutbox says so (0)
// and the pump waits for a wake. Before, the two "nothing" waits of the
// window and the held results combined into 1 ms, and every idle
// connected kluisd woke a thousand times a second (the fleet bench's
// devices spent their CPU there, which made its first connect slow).
func TestIdleLinkWaitsForAWake(t *testing.T) {
	l, err := New(Options{URL: "tcp://127.0.0.1:1", DeviceID: "dev-idle", Journal: openJournal(t)})
	require.NoError(t, err)
	l.mu.Lock()
	l.connected = true
	l.mu.Unlock()
	assert.Zero(t, l.publishOutbox(), "nothing to do: wait for a wake, not a timer")
}
