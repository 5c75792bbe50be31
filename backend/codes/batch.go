package codes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

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
// One round trip per batch (BatchOneRT): the code of an attempt that has
// to wait for a batch (a batch runs) is read before its batch, without a transaction or a lock (an optimistic read: one
// statement for every attempt that arrived meanwhile, by one reader at a
// time, while the batch before runs). The
// batch is then decided in Go from what was read and sent in ONE
// pipeline: BEGIN; lock the devices (SKIP LOCKED) and fail unless every
// one was locked; lock the codes (SKIP LOCKED) and fail unless every one
// was locked and is the very row version that was read (its xmin: any
// change to a row, an update or a delete and insert, makes a new version
// with the changing transaction's id, and an id comes round again only
// after 2^32 transactions, far beyond a batch's timeout); the writes;
// COMMIT. A failed check
// fails the statement (the cast trick below), so nothing after it runs
// and nothing commits: the batch is rolled back and redone the two-round-
// trip way above, which decides on rows read under the lock and leaves
// busy ones alone (kluis_codes_verify_batch_redone_total counts these).
// The rows a batch commits are locked and unchanged since they were read,
// so every decision is the one the two-round-trip batch would have made
// at that moment: single use, the attempt and audit rows, SKIP LOCKED and
// the batch's failure as a whole are the same. An attempt whose read
// found no code is left alone by its batch (so is, after the redo, one
// whose device has no row yet); a batch with
// an attempt whose read failed takes two round trips. The default,
// BatchOne, reads nothing ahead.

// batchItem is one QR attempt waiting for, or in, a batch.
type batchItem struct {
	a    Attempt
	look codeLookup
	id   []byte // the code id the token names
	done chan struct{}
	at   time.Time // queued then (monotonic, for the wait's metric)

	// BatchOneRT: what the optimistic read found (nil: not read, or the
	// read failed); reading while the reader has it; gaveUp when its
	// caller's ctx ended meanwhile (the reader drops it). b.mu guards
	// reading and gaveUp.
	read    *codeRead
	reading bool
	gaveUp  bool

	// Set by the batch before done is closed.
	out   outcome
	res   Result
	alone bool  // left out of the batch (see above): verify alone
	err   error // the batch failed; nothing of it was committed
}

// codeRead is an optimistic read of an attempt's code.
type codeRead struct {
	found bool    // the code is there
	code  codeRow // if found
	xmin  string  // the code row's version (its xmin) when found
}

// BatchMode says how a verification batch reads its rows (see batch.go).
type BatchMode int

const (
	// BatchDefault is BatchOne.
	BatchDefault BatchMode = iota
	// BatchOne: a leader reads and locks its batch's rows (round trip 1),
	// then writes and commits (round trip 2) before the next batch is
	// taken (Options.VerifyBatches leaders at a time).
	BatchOne
	// BatchOneRT: the rows are read before the batch, without locks; the
	// batch locks, checks they are unchanged, writes and commits in one
	// round trip (redone as BatchOne if they changed).
	BatchOneRT
)

func (m BatchMode) String() string {
	switch m {
	case BatchDefault:
		return "default"
	case BatchOne:
		return "one"
	case BatchOneRT:
		return "onert"
	}
	return fmt.Sprintf("BatchMode(%d)", int(m))
}

// batcher queues QR attempts and runs them in batches, each of at most
// max attempts, at most concurrent batches at a time.
type batcher struct {
	s          *Service
	max        int
	concurrent int
	timeout    time.Duration
	mode       func() BatchMode // read once per attempt; nil: BatchDefault
	leaders    func() int       // read once per attempt; nil or <= 0: concurrent

	mu      sync.Mutex
	unread  []*batchItem // BatchOneRT: waiting for the optimistic read
	readers int          // reading (at most one)
	queue   []*batchItem
	running int // leaders
}

