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
	"github.com/jackc/pgx/v5/pgxpool"

	"kluis/backend/audit"
	"kluis/backend/internal/pgarray"
	"kluis/controller/pickupcode"
)

// Batched QR verifications.
//
// A QR attempt with a well-formed token for its device is checked against
// its code's token digest (tokenHolds), decided and recorded in a
// transaction it shares with the QR attempts of other devices that arrived
// meanwhile: one transaction and two round trips for the whole batch
// instead of one transaction and four round trips each. Nobody waits for
// a batch to fill: a batch takes what is queued when a leader is free
// (group commit), so a lone attempt goes alone at once. The transaction
// keeps the single attempt's rules:
//
//   - it locks the batch's code_devices rows (FOR NO KEY UPDATE), then
//     reads and locks the batch's codes (those whose rows keep their
//     token's digest), like the single attempt locks its device's row,
//     then its code; but it waits for no lock (SKIP LOCKED): an attempt
//     whose device or code another transaction holds (or whose device has
//     no row yet, or whose code is not there or keeps another digest) is left
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
//     every attempt gets its code_attempts row and its audit record, in
//     the same statement as that UPDATE (writesSQL), in the same
//     transaction;
//   - any error fails the whole batch: nothing of it commits, every
//     attempt in it gets the error (the kiosk shows "unavailable" and may
//     try again), none is claimed.
//
// PIN attempts, malformed tokens, tokens for another device (decided by
// their signature before any transaction) and services with an audit
// function of their own (Options.Audit) are never batched. A well-formed
// token that is not its code's (its digest differs) reads no code, so it
// locks none: it is left out and decided alone, where it reads none
// either (codeByDigest): wrong_code, recorded without the code, as before.
//
// Measured and removed (docs/performance.md): staggered batches (the next
// batch read while the previous one commits) and batches in one round trip
// (codes read ahead without a lock, then locked, checked unchanged,
// written and committed in one pipeline). Both lost every paired round
// to one batch at a time on a quiet machine: the commit, not the round
// trips, sets the rate, and both made the batches smaller.

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

// batcher queues QR attempts and runs them in batches, each of at most
// max attempts, at most concurrent batches at a time.
type batcher struct {
	s          *Service
	max        int
	concurrent int
	timeout    time.Duration
	leaders    func() int // read once per attempt; nil or <= 0: concurrent

	mu      sync.Mutex
	queue   []*batchItem
	running int // leaders
}

func newBatcher(s *Service, max, concurrent int, timeout time.Duration) *batcher {
	return &batcher{s: s, max: max, concurrent: concurrent, timeout: timeout}
}

// limit is how many leaders may run now.
func (b *batcher) limit() int {
	if b.leaders != nil {
		if n := b.leaders(); n > 0 {
			return n
		}
	}
	return b.concurrent
}

// verify queues it and waits until its batch has run (then it.done is
// closed and the outcome is in it). If ctx ends first while it is still
// queued, it is taken out untouched and ctx's error returned; once its
// batch has started, its outcome is waited for (the batch is bounded by
// its own timeout), so that an answer is never lost for a claimed code.
func (b *batcher) verify(ctx context.Context, it *batchItem) error {
	it.at = time.Now()
	b.mu.Lock()
	b.enqueue(it)
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

// enqueue queues it for a batch and starts a leader if one is free
// (b.mu held).
func (b *batcher) enqueue(it *batchItem) {
	b.queue = append(b.queue, it)
	if b.running < b.limit() {
		b.running++
		go b.lead()
	}
}

// lead runs batches while attempts are queued.
func (b *batcher) lead() {
	// sealq hands a batch's answers to the sealing goroutine of this
	// leader, which lives as long as it does: its stack, grown once for
	// the signature and the answers' JSON, stays grown. A goroutine per
	// batch grew a fresh one every time (runtime.newstack: about 4% of
	// kluis-bench verify's process CPU, docs/performance.md, "Sixteenth
	// pass").
	var sealq chan []*batchItem
	defer func() {
		if sealq != nil {
			close(sealq)
		}
	}()
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
		b.run(items)
		b.s.batchDur.Observe(time.Since(start).Seconds())
		if b.s.sealer == nil {
			wake(items)
			continue
		}
		// The answers are sealed beside the next batch, which need not
		// wait for their signature; by a goroutine of their own when the
		// sealing goroutine is still busy with the batch before.
		if sealq == nil {
			sealq = make(chan []*batchItem)
			go func() {
				for items := range sealq {
					b.seal(items)
					wake(items)
				}
			}()
		}
		select {
		case sealq <- items:
		default:
			go func() {
				b.seal(items)
				wake(items)
			}()
		}
	}
}

