package codes

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/controller/pickupcode"
	"kluis/deploy/dev/testenv"
)

// moreDevices adds devices d1..dn to the fixture's site, one compartment
// each.
func (f *fixture) moreDevices(n int) []string {
	f.t.Helper()
	ctx := context.Background()
	var ids []string
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("d%d", i)
		_, err := f.pool.Exec(ctx, `INSERT INTO devices (id, site_id, kind, created_at) VALUES ($1, 'kortrijk', 'locker', now())`, id)
		require.NoError(f.t, err)
		_, err = f.pool.Exec(ctx, `INSERT INTO compartments (device_id, number, board, channel, size, height_cm) VALUES ($1, 1, 0, 0, 'M', 30)`, id)
		require.NoError(f.t, err)
		ids = append(ids, id)
	}
	return ids
}

// devicesWithCodes adds n devices (moreDevices), issues a code for a
// document in each and gives each device its code_devices row, as a
// first (wrong) attempt does: the batch leaves a new device's attempt
// alone. It returns the devices, the documents and their QR tokens.
func (f *fixture) devicesWithCodes(n int) (devs, docs, tokens []string) {
	f.t.Helper()
	devs = f.moreDevices(n)
	for _, d := range devs {
		doc, _, cr := f.issue("driving_licence", d, 1)
		tokens, docs = append(tokens, cr.QRToken), append(docs, doc)
		_, err := f.verify(Attempt{DeviceID: d, QRToken: "K1.not-a-token"})
		require.ErrorIs(f.t, err, pickupcode.ErrWrongCode)
	}
	return devs, docs, tokens
}

// item is a batch entry for a QR attempt, looked up as Verify does.
func (f *fixture) item(dev, token string) *batchItem {
	f.t.Helper()
	a := Attempt{DeviceID: dev, QRToken: token}
	look := f.svc.lookup(a, "qr", f.svc.clock())
	require.Nil(f.t, look.early, "a token whose signature holds")
	return &batchItem{a: a, look: look, id: look.args[0].([]byte), done: make(chan struct{})}
}

// counts returns the number of used codes, attempts, and audit records
// (pending or chained) of the given action.
func (f *fixture) counts(action string) (used, attempts, records int) {
	f.t.Helper()
	ctx := context.Background()
	require.NoError(f.t, f.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM codes WHERE used_at IS NOT NULL),
		(SELECT count(*) FROM code_attempts),
		(SELECT count(*) FROM audit_pending WHERE action = $1) + (SELECT count(*) FROM audit_log WHERE action = $1)`, action).
		Scan(&used, &attempts, &records))
	return used, attempts, records
}

// batchWrites counts what a batch writes: used codes, attempt rows, audit
// records waiting for the chainer.
type batchWrites struct{ used, attempts, pending int }

func (f *fixture) writes() batchWrites {
	f.t.Helper()
	var w batchWrites
	require.NoError(f.t, f.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM codes WHERE used_at IS NOT NULL),
		(SELECT count(*) FROM code_attempts), (SELECT count(*) FROM audit_pending)`).Scan(&w.used, &w.attempts, &w.pending))
	return w
}

// chainIntact checks the audit chain (what kluisctl audit verify does).
func (f *fixture) chainIntact() {
	f.t.Helper()
	rep, err := audit.Verify(context.Background(), f.pool)
	require.NoError(f.t, err)
	require.True(f.t, rep.OK(), rep.String())
}

// tally counts the outcomes of verifications made at once: the claims
// by code (an index of the test's) and the denials by reason.
type tally struct {
	mu      sync.Mutex
	wins    map[int]int
	reasons map[string]int
}

func newTally() *tally { return &tally{wins: map[int]int{}, reasons: map[string]int{}} }

// add counts one verification of code c that ended with err.
func (ta *tally) add(t *testing.T, c int, err error) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	if err == nil {
		ta.wins[c]++
		return
	}
	var d *Denial
	if !errors.As(err, &d) {
		t.Errorf("not a denial: %v", err)
		return
	}
	ta.reasons[pickupcode.Reason(err)]++
}

