package codes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"kluis/backend/audit"
	"kluis/controller/pickupcode"
)

// Batched QR verifications.
//
// A QR attempt whose token's signature holds is decided and recorded in a
// transaction it shares with the QR attempts of other devices that arrived
// meanwhile: one transaction and two round trips for the whole batch
// instead of one transaction and four round trips each. Nobody waits for
// a batch to fill: a batch takes what is queued when a leader is free
// (group commit), so a lone attempt goes alone at once. The transaction
// keeps the single attempt's rules:
//
//   - it locks the batch's code_devices rows (FOR NO KEY UPDATE), then
//     reads and locks the batch's codes, like the single attempt locks its
//     device's row, then its code; but it waits for no lock (SKIP
//     LOCKED): an attempt whose device or code another transaction holds
//     (or whose device has no row yet, or whose code is not there) is left
//     out of the batch and verified alone afterwards, in a transaction of
//     its own that waits, makes the device's row or finds no code, as
//     every attempt did before batching. So a batch is never held up by
//     one busy device, and cannot deadlock;
//   - a batch holds at most one attempt per device and per code (the
//     others wait for a later batch), so every attempt is decided
//     (decideQR) as if it ran alone, on rows nobody else can change until
//     the commit;
//   - the granted codes are marked used in one UPDATE that fails the
//     transaction unless it marked exactly as many rows as were granted;
//     every attempt gets its code_attempts row and its audit record (one
//     INSERT each for the batch), in the same transaction;
//   - any error fails the whole batch: nothing of it commits, every
//     attempt in it gets the error (the kiosk shows "unavailable" and may
//     try again), none is claimed.
//
// PIN attempts, invalid tokens and services with an audit function of
// their own (Options.Audit) are never batched.
//
// Staggered batches (BatchStagger): a batch has two phases, reading
// (taking the queued attempts, a connection, round trip 1, deciding) and
// committing (round trip 2: the writes and the COMMIT with its WAL
// flush). At most Options.VerifyBatches batches read at a time and at most
// as many commit at a time, so at most twice that many overlap (with the
// default of 1: one batch reading while the one before it commits). A
// batch hands the lead on as soon as its second round trip is on the
// wire: the next batch's first round trip runs during the previous
// commit instead of after it, and the batches are not halved as with
// two unstaggered writers. Nothing else changes: the rows the committing
// batch holds are SKIP LOCKED by the next one (those attempts go alone
// and wait for the commit), and the audit records wait in audit_pending
// for the chainer as every concurrent transaction's do. A batch waits
// for the commit before it (a commit slot) before it sends its own, so
// commits never pile up. One batch at a time (BatchOne) is the default:
// on a quiet machine it beat staggering in every paired round at 8 and
// at 32 devices (docs/performance.md, "Staggered batches"); with it a
// leader reads and commits its batch before it takes the next.

// batchItem is one QR attempt waiting for, or in, a batch.
type batchItem struct {
	a    Attempt
	look codeLookup
	id   []byte // the code id the token names
	done chan struct{}
	at   time.Time // queued then (monotonic, for the wait's metric)

	// Set by the batch before done is closed.
	out   outcome
	res   Result
	alone bool  // left out of the batch (see above): verify alone
	err   error // the batch failed; nothing of it was committed
}

// BatchMode says whether a verification batch may begin while the one
// before it commits (see batch.go).
type BatchMode int

const (
	// BatchDefault is BatchOne.
	BatchDefault BatchMode = iota
	// BatchOne: a leader reads and commits its batch before the next
	// batch is taken (Options.VerifyBatches leaders at a time).
	BatchOne
	// BatchStagger: the next batch is taken and read while the previous
	// one commits (the default).
	BatchStagger
)

func (m BatchMode) String() string {
	switch m {
	case BatchDefault:
		return "default"
	case BatchOne:
		return "one"
	case BatchStagger:
		return "stagger"
	}
	return fmt.Sprintf("BatchMode(%d)", int(m))
}

// batcher queues QR attempts and runs them in batches, each of at most
// max attempts: at most concurrent batches reading at a time and (commits,
// a semaphore) at most concurrent committing.
type batcher struct {
	s          *Service
	max        int
	concurrent int
	timeout    time.Duration
	mode       func() BatchMode // read once per batch; nil: BatchDefault
	commits    chan struct{}    // a slot per committing batch (cap concurrent)

	mu      sync.Mutex
	queue   []*batchItem
	running int // leaders: batches gathering or reading (not yet committing)
}

func newBatcher(s *Service, max, concurrent int, timeout time.Duration, mode func() BatchMode) *batcher {
	return &batcher{s: s, max: max, concurrent: concurrent, timeout: timeout, mode: mode,
		commits: make(chan struct{}, concurrent)}
}

// staggered says whether this batch hands the lead on when its commit is
// sent.
func (b *batcher) staggered() bool {
	return b.mode != nil && b.mode() == BatchStagger
}