// wake lets a batch's attempts' Verify return.
func wake(items []*batchItem) {
	for _, it := range items {
		close(it.done)
	}
}

// seal hands the batch's decided attempts with a Seal to the sealer
// before their callers are woken: a batch's answers are made ready at the
// moment its outcomes are known. Only with a sealer (lead).
func (b *batcher) seal(items []*batchItem) {
	var decided []Decided
	for _, it := range items {
		if it.err != nil || it.alone || it.a.Seal == nil {
			continue
		}
		res, err := answerOf(it.out, it.res)
		decided = append(decided, Decided{Attempt: it.a, Result: res, Err: err})
	}
	if len(decided) > 0 {
		b.s.sealer.SealBatch(decided)
	}
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
func (b *batcher) run(items []*batchItem) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	err := b.s.claimBatch(ctx, items)
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

// batchPlan is a batch's decisions and the writes that record them.
type batchPlan struct {
	used               [][]byte // codes granted
	aDevices, aReasons []string
	aCodes             [][]byte
	entries            []audit.Entry
	pending            []*batchItem
}

// decideBatch decides each attempt of the batch as if alone (one per device
// and code) on its code c, or leaves it alone (ok false: its device has
// no row or its code is not there or busy).
func (s *Service) decideBatch(items []*batchItem, now time.Time, code func(it *batchItem) (codeRow, bool)) (*batchPlan, error) {
	p := &batchPlan{}
	for _, it := range items {
		c, ok := code(it)
		if !ok {
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
				return nil, errors.New("batch: internal: no code")
			}
			p.used = append(p.used, codeID)
			it.res = resultOf(it.out.code, now)
		}
		if errors.Is(it.out.err, pickupcode.ErrAlreadyCollected) && it.out.code != nil && !it.out.code.graceOver(now) {
			p.pending = append(p.pending, it)
		}
		reason := pickupcode.Reason(it.out.err)
		p.aDevices, p.aReasons, p.aCodes = append(p.aDevices, it.a.DeviceID), append(p.aReasons, reason), append(p.aCodes, codeID)
		p.entries = append(p.entries, s.attemptEvent(it.a.DeviceID, "qr", it.out, now))
	}
	return p, nil
}

// writesSQL records a batch in one statement: mark the granted codes used
// ($1, at $2; the statement fails unless it marked exactly $3 rows), the
// attempts ($4 devices, $5 reasons, $6 codes) and their audit records
// ($7 to $11). One statement instead of three: PostgreSQL's work per
// statement (portal, snapshot, executor start) is paid once per batch.
// Each data-modifying WITH runs to completion whether the SELECT reads it
// or not; the three touch different tables.
var writesSQL = `WITH u AS (UPDATE codes SET used_at = $2 WHERE id = ANY($1::bytea[]) AND used_at IS NULL AND revoked_at IS NULL RETURNING 1),
	a AS (INSERT INTO code_attempts (device_id, at, method, reason, counted, code_id)
		SELECT d, $2, 'qr', r, false, c FROM unnest($4::text[], $5::text[], $6::bytea[]) AS t(d, r, c)),
	p AS (` + audit.AppendSQL(7) + `)
	SELECT CASE WHEN count(*) = $3 THEN count(*)
		ELSE ('mark used: ' || count(*) || ' rows, want ' || $3)::bigint END FROM u`

// queueWrites queues the plan's writes, its pending checks and the COMMIT.
func (s *Service) queueWrites(wb *pgx.Batch, p *batchPlan, now time.Time) error {
	auditArgs, err := audit.AppendArgs(p.entries)
	if err != nil {
		return fmt.Errorf("batch: audit: %w", err)
	}
	// The codes are locked since the read: the update cannot miss. Should
	// it anyway, the failed cast (its text says what happened) fails the
	// transaction before the COMMIT queued behind it.
	wb.Queue(writesSQL, append([]any{pgarray.Bytes(p.used), now, int64(len(p.used)),
		pgarray.Strings(p.aDevices), pgarray.Strings(p.aReasons), pgarray.Bytes(p.aCodes)}, auditArgs...)...)
	for _, it := range p.pending {
		wb.Queue(pendingSQL, it.out.code.documentID, it.a.DeviceID, it.out.code.id)
	}
	wb.Queue("COMMIT")
	return nil
}