func TestBatchConcurrentClaimsOfOneCode(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, _, cr := f.issue("driving_licence", "l1", 7)
	_, _, other := f.issue("driving_licence", "l2", 1)
	// Both devices have their rows: every attempt can go into a batch.
	_, err := f.verify(Attempt{DeviceID: "l2", QRToken: other.QRToken})
	require.NoError(t, err)
	const n = 16
	var (
		wg sync.WaitGroup
		ta = newTally()
	)
	for i := 0; i < 2*n; i++ {
		dev := []string{"l1", "l2"}[i%2] // l2 is the wrong device for the token
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.verify(Attempt{DeviceID: dev, QRToken: cr.QRToken})
			ta.add(t, 0, err)
		}()
	}
	wg.Wait()
	require.Equal(t, map[int]int{0: 1}, ta.wins, "exactly one attempt claims the code")
	require.Equal(t, map[string]int{pickupcode.ReasonAlreadyCollected: n - 1, pickupcode.ReasonWrongDevice: n}, ta.reasons)
	used, attempts, denied := f.counts("code.denied")
	require.Equal(t, 2, used)
	require.Equal(t, 2*n+1, attempts, "every attempt recorded")
	require.Equal(t, 2*n-1, denied, "every denial audited")
	_, _, granted := f.counts("code.used")
	require.Equal(t, 2, granted)
	f.chainIntact()
}