// verify queues it and waits until its batch has run (then it.done is
// closed and the outcome is in it). If ctx ends first while it is still
// queued, it is taken out untouched and ctx's error returned; once its
// batch has started, its outcome is waited for (the batch is bounded by
// its own timeout), so that an answer is never lost for a claimed code.
func (b *batcher) verify(ctx context.Context, it *batchItem) error {
	it.at = time.Now()
	b.mu.Lock()
	b.queue = append(b.queue, it)
	if b.running < b.concurrent {
		b.running++
		go b.lead()
	}
	b.mu.Unlock()
	select {
	case <-it.done:
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	if i := slices.Index(b.queue, it); i >= 0 {
		b.queue = slices.Delete(b.queue, i, i+1)
		b.mu.Unlock()
		return ctx.Err()
	}
	b.mu.Unlock()
	<-it.done
	return nil
}

// lead runs batches while attempts are queued, until it has handed the
// lead on (a staggered batch whose commit was sent): then it answers its
// batch and ends.
func (b *batcher) lead() {
	for {
		b.mu.Lock()
		items := b.take()
		if len(items) == 0 {
			b.running--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		start := time.Now()
		for _, it := range items {
			b.s.waited.Observe(start.Sub(it.at).Seconds())
		}
		t := &turn{b: b, stagger: b.staggered()}
		b.run(items, t)
		b.s.batchDur.Observe(time.Since(start).Seconds())
		for _, it := range items {
			close(it.done)
		}
		if t.handed {
			return
		}
	}
}

// handOver ends a leader's lead while its batch commits: a new leader
// takes what is queued, if any, and a leader is free again.
func (b *batcher) handOver() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.running--
	if len(b.queue) > 0 && b.running < b.concurrent {
		b.running++
		go b.lead()
	}
}

// turn is one batch's passage through the commit: it holds a commit slot
// from before its commit is sent until the commit's answer (or the
// batch's failure), and, staggered, hands the lead on once the commit is
// sent. A nil turn (a batch run by a test without a batcher) does
// neither.
type turn struct {
	b       *batcher
	stagger bool
	slot    bool // holds a commit slot
	handed  bool // handed the lead on
}

// enter waits for a commit slot (the batch's ctx bounds the wait).
func (t *turn) enter(ctx context.Context) error {
	if t == nil {
		return nil
	}
	select {
	case t.b.commits <- struct{}{}:
		t.slot = true
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the commit before: %w", ctx.Err())
	}
}

// sent: the batch's commit is on the wire.
func (t *turn) sent() {
	if t == nil || !t.stagger || t.handed {
		return
	}
	t.handed = true
	t.b.handOver()
}

// leave gives the commit slot back.
func (t *turn) leave() {
	if t == nil || !t.slot {
		return
	}
	t.slot = false
	<-t.b.commits
}

// take removes the next batch from the queue (b.mu held): the oldest
// attempts, at most max, at most one per device and per code; the others
// stay queued in their order.
func (b *batcher) take() []*batchItem {
	var items []*batchItem
	devices := map[string]bool{}
	ids := map[string]bool{}
	rest := b.queue[:0]
	for _, it := range b.queue {
		if len(items) < b.max && !devices[it.a.DeviceID] && !ids[string(it.id)] {
			devices[it.a.DeviceID], ids[string(it.id)] = true, true
			items = append(items, it)
			continue
		}
		rest = append(rest, it)
	}
	clear(b.queue[len(rest):])
	b.queue = rest
	return items
}

// run decides and records one batch; on an error every attempt of it
// carries the error.
func (b *batcher) run(items []*batchItem, t *turn) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	err := b.s.claimBatch(ctx, items, t)
	t.leave()
	b.s.batched.Add(float64(len(items)))
	if err == nil {
		b.s.batches.WithLabelValues("ok").Inc()
		return
	}
	b.s.batches.WithLabelValues("error").Inc()
	b.s.log.Warn("batch of code verifications failed; none claimed", "attempts", len(items), "err", err)
	for _, it := range items {
		it.out, it.res, it.alone, it.err = outcome{}, Result{}, false, err
	}
}