// readWrites reads the results of queueWrites' statements and checks the
// commit.
func readWrites(conn *pgxpool.Conn, br pgx.BatchResults, p *batchPlan) error {
	var n int64
	if err := br.QueryRow().Scan(&n); err != nil {
		return fmt.Errorf("batch: writes: %w", err)
	}
	for _, it := range p.pending {
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

// acquire takes a connection for a batch's transaction; release gives it
// back, rolled back first (best effort) if the batch failed inside its
// transaction.
func (s *Service) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	return conn, nil
}

func release(ctx context.Context, conn *pgxpool.Conn, err error) {
	if err != nil && conn.Conn().PgConn().TxStatus() != 'I' && !conn.Conn().IsClosed() {
		// Best effort; a connection still in a transaction is closed by
		// the pool on release, which rolls it back too.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_, _ = conn.Exec(rctx, "ROLLBACK")
		cancel()
	}
	conn.Release()
}

// claimBatch is the batch's transaction (see the comment
// at the top).
func (s *Service) claimBatch(ctx context.Context, items []*batchItem) (err error) {
	now := s.clock()
	mark := time.Now()
	stage := func(name string) { // the time since the last stage's end
		t := time.Now()
		s.batchStage.WithLabelValues(name).Observe(t.Sub(mark).Seconds())
		mark = t
	}
	conn, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer func() { release(ctx, conn, err) }()
	stage("connect")

	devices := make([]string, 0, len(items))
	ids := make([][]byte, 0, len(items))
	digests := make([][]byte, 0, len(items))
	for _, it := range items {
		devices = append(devices, it.a.DeviceID)
		ids = append(ids, it.id)
		digests = append(digests, it.look.digest)
	}
	sort.Strings(devices)
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i], ids[j]) < 0 })

	// Round trip 1: begin, lock the devices, read and lock the codes.
	rb := &pgx.Batch{}
	rb.Queue("BEGIN")
	// The batch's statements are prepared once per connection (pgx's
	// statement cache), but PostgreSQL planned them again at every
	// execution: with arrays as parameters, a generic plan's estimate (ten
	// elements) costs more than a custom plan's (the batch's few), so the
	// plan cache never switched to the generic plan. Their generic plans
	// are the custom ones (primary keys, unnest); planning them every time
	// was about a sixth of PostgreSQL's CPU per claim (docs/performance.md,
	// "Planned once").
	rb.Queue("SET LOCAL plan_cache_mode = force_generic_plan")
	rb.Queue(`SELECT device_id FROM code_devices WHERE device_id = ANY($1::text[]) ORDER BY device_id
		FOR NO KEY UPDATE SKIP LOCKED`, pgarray.Strings(devices))
	// A code is read and locked only if its row keeps the digest of a token
	// of the batch (or none, issued before migration 0217), as codeByDigest
	// reads it alone: a forged token locks no code. A batch holds one
	// attempt per code, so a row kept by one of the batch's digests is the
	// code of that digest's token; tokenHolds checks it again anyway.
	rb.Queue(`SELECT `+codeColumns+` FROM codes WHERE id = ANY($1::bytea[])
		AND (token_digest IS NULL OR token_digest = ANY($2::bytea[])) ORDER BY id
		FOR NO KEY UPDATE SKIP LOCKED`, pgarray.Bytes(ids), pgarray.Bytes(digests))
	known := map[string]bool{}
	found := map[string]codeRow{}
	if err := func() error {
		br := conn.SendBatch(ctx, rb)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("plan cache mode: %w", err)
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
	stage("read")

	p, err := s.decideBatch(items, now, func(it *batchItem) (codeRow, bool) {
		c, ok := found[string(it.id)]
		return c, ok && known[it.a.DeviceID]
	})
	if err != nil {
		return err
	}
	if len(p.entries) == 0 {
		// Every attempt goes alone: nothing to record here.
		_, err := conn.Exec(ctx, "ROLLBACK")
		return err
	}

	// Round trip 2: the writes, the pending checks, commit.
	wb := &pgx.Batch{}
	if err := s.queueWrites(wb, p, now); err != nil {
		return err
	}
	stage("decide")
	br := conn.SendBatch(ctx, wb)
	defer br.Close()
	if err := readWrites(conn, br, p); err != nil {
		return err
	}
	stage("write")
	return nil
}