func TestBatchOfMixedCodes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	devs, docs, tokens := f.devicesWithCodes(4)
	// d2's code is used already, d3's expired (its document's deadline
	// moved, the code with it), d4's revoked by a re-issue.
	_, err := f.verify(Attempt{DeviceID: devs[1], QRToken: tokens[1]})
	require.NoError(t, err)
	_, err = f.pool.Exec(ctx, `UPDATE codes SET expires_at = $2 WHERE device_id = $1`, devs[2], f.clock.Now().Add(-time.Minute))
	require.NoError(t, err)
	_, err = f.pool.Exec(ctx, `UPDATE codes SET revoked_at = $2 WHERE device_id = $1`, devs[3], f.clock.Now())
	require.NoError(t, err)
	used0, attempts0, _ := f.counts("")

	items := []*batchItem{f.item(devs[0], tokens[0]), f.item(devs[1], tokens[1]), f.item(devs[2], tokens[2]), f.item(devs[3], tokens[3])}
	require.NoError(t, f.svc.claimBatch(ctx, items))
	for _, it := range items {
		require.False(t, it.alone, it.a.DeviceID)
	}
	require.NoError(t, items[0].out.err)
	require.Equal(t, docs[0], items[0].res.DocumentID)
	require.ErrorIs(t, items[1].out.err, pickupcode.ErrAlreadyCollected)
	require.True(t, items[1].out.pending, "used, the document still loaded: pending")
	require.ErrorIs(t, items[2].out.err, pickupcode.ErrExpired)
	require.ErrorIs(t, items[3].out.err, pickupcode.ErrWrongCode)

	used, attempts, _ := f.counts("")
	require.Equal(t, used0+1, used, "the good code alone was claimed")
	require.Equal(t, attempts0+4, attempts)
	var reasons []string
	require.NoError(t, pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT reason FROM code_attempts ORDER BY id DESC LIMIT 4`)
		if err != nil {
			return err
		}
		reasons, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	}))
	require.ElementsMatch(t, []string{"ok", "already_collected", "expired", "wrong_code"}, reasons)
	recs, err := audit.List(ctx, f.pool, audit.ListOptions{})
	require.NoError(t, err)
	byDevice := map[string]string{}
	for _, r := range recs[len(recs)-4:] {
		byDevice[r.Actor] = r.Action
	}
	require.Equal(t, map[string]string{"device:d1": "code.used", "device:d2": "code.denied", "device:d3": "code.denied",
		"device:d4": "code.denied"}, byDevice, "every verification and denial audited")
	f.chainIntact()

	// A device without a row yet, and a code that is not there, go alone.
	items = []*batchItem{f.item("l1", f.sign("l1", make([]byte, pickupcode.CodeIDSize))),
		f.item(devs[0], f.sign(devs[0], make([]byte, pickupcode.CodeIDSize)))}
	require.NoError(t, f.svc.claimBatch(ctx, items))
	require.True(t, items[0].alone)
	require.True(t, items[1].alone)
	_, attempts2, _ := f.counts("")
	require.Equal(t, attempts, attempts2, "nothing recorded for them in the batch")
}

// sign makes a token for a code id that was never issued.
func (f *fixture) sign(dev string, id []byte) string {
	f.t.Helper()
	tok, err := pickupcode.SignToken(f.keys.Signing, pickupcode.Claims{Version: 1, CodeID: pickupcode.FormatCodeID(id),
		DeviceID: dev, Expires: f.clock.Now().Add(time.Hour).Unix()})
	require.NoError(f.t, err)
	return tok
}

func TestBatchFailsAsAWhole(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	devs, _, tokens := f.devicesWithCodes(3)
	used0, _, _ := f.counts("")
	before := f.writes()
	// The database refuses d2's attempt row: after the codes were marked
	// used in the same transaction.
	_, err := f.pool.Exec(ctx, `CREATE FUNCTION refuse_d2() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.device_id = 'd2' THEN RAISE EXCEPTION 'refused for the test'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_d2 BEFORE INSERT ON code_attempts FOR EACH ROW EXECUTE FUNCTION refuse_d2()`)
	require.NoError(t, err)
	items := []*batchItem{f.item(devs[0], tokens[0]), f.item(devs[1], tokens[1]), f.item(devs[2], tokens[2])}
	err = f.svc.claimBatch(ctx, items)
	require.ErrorContains(t, err, "refused for the test")
	require.Equal(t, before, f.writes(), "no code claimed, no attempt recorded, no audit record")

	// Through Verify: every attempt of the failed batch gets the error,
	// none is a denial, none is claimed.
	var wg sync.WaitGroup
	errs := make([]error, len(devs))
	for i := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.verify(Attempt{DeviceID: devs[i], QRToken: tokens[i]})
		}()
	}
	wg.Wait()
	require.Error(t, errs[1])
	for _, err := range errs {
		var d *Denial
		require.False(t, errors.As(err, &d), "an infrastructure failure is not a denial: %v", err)
	}
	// The batch's connection went back clean (or was dropped): with the
	// trigger gone, each code is still there to claim once.
	_, err = f.pool.Exec(ctx, `DROP TRIGGER refuse_d2 ON code_attempts`)
	require.NoError(t, err)
	for i, d := range devs {
		if errs[i] == nil {
			continue // its batch did not hold d2's attempt
		}
		_, err := f.verify(Attempt{DeviceID: d, QRToken: tokens[i]})
		require.NoError(t, err, d)
	}
	used, _, _ := f.counts("")
	require.Equal(t, used0+len(devs), used)
	require.Positive(t, testutil.ToFloat64(f.svc.batches.WithLabelValues("error")))
	f.chainIntact()
}

func TestBatchGathersWhileOneRuns(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	devs, _, tokens := f.devicesWithCodes(8)
	batches0 := testutil.ToFloat64(f.svc.batches.WithLabelValues("ok"))
	batched0 := testutil.ToFloat64(f.svc.batched)
	waited0, took0 := histogram(t, f.svc.waited), histogram(t, f.svc.batchDur)
	stages0 := map[string]*dto.Histogram{}
	for _, st := range []string{"connect", "read", "decide", "write"} {
		stages0[st] = histogram(t, f.svc.batchStage.WithLabelValues(st).(prometheus.Histogram))
	}
	// Hold the audit queue: the first batch waits in its writes.
	hold, err := f.pool.Begin(ctx)
	require.NoError(t, err)
	// Released first on any failure below, so that the blocked attempts
	// end and the pool can close (a failed check used to hang here).
	t.Cleanup(func() { _ = hold.Rollback(context.Background()) })
	_, err = hold.Exec(ctx, `LOCK TABLE audit_pending IN EXCLUSIVE MODE`)
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make([]error, len(devs))
	verify := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.verify(Attempt{DeviceID: devs[i], QRToken: tokens[i]})
		}()
	}
	verify(0)
	queued := func() int {
		f.svc.batch.mu.Lock()
		defer f.svc.batch.mu.Unlock()
		return len(f.svc.batch.queue)
	}
	// The first batch has taken its attempt when its writes wait for the
	// held lock (an empty queue alone may be seen before the attempt was
	// even queued, and the others would then join the first batch).
	blocked := func() bool {
		var n int
		err := f.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%audit_pending%'`).Scan(&n)
		return err == nil && n > 0
	}
	testenv.EventuallyWithin(t, 10*time.Second, "the first batch took its attempt", func() bool { return queued() == 0 && blocked() })
	heldFrom := time.Now() // the first batch's writes wait from before now
	for i := 1; i < len(devs); i++ {
		verify(i)
	}
	testenv.EventuallyWithin(t, 10*time.Second, "the others wait for the next batch", func() bool { return queued() == len(devs)-1 })
	time.Sleep(100 * time.Millisecond) // held long enough to show in the write stage
	held := time.Since(heldFrom)
	require.NoError(t, hold.Rollback(ctx))
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, 2.0, testutil.ToFloat64(f.svc.batches.WithLabelValues("ok"))-batches0, "one batch, then one for the rest")
	require.Equal(t, float64(len(devs)), testutil.ToFloat64(f.svc.batched)-batched0)
	waited, took := histogram(t, f.svc.waited), histogram(t, f.svc.batchDur)
	require.Equal(t, uint64(len(devs)), waited.GetSampleCount()-waited0.GetSampleCount(), "every attempt's wait for its batch")
	require.Equal(t, uint64(2), took.GetSampleCount()-took0.GetSampleCount(), "each batch's transaction")
	require.Greater(t, waited.GetSampleSum()-waited0.GetSampleSum(), 0.0)
	require.Greater(t, took.GetSampleSum()-took0.GetSampleSum(), 0.0)
	// Each batch's stages, the held writes in the write stage.
	stages := map[string]float64{}
	for st, h0 := range stages0 {
		h := histogram(t, f.svc.batchStage.WithLabelValues(st).(prometheus.Histogram))
		require.Equal(t, uint64(2), h.GetSampleCount()-h0.GetSampleCount(), "each batch's %s stage", st)
		stages[st] = h.GetSampleSum() - h0.GetSampleSum()
	}
	// The first batch's writes were blocked before heldFrom and ran on
	// after the rollback: its write stage holds at least the time held
	// (compared with the other stages, it was not: under load a connect
	// or a read can take longer than the hold).
	require.GreaterOrEqual(t, stages["write"], held.Seconds(), "the writes waited for the held lock (held %v): %v", held, stages)
	require.InDelta(t, took.GetSampleSum()-took0.GetSampleSum(), stages["connect"]+stages["read"]+stages["decide"]+stages["write"], 0.05,
		"the stages make up the batches' transactions")
}