func newBatcher(s *Service, max, concurrent int, timeout time.Duration, mode func() BatchMode) *batcher {
	return &batcher{s: s, max: max, concurrent: concurrent, timeout: timeout, mode: mode}
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

// oneRT says whether an attempt arriving now is read ahead (BatchOneRT).
func (b *batcher) oneRT() bool {
	return b.mode != nil && b.mode() == BatchOneRT
}

// verify queues it and waits until its batch has run (then it.done is
// closed and the outcome is in it). If ctx ends first while it is still
// queued (read or not), it is taken out untouched and ctx's error
// returned; while it is being read, it is dropped after the read
// (nothing was written); once its batch has started, its outcome is
// waited for (the batch is bounded by its own timeout), so that an
// answer is never lost for a claimed code.
func (b *batcher) verify(ctx context.Context, it *batchItem) error {
	it.at = time.Now()
	b.mu.Lock()
	// Read ahead only what would wait for a batch anyway: an attempt
	// that finds a leader free and nothing before it goes at once, in two
	// round trips, without a statement more.
	if b.oneRT() && (b.running >= b.limit() || len(b.queue) > 0 || len(b.unread) > 0 || b.readers > 0) {
		b.unread = append(b.unread, it)
		if b.readers == 0 {
			b.readers++
			go b.readAhead()
		}
	} else {
		b.enqueue(it)
	}
	b.mu.Unlock()
	select {
	case <-it.done:
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	for _, q := range []*[]*batchItem{&b.unread, &b.queue} {
		if i := slices.Index(*q, it); i >= 0 {
			*q = slices.Delete(*q, i, i+1)
			b.mu.Unlock()
			return ctx.Err()
		}
	}
	if it.reading {
		it.gaveUp = true
	}
	b.mu.Unlock()
	<-it.done
	if it.gaveUp {
		return ctx.Err()
	}
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

// readAhead reads the unread attempts' codes (readCodes), at most max at
// a time, and queues them, until none is left unread.
func (b *batcher) readAhead() {
	for {
		b.mu.Lock()
		n := min(len(b.unread), b.max)
		if n == 0 {
			b.readers--
			b.mu.Unlock()
			return
		}
		items := slices.Clone(b.unread[:n])
		b.unread = slices.Delete(b.unread, 0, n)
		for _, it := range items {
			it.reading = true
		}
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		if err := b.s.readCodes(ctx, items); err != nil {
			// Those attempts go the two-round-trip way.
			b.s.log.Warn("reading codes ahead of their batch failed", "attempts", len(items), "err", err)
		}
		cancel()
		b.mu.Lock()
		for _, it := range items {
			it.reading = false
			if it.gaveUp {
				close(it.done)
				continue
			}
			b.enqueue(it)
		}
		b.mu.Unlock()
	}
}

// lead runs batches while attempts are queued.
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
		b.run(items)
		b.s.batchDur.Observe(time.Since(start).Seconds())
		for _, it := range items {
			close(it.done)
		}
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
	var err error
	if slices.ContainsFunc(items, func(it *batchItem) bool { return it.read == nil }) {
		err = b.s.claimBatch(ctx, items)
	} else {
		err = b.s.claimBatchOneRT(ctx, items)
		if errors.Is(err, errStale) {
			b.s.redone.Inc()
			for _, it := range items {
				it.out, it.res, it.alone, it.err = outcome{}, Result{}, false, nil
			}
			err = b.s.claimBatch(ctx, items)
		}
	}
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

// errStale: a one-round-trip batch found a row changed or busy since its
// optimistic read; nothing of it was committed.
var errStale = errors.New("batch: rows changed since they were read")

// staleMark is in the text of the failed cast that reports a stale read.
const staleMark = "kluis: stale batch read"

// readCodes is the optimistic read of BatchOneRT: every item's code with
// its row version, in one statement, without a transaction or a lock. It
// sets it.read of every item (on an error, of none). A code's device has
// its code_devices row (codes references it); whether the attempt's
// device has one is left to the batch's lock (if not, the batch is
// redone, and the attempt goes alone, where its row is made).
func (s *Service) readCodes(ctx context.Context, items []*batchItem) error {
	ids := make([][]byte, len(items))
	for i, it := range items {
		ids[i] = it.id
	}
	rows, err := s.pool.Query(ctx, `SELECT xmin::text, `+codeColumns+` FROM codes WHERE id = ANY($1::bytea[])`, ids)
	if err != nil {
		return fmt.Errorf("read codes: %w", err)
	}
	found := map[string]codeRead{}
	for rows.Next() {
		r := codeRead{found: true}
		c := &r.code
		if err := rows.Scan(&r.xmin, &c.id, &c.documentID, &c.deviceID, &c.compartmentID, &c.compartmentNumber, &c.board,
			&c.channel, &c.needsDOB, &c.dobDigest, &c.expiresAt, &c.usedAt, &c.revokedAt, &c.lockedAt, &c.failed, &c.graceUntil); err != nil {
			rows.Close()
			return fmt.Errorf("read codes: %w", err)
		}
		found[string(c.id)] = r
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read codes: %w", err)
	}
	for _, it := range items {
		r := found[string(it.id)]
		it.read = &r
	}
	return nil
}

// batchPlan is a batch's decisions and the writes that record them.
type batchPlan struct {
	used               [][]byte // codes granted
	devices            []string // the devices decided in the batch
	codes              [][]byte // and their codes
	aDevices, aReasons []string
	aCodes             [][]byte
	entries            []audit.Entry
	pending            []*batchItem
}

// decide decides each attempt of the batch as if alone (one per device
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
		p.devices, p.codes = append(p.devices, it.a.DeviceID), append(p.codes, c.id)
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

// queueWrites queues the plan's writes, its pending checks and the COMMIT.
func (s *Service) queueWrites(wb *pgx.Batch, p *batchPlan, now time.Time) error {
	if len(p.used) > 0 {
		// The codes are locked since the read: the update cannot miss.
		// Should it anyway, the failed cast (its text says what happened)
		// fails the transaction before the COMMIT queued behind it.
		wb.Queue(`WITH u AS (UPDATE codes SET used_at = $2 WHERE id = ANY($1::bytea[]) AND used_at IS NULL AND revoked_at IS NULL RETURNING 1)
			SELECT CASE WHEN count(*) = $3 THEN count(*)
				ELSE ('mark used: ' || count(*) || ' rows, want ' || $3)::bigint END FROM u`, p.used, now, int64(len(p.used)))
	}
	wb.Queue(`INSERT INTO code_attempts (device_id, at, method, reason, counted, code_id)
		SELECT d, $2, 'qr', r, false, c FROM unnest($1::text[], $3::text[], $4::bytea[]) AS t(d, r, c)`,
		p.aDevices, now, p.aReasons, p.aCodes)
	if err := audit.QueueAppend(wb, p.entries); err != nil {
		return fmt.Errorf("batch: audit: %w", err)
	}
	for _, it := range p.pending {
		wb.Queue(pendingSQL, it.out.code.documentID, it.a.DeviceID, it.out.code.id)
	}
	wb.Queue("COMMIT")
	return nil
}

// readWrites reads the results of queueWrites' statements and checks the
// commit.
func readWrites(conn *pgxpool.Conn, br pgx.BatchResults, p *batchPlan) error {
	if len(p.used) > 0 {
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

// claimBatch is the batch's two-round-trip transaction (see the comment
// at the top).
func (s *Service) claimBatch(ctx context.Context, items []*batchItem) (err error) {
	now := s.clock()
	conn, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer func() { release(ctx, conn, err) }()

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
	br := conn.SendBatch(ctx, wb)
	defer br.Close()
	return readWrites(conn, br, p)
}

// claimBatchOneRT is the batch's one-round-trip transaction on what
// readCodes read (see the comment at the top): errStale if a row changed
// or is busy (nothing committed; the caller redoes the batch with
// claimBatch).
func (s *Service) claimBatchOneRT(ctx context.Context, items []*batchItem) (err error) {
	now := s.clock()
	var xmins []string
	p, err := s.decideBatch(items, now, func(it *batchItem) (codeRow, bool) {
		if !it.read.found {
			return codeRow{}, false
		}
		xmins = append(xmins, it.read.xmin)
		return it.read.code, true
	})
	if err != nil {
		return err
	}
	if len(p.entries) == 0 {
		return nil // every attempt goes alone: no transaction
	}
	conn, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer func() { release(ctx, conn, err) }()

	wb := &pgx.Batch{}
	wb.Queue("BEGIN")
	// Lock the devices and the codes as claimBatch does (devices first,
	// each in order, SKIP LOCKED), and fail unless every device's row was
	// locked and every code's row was locked in the version that was read.
	wb.Queue(`WITH l AS MATERIALIZED (SELECT device_id FROM code_devices WHERE device_id = ANY($1::text[]) ORDER BY device_id
			FOR NO KEY UPDATE SKIP LOCKED)
		SELECT CASE WHEN count(*) = $2 THEN count(*)
			ELSE ('`+staleMark+`: ' || count(*) || ' of ' || $2 || ' devices locked')::bigint END FROM l`,
		p.devices, int64(len(p.devices)))
	wb.Queue(`WITH l AS MATERIALIZED (SELECT id, xmin FROM codes WHERE id = ANY($1::bytea[]) ORDER BY id
			FOR NO KEY UPDATE SKIP LOCKED)
		SELECT CASE WHEN count(*) = $3 THEN count(*)
			ELSE ('`+staleMark+`: ' || count(*) || ' of ' || $3 || ' codes locked as read')::bigint END
		FROM l JOIN unnest($1::bytea[], $2::text[]) AS t(id, x) ON l.id = t.id AND l.xmin::text = t.x`,
		p.codes, xmins, int64(len(p.codes)))
	if err := s.queueWrites(wb, p, now); err != nil {
		return err
	}
	br := conn.SendBatch(ctx, wb)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("batch: begin: %w", err)
	}
	for _, what := range []string{"devices", "codes"} {
		var n int64
		if err := br.QueryRow().Scan(&n); err != nil {
			if isStale(err) {
				return fmt.Errorf("%w: %w", errStale, err)
			}
			return fmt.Errorf("batch: lock %s: %w", what, err)
		}
	}
	return readWrites(conn, br, p)
}

// isStale says whether err is the failed cast of a stale read's check.
func isStale(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "22P02" && strings.Contains(pe.Message, staleMark)
}