// claimBatch is the batch's transaction (see the comment at the top). t
// (nil: none) is entered before the commit is sent and told when it is;
// the caller leaves it.
func (s *Service) claimBatch(ctx context.Context, items []*batchItem, t *turn) (err error) {
	now := s.clock()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	defer func() {
		if err != nil && conn.Conn().PgConn().TxStatus() != 'I' && !conn.Conn().IsClosed() {
			// Best effort; a connection still in a transaction is
			// closed by the pool on release, which rolls it back too.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
		conn.Release()
	}()

	devices := make([]string, 0, len(items))
	ids := make([][]byte, 0, len(items))
	for _, it := range items {
		devices = append(devices, it.a.DeviceID)
		ids = append(ids, it.id)
	}
	sort.Strings(devices)
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i], ids[j]) < 0 })

	// Round trip 1: begin, lock the devices, read and lock the codes.
	rb := &pgx.Batch{}
	rb.Queue("BEGIN")
	rb.Queue(`SELECT device_id FROM code_devices WHERE device_id = ANY($1::text[]) ORDER BY device_id
		FOR NO KEY UPDATE SKIP LOCKED`, devices)
	rb.Queue(`SELECT `+codeColumns+` FROM codes WHERE id = ANY($1::bytea[]) ORDER BY id
		FOR NO KEY UPDATE SKIP LOCKED`, ids)
	known := map[string]bool{}
	found := map[string]codeRow{}
	if err := func() error {
		br := conn.SendBatch(ctx, rb)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		rows, err := br.Query()
		if err != nil {
			return fmt.Errorf("lock devices: %w", err)
		}
		ds, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("lock devices: %w", err)
		}
		for _, d := range ds {
			known[d] = true
		}
		rows, err = br.Query()
		if err != nil {
			return fmt.Errorf("codes: %w", err)
		}
		for rows.Next() {
			c, err := scanCode(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("codes: %w", err)
			}
			found[string(c.id)] = c
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("codes: %w", err)
		}
		return br.Close()
	}(); err != nil {
		return fmt.Errorf("batch: %w", err)
	}

	// Decide each attempt as if alone (one per device and code).
	var (
		used               [][]byte
		aDevices, aReasons []string
		aCodes             [][]byte
		entries            []audit.Entry
		pending            []*batchItem
	)
	for _, it := range items {
		c, ok := found[string(it.id)]
		if !known[it.a.DeviceID] || !ok {
			it.alone = true
			continue
		}
		it.out = s.decideQR(it.a, now, it.look, reading{known: true, code: c})
		var codeID []byte
		if it.out.code != nil {
			codeID = it.out.code.id
		}
		if it.out.err == nil {
			if it.out.code == nil {
				return errors.New("batch: internal: no code")
			}
			used = append(used, codeID)
			it.res = resultOf(it.out.code, now)
		}
		if errors.Is(it.out.err, pickupcode.ErrAlreadyCollected) && it.out.code != nil && !it.out.code.graceOver(now) {
			pending = append(pending, it)
		}
		reason := pickupcode.Reason(it.out.err)
		aDevices, aReasons, aCodes = append(aDevices, it.a.DeviceID), append(aReasons, reason), append(aCodes, codeID)
		entries = append(entries, s.attemptEvent(it.a.DeviceID, "qr", it.out, now))
	}
	if len(entries) == 0 {
		// Every attempt goes alone: nothing to record here.
		_, err := conn.Exec(ctx, "ROLLBACK")
		return err
	}

	// Round trip 2: the writes, the pending checks, commit.
	wb := &pgx.Batch{}
	if len(used) > 0 {
		// The codes are locked since the read: the update cannot miss.
		// Should it anyway, the failed cast (its text says what happened)
		// fails the transaction before the COMMIT queued behind it.
		wb.Queue(`WITH u AS (UPDATE codes SET used_at = $2 WHERE id = ANY($1::bytea[]) AND used_at IS NULL AND revoked_at IS NULL RETURNING 1)
			SELECT CASE WHEN count(*) = $3 THEN count(*)
				ELSE ('mark used: ' || count(*) || ' rows, want ' || $3)::bigint END FROM u`, used, now, int64(len(used)))
	}
	wb.Queue(`INSERT INTO code_attempts (device_id, at, method, reason, counted, code_id)
		SELECT d, $2, 'qr', r, false, c FROM unnest($1::text[], $3::text[], $4::bytea[]) AS t(d, r, c)`,
		aDevices, now, aReasons, aCodes)
	if err := audit.QueueAppend(wb, entries); err != nil {
		return fmt.Errorf("batch: audit: %w", err)
	}
	for _, it := range pending {
		wb.Queue(pendingSQL, it.out.code.documentID, it.a.DeviceID, it.out.code.id)
	}
	wb.Queue("COMMIT")
	if err := t.enter(ctx); err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	// SendBatch returns once the batch is written (its pipeline's Sync
	// flushes): from here on the next batch may read (staggered).
	br := conn.SendBatch(ctx, wb)
	t.sent()
	defer br.Close()
	if len(used) > 0 {
		var n int64
		if err := br.QueryRow().Scan(&n); err != nil {
			return fmt.Errorf("batch: mark used: %w", err)
		}
	}
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("batch: attempts: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("batch: audit: %w", err)
	}
	for _, it := range pending {
		if err := br.QueryRow().Scan(&it.out.pending); err != nil {
			return fmt.Errorf("batch: pending: %w", err)
		}
	}
	switch tag, err := br.Exec(); {
	case err != nil:
		return fmt.Errorf("batch: commit: %w", err)
	case tag.String() != "COMMIT":
		return fmt.Errorf("batch: commit answered %q", tag.String())
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("batch: commit: %w", err)
	}
	if st := conn.Conn().PgConn().TxStatus(); st != 'I' {
		return fmt.Errorf("batch: commit: transaction status %q after COMMIT", st)
	}
	return nil
}