// histogram reads a histogram's count and sum.
func histogram(t *testing.T, h prometheus.Histogram) *dto.Histogram {
	t.Helper()
	var m dto.Metric
	require.NoError(t, h.Write(&m))
	return m.GetHistogram()
}

func TestBatchIsNotHeldUpByABusyDevice(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	devs, _, tokens := f.devicesWithCodes(2)
	// Another transaction holds d1's row (an issue on that device, say).
	hold, err := f.pool.Begin(ctx)
	require.NoError(t, err)
	_, err = hold.Exec(ctx, `SELECT 1 FROM code_devices WHERE device_id = 'd1' FOR NO KEY UPDATE`)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := f.verify(Attempt{DeviceID: devs[0], QRToken: tokens[0]})
		done <- err
	}()
	// d2's verification is answered while d1's waits for its lock alone.
	_, err = f.verify(Attempt{DeviceID: devs[1], QRToken: tokens[1]})
	require.NoError(t, err)
	select {
	case err := <-done:
		t.Fatalf("d1 answered while its row was held: %v", err)
	default:
	}
	require.NoError(t, hold.Rollback(ctx))
	require.NoError(t, <-done, "then d1's code is claimed")
	used, _, _ := f.counts("")
	require.Equal(t, 2, used)
}

// TestBatchWaitersGiveUpWhileQueued: attempts queued behind a running
// batch whose contexts end leave the queue untouched (nothing claimed,
// nothing recorded); the others are answered in the next batch.
func TestBatchWaitersGiveUpWhileQueued(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.svc.batch.concurrent = 1 // one batch at a time: the others queue
	devs, _, tokens := f.devicesWithCodes(9)
	_, attempts0, _ := f.counts("")
	batches0 := testutil.ToFloat64(f.svc.batches.WithLabelValues("ok"))
	hold, err := f.pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = hold.Rollback(context.Background()) })
	_, err = hold.Exec(ctx, `LOCK TABLE audit_pending IN EXCLUSIVE MODE`)
	require.NoError(t, err)
	queued := func() int {
		f.svc.batch.mu.Lock()
		defer f.svc.batch.mu.Unlock()
		return len(f.svc.batch.queue)
	}
	blocked := func() bool {
		var n int
		err := f.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%audit_pending%'`).Scan(&n)
		return err == nil && n > 0
	}
	var wg sync.WaitGroup
	errs := make([]error, len(devs))
	cancels := make([]context.CancelFunc, len(devs))
	verify := func(i int) {
		vctx, cancel := context.WithCancel(ctx)
		cancels[i] = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.svc.Verify(vctx, Attempt{DeviceID: devs[i], QRToken: tokens[i]})
		}()
	}
	verify(0)
	testenv.EventuallyWithin(t, 10*time.Second, "the first batch waits in its writes", func() bool { return queued() == 0 && blocked() })
	for i := 1; i < len(devs); i++ {
		verify(i)
	}
	testenv.EventuallyWithin(t, 10*time.Second, "the others are queued", func() bool { return queued() == len(devs)-1 })
	// The waiters 1, 3, 5, 7 give up (among them the oldest).
	for i := 1; i < len(devs); i += 2 {
		cancels[i]()
	}
	testenv.EventuallyWithin(t, 10*time.Second, "those who gave up left the queue", func() bool { return queued() == len(devs)/2 })
	require.NoError(t, hold.Rollback(ctx))
	wg.Wait()
	for i, err := range errs {
		if i%2 == 1 {
			require.ErrorIs(t, err, context.Canceled, "attempt %d", i)
		} else {
			require.NoError(t, err, "attempt %d", i)
		}
		cancels[i]()
	}
	used, attempts, _ := f.counts("")
	require.Equal(t, len(devs)/2+1, used, "the codes of those who waited, and no other")
	require.Equal(t, len(devs)/2+1, attempts-attempts0, "only their attempts recorded")
	require.Equal(t, 2.0, testutil.ToFloat64(f.svc.batches.WithLabelValues("ok"))-batches0, "the first batch, then one for the rest")
	f.noLeaderLeft()
	// Those who gave up claim their codes now.
	for i := 1; i < len(devs); i += 2 {
		_, err := f.verify(Attempt{DeviceID: devs[i], QRToken: tokens[i]})
		require.NoError(t, err, "attempt %d again", i)
	}
}

// TestBatchLeadersUnderCancellation: many attempts at once, each with a
// deadline that may end at any point; every one is either answered (and
// its code claimed) or ends with its context's error (nothing claimed,
// nothing recorded), and no batch leader is left behind.
func TestBatchLeadersUnderCancellation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	devs, _, tokens := f.devicesWithCodes(24)
	_, attempts0, _ := f.counts("")
	var wg sync.WaitGroup
	errs := make([]error, len(devs))
	for i := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%6)*time.Millisecond)
			defer cancel()
			_, errs[i] = f.svc.Verify(ctx, Attempt{DeviceID: devs[i], QRToken: tokens[i]})
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		if err == nil {
			ok++
			continue
		}
		require.ErrorIs(t, err, context.DeadlineExceeded, "attempt %d", i)
	}
	used, attempts, _ := f.counts("")
	require.Equal(t, ok, used, "a code claimed for every answered attempt, and no other")
	require.Equal(t, ok, attempts-attempts0, "an attempt recorded for every answered one, and no other")
	f.noLeaderLeft()
	for i, err := range errs {
		if err != nil {
			_, err := f.verify(Attempt{DeviceID: devs[i], QRToken: tokens[i]})
			require.NoError(t, err, "attempt %d again", i)
		}
	}
}

// noLeaderLeft waits until the batcher has no leader and an empty
// queue (a leader leaves after it has answered its last batch).
func (f *fixture) noLeaderLeft() {
	f.t.Helper()
	testenv.EventuallyWithin(f.t, 10*time.Second, "no batch leader left, nothing queued", func() bool {
		f.svc.batch.mu.Lock()
		defer f.svc.batch.mu.Unlock()
		return f.svc.batch.running == 0 && len(f.svc.batch.queue) == 0
	})
}

// holdWrites makes every insert into code_attempts (a batch's writes,
// sent with its commit) wait until the returned function (also run at
// cleanup) releases them: a trigger takes a shared advisory lock the test
// holds. Unlike a lock on a table, it does not hold up the preparation
// of a connection's first batch (which pgx sends before the batch).
func (f *fixture) holdWrites() (release func()) {
	f.t.Helper()
	ctx := context.Background()
	_, err := f.pool.Exec(ctx, `CREATE FUNCTION hold_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NULL; END $$;
		CREATE TRIGGER hold_attempts BEFORE INSERT ON code_attempts FOR EACH STATEMENT EXECUTE FUNCTION hold_attempts()`)
	require.NoError(f.t, err)
	conn, err := f.pool.Acquire(ctx)
	require.NoError(f.t, err)
	_, err = conn.Exec(ctx, `SELECT pg_advisory_lock(4242)`)
	require.NoError(f.t, err)
	var once sync.Once
	release = func() {
		once.Do(func() {
			_, err := conn.Exec(context.Background(), `SELECT pg_advisory_unlock(4242)`)
			conn.Release()
			require.NoError(f.t, err)
		})
	}
	f.t.Cleanup(release)
	return release
}

// commitBlocked says whether a transaction waits in holdWrites' trigger
// (a batch's commit, sent).
func (f *fixture) commitBlocked() bool {
	var n int
	err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'`).Scan(&n)
	return err == nil && n > 0
}

// rowWaits counts the transactions that wait for a row lock.
func (f *fixture) rowWaits() int {
	var n int
	err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event IN ('transactionid', 'tuple')`).Scan(&n)
	if err != nil {
		return -1
	}
	return n
}

// rowHeld says whether another transaction holds device dev's
// code_devices row (FOR NO KEY UPDATE, as a batch's first round trip
// takes it).
func (f *fixture) rowHeld(dev string) bool {
	f.t.Helper()
	ctx := context.Background()
	var held bool
	require.NoError(f.t, pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		var n int
		err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM code_devices WHERE device_id = $1
			FOR NO KEY UPDATE SKIP LOCKED) t`, dev).Scan(&n)
		held = n == 0
		return err
	}))
	return held
}

func (f *fixture) queued() int {
	f.svc.batch.mu.Lock()
	defer f.svc.batch.mu.Unlock()
	return len(f.svc.batch.queue)
}

// TestBatchClaimsOfFewCodes: many attempts at once on few codes, from
// their own devices and from others: exactly one claim per code, every
// attempt recorded and audited, the chain intact, no leader left.
func TestBatchClaimsOfFewCodes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	devs, _, tokens := f.devicesWithCodes(4)
	_, attempts0, denied0 := f.counts("code.denied")
	const rounds = 12
	var (
		wg sync.WaitGroup
		ta = newTally()
	)
	for r := 0; r < rounds; r++ {
		for c := range tokens {
			for _, d := range []int{c, (c + 1) % len(devs)} { // its own device, then the wrong one
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := f.verify(Attempt{DeviceID: devs[d], QRToken: tokens[c]})
					ta.add(t, c, err)
				}()
			}
		}
	}
	wg.Wait()
	require.Equal(t, map[int]int{0: 1, 1: 1, 2: 1, 3: 1}, ta.wins, "one claim per code")
	require.Equal(t, map[string]int{pickupcode.ReasonAlreadyCollected: (rounds - 1) * len(tokens),
		pickupcode.ReasonWrongDevice: rounds * len(tokens)}, ta.reasons)
	n := 2 * rounds * len(tokens)
	used, attempts, denied := f.counts("code.denied")
	require.Equal(t, len(tokens), used)
	require.Equal(t, n, attempts-attempts0, "every attempt recorded")
	_, _, granted := f.counts("code.used")
	require.Equal(t, len(tokens), granted)
	require.Equal(t, n-len(tokens), denied-denied0, "every denial audited")
	f.noLeaderLeft()
	f.chainIntact()
}

// TestBatchVerifyLeaders: Options.VerifyLeaders, read per attempt,
// overrides VerifyBatches: with 2, a second batch runs while the first
// one's writes wait; with 1 (the default), the second attempt waits in the
// queue.
func TestBatchVerifyLeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.svc.batch.timeout = 2 * time.Minute
	var leaders atomic.Int32
	f.svc.batch.leaders = func() int { return int(leaders.Load()) }
	devs, _, tokens := f.devicesWithCodes(3)
	release := f.holdWrites()
	waiting := func() int {
		var n int
		require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'`).Scan(&n))
		return n
	}
	errs := make(chan error, len(devs))
	verify := func(i int) {
		go func() {
			_, err := f.verify(Attempt{DeviceID: devs[i], QRToken: tokens[i]})
			errs <- err
		}()
	}
	leaders.Store(2)
	verify(0)
	testenv.EventuallyWithin(t, 10*time.Second, "the first batch's writes wait", func() bool { return waiting() == 1 })
	verify(1)
	testenv.EventuallyWithin(t, 10*time.Second, "a second batch runs beside it", func() bool { return waiting() == 2 })
	leaders.Store(0) // VerifyBatches: 1
	verify(2)
	testenv.EventuallyWithin(t, 10*time.Second, "the third attempt is queued", func() bool { return f.queued() == 1 })
	require.Equal(t, 2, waiting())
	release()
	for range devs {
		require.NoError(t, <-errs)
	}
	f.noLeaderLeft()
}
