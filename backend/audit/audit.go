package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"kluis/backend/internal/pgarray"
)

// LockKey is the transaction-level advisory lock key serialising the
// chainer's transactions (the ASCII of "kluisaud"). Business transactions
// never take it.
const LockKey int64 = 0x6b6c756973617564

// DefaultBatch is how many pending records one chain transaction takes at
// most.
const DefaultBatch = 1000

// ErrInvalid means an entry was refused (empty actor or action, details not
// a JSON object).
var ErrInvalid = errors.New("invalid audit entry")

// DB is what Verify and List need: a *pgxpool.Pool, *pgx.Conn or pgx.Tx.
type DB interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Tx is what Append needs: a pgx.Tx (or anything that executes in one).
type Tx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Entry is a record to append.
type Entry struct {
	// At is when it happened; zero means time.Now(). Stored in UTC with
	// microsecond precision.
	At time.Time
	// Actor is who or what did it: "user:<id>", "device:<id>", "system".
	Actor string
	// Action names what happened, e.g. "document.collect", "door.opened",
	// "code.denied", "login".
	Action string
	// Subject is what it happened to, e.g. "document:<uuid>", "device:<id>".
	Subject string
	// Details is marshalled to a JSON object (nil means {}). No personal
	// data, PINs or tokens.
	Details any
}

// Record is a stored audit row.
type Record struct {
	// Seq is the record's place in the chain (1, 2, 3, ...); 0 for a
	// record Append returned, which is not chained yet.
	Seq      int64
	At       time.Time
	Actor    string
	Action   string
	Subject  string
	Details  json.RawMessage
	PrevHash []byte
	Hash     []byte
	// Pending is the number Append gave the record in audit_pending
	// (0 for a record read from the chain).
	Pending int64
}

// Beginner starts transactions: a *pgxpool.Pool or a *pgx.Conn. Chain
// needs one; List and Verify chain pending records first when given one.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// HashRecord computes a record's hash from prevHash and its fields:
// SHA-256(prevHash || u64(seq) || i64(at unix µs) || for each of actor,
// action, subject, details: u32(len) || bytes), integers big-endian.
func HashRecord(prevHash []byte, seq int64, at time.Time, actor, action, subject string, details []byte) []byte {
	var buf [512]byte
	sum := sha256.Sum256(appendRecord(buf[:0], prevHash, seq, at, actor, action, subject, details))
	return sum[:]
}

// appendRecord appends what [HashRecord] hashes to b: the previous hash,
// seq and at (µs since 1970) as big-endian 64-bit integers, then each
// text field as a big-endian 32-bit length and its bytes. Hashed at once
// (sha256.Sum256, no hash.Hash and no conversion of the strings); the
// chainer gives the details as the string it read.
func appendRecord[S, D string | []byte](b, prevHash []byte, seq int64, at time.Time, actor, action, subject S, details D) []byte {
	b = append(b, prevHash...)
	b = binary.BigEndian.AppendUint64(b, uint64(seq))
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixMicro()))
	for _, f := range [...]S{actor, action, subject} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(details)))
	return append(b, details...)
}

// genesis is the prev_hash of record 1.
var genesis = make([]byte, sha256.Size)

// entryFields checks e and returns its time (UTC, µs) and details (a JSON
// object's text).
func entryFields(e Entry) (time.Time, []byte, error) {
	if e.Actor == "" || e.Action == "" {
		return time.Time{}, nil, fmt.Errorf("%w: actor and action are required", ErrInvalid)
	}
	details := []byte("{}")
	if e.Details != nil {
		b, err := json.Marshal(e.Details)
		if err != nil {
			return time.Time{}, nil, fmt.Errorf("%w: details: %v", ErrInvalid, err)
		}
		if len(b) == 0 || b[0] != '{' {
			if !bytes.Equal(b, []byte("null")) {
				return time.Time{}, nil, fmt.Errorf("%w: details must be a JSON object", ErrInvalid)
			}
		} else {
			details = b
		}
	}
	at := e.At
	if at.IsZero() {
		at = time.Now()
	}
	return at.UTC().Truncate(time.Microsecond), details, nil
}

// QueueAppend queues on b one statement that records every entry, in
// order, like [Append] does one: the records wait in audit_pending until
// the transaction b runs in commits. It is for callers that send several
// statements in one round trip (a pgx.Batch inside their transaction);
// the statement's result is a command tag ("INSERT 0 n"). An invalid entry
// queues nothing and returns ErrInvalid.
func QueueAppend(b *pgx.Batch, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	args, err := AppendArgs(entries)
	if err != nil {
		return err
	}
	b.Queue(AppendSQL(1), args...)
	return nil
}

// AppendSQL is the statement [QueueAppend] queues, its parameters numbered
// from first on ($first to $first+4): for a caller that records entries
// as one part of a larger statement (a data-modifying WITH), with the
// arguments [AppendArgs] returns.
func AppendSQL(first int) string {
	// unnest keeps the arrays' order: the records are numbered in it.
	return fmt.Sprintf(`INSERT INTO audit_pending (at, actor, action, subject, details)
		SELECT a, ac, act, su, d::json
		FROM unnest($%d::timestamptz[], $%d::text[], $%d::text[], $%d::text[], $%d::text[]) AS t(a, ac, act, su, d)`,
		first, first+1, first+2, first+3, first+4)
}

// AppendArgs checks the entries and returns [AppendSQL]'s five arguments
// (one array per column, in the entries' order); an invalid entry
// returns ErrInvalid.
func AppendArgs(entries []Entry) ([]any, error) {
	ats := make([]time.Time, len(entries))
	actors, actions, subjects, dets := make([]string, len(entries)), make([]string, len(entries)),
		make([]string, len(entries)), make([]string, len(entries))
	for i, e := range entries {
		at, details, err := entryFields(e)
		if err != nil {
			return nil, err
		}
		ats[i], actors[i], actions[i], subjects[i], dets[i] = at, e.Actor, e.Action, e.Subject, string(details)
	}
	// pgarray's types: no allocation per element when pgx encodes them.
	return []any{pgarray.Times(ats), pgarray.Strings(actors), pgarray.Strings(actions), pgarray.Strings(subjects), pgarray.Strings(dets)}, nil
}

// Append records e inside tx. The record waits in audit_pending until tx
// commits and the chainer ([Chain], run by [Chainer] in the backend and by
// readers before they read) gives it the next seq and its hash: no lock is
// taken, so concurrent transactions do not queue behind each other. If tx
// rolls back, the record is gone with it and the chain shows no gap. It
// returns the record as queued (Seq 0, no hashes; Pending its number).
func Append(ctx context.Context, tx Tx, e Entry) (Record, error) {
	at, details, err := entryFields(e)
	if err != nil {
		return Record{}, err
	}
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO audit_pending (at, actor, action, subject, details)
		VALUES ($1, $2, $3, $4, $5::text::json) RETURNING id`,
		at, e.Actor, e.Action, e.Subject, string(details)).Scan(&id); err != nil {
		return Record{}, fmt.Errorf("audit: append: %w", err)
	}
	return Record{At: at, Actor: e.Actor, Action: e.Action, Subject: e.Subject, Details: details, Pending: id}, nil
}

// Chain moves the records committed to audit_pending before the call into
// the chain, oldest first, in transactions of at most DefaultBatch records
// serialised by the LockKey advisory lock (so replicas and readers may all
// call it), and returns how many it chained. Each transaction reads the
// chain's head, gives every record the next seq and
// HashRecord(previous hash, ...), inserts them into audit_log and deletes
// them from audit_pending, atomically: a record is chained exactly once,
// and a crash leaves it pending for the next call.
func Chain(ctx context.Context, db Beginner) (int, error) {
	var upTo *int64
	if err := db.QueryRow(ctx, "SELECT max(id) FROM audit_pending").Scan(&upTo); err != nil {
		return 0, fmt.Errorf("audit: chain: %w", err)
	}
	if upTo == nil {
		return 0, nil
	}
	return chainUpTo(ctx, db, *upTo)
}

// chainUpTo is [Chain] for the records numbered up to upTo (committed
// before the caller read it).
func chainUpTo(ctx context.Context, db Beginner, upTo int64) (int, error) {
	total := 0
	for {
		n, err := chainBatch(ctx, db, upTo, DefaultBatch)
		total += n
		if err != nil || n < DefaultBatch {
			return total, err
		}
	}
}

func chainBatch(ctx context.Context, db Beginner, upTo int64, limit int) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		// The setting lets audit_pending's trigger accept the deletes.
		if _, err := tx.Exec(ctx, "SELECT set_config('kluis.audit_chainer', 'on', true), pg_advisory_xact_lock($1)", LockKey); err != nil {
			return fmt.Errorf("lock chain: %w", err)
		}
		var seq int64
		prev := genesis
		err := tx.QueryRow(ctx, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").Scan(&seq, &prev)
		if errors.Is(err, pgx.ErrNoRows) {
			seq, prev, err = 0, genesis, nil
		}
		if err != nil {
			return fmt.Errorf("read chain head: %w", err)
		}
		// Read here, moved below: only a chainer deletes from audit_pending
		// (its guard) and none changes a row there, and the chain's lock
		// keeps other chainers out until the commit, so the rows moved are
		// the rows read and hashed.
		rows, err := tx.Query(ctx, `SELECT id, at, actor, action, subject, details::text
			FROM audit_pending WHERE id <= $1 ORDER BY id LIMIT $2`, upTo, limit)
		if err != nil {
			return fmt.Errorf("take pending: %w", err)
		}
		// Each record hashed as it is read, over the bytes PostgreSQL sent
		// (the text columns as they came, the details as its text), with
		// no string made of them: the chainer's cost is per record
		// (docs/performance.md, "Twelfth pass", "Fifteenth pass").
		var (
			ids, seqs []int64
			sums, buf []byte
			last      [sha256.Size]byte
		)
		head := prev
		for rows.Next() {
			var id int64
			var at time.Time
			if err := rows.Scan(&id, &at, nil, nil, nil, nil); err != nil {
				rows.Close()
				return fmt.Errorf("take pending: %w", err)
			}
			v := rows.RawValues()
			if len(v) != 6 || v[2] == nil || v[3] == nil || v[4] == nil || v[5] == nil {
				rows.Close()
				return fmt.Errorf("take pending: record %d: a text column is missing", id)
			}
			seq++
			buf = appendRecord(buf[:0], prev, seq, at.UTC(), v[2], v[3], v[4], v[5])
			last = sha256.Sum256(buf)
			sums = append(sums, last[:]...)
			ids, seqs = append(ids, id), append(seqs, seq)
			prev = last[:]
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("take pending: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		// Each record's previous hash is the head's or the record's before.
		prevs, hashes := make([][]byte, len(ids)), make([][]byte, len(ids))
		for i := range hashes {
			hashes[i] = sums[i*sha256.Size : (i+1)*sha256.Size : (i+1)*sha256.Size]
			prevs[i] = head
			if i > 0 {
				prevs[i] = hashes[i-1]
			}
		}
		// The rows move inside PostgreSQL: only their places and hashes
		// are sent (the details are not sent back and parsed as JSON
		// again; json keeps their text, the one hashed). A row not moved
		// fails the transaction: nothing is chained then.
		tag, err := tx.Exec(ctx, `WITH d AS (DELETE FROM audit_pending WHERE id = ANY($1::bigint[])
				RETURNING id, at, actor, action, subject, details)
			INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash)
			SELECT t.s, d.at, d.actor, d.action, d.subject, d.details, t.p, t.h
			FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[]) AS t(id, s, p, h) JOIN d ON d.id = t.id`,
			pgarray.Int64s(ids), pgarray.Int64s(seqs), pgarray.Bytes(prevs), pgarray.Bytes(hashes))
		if err != nil {
			return fmt.Errorf("append to the chain: %w", err)
		}
		if tag.RowsAffected() != int64(len(ids)) {
			return fmt.Errorf("append to the chain: %d of %d records moved", tag.RowsAffected(), len(ids))
		}
		n = len(ids)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("audit: chain: %w", err)
	}
	return n, nil
}

// CatchUp chains the pending records before a read of audit_log, so that
// the reader sees what was committed before: when db can begin
// transactions of its own (a Beginner); a no-op inside a caller's
// transaction (that would hold the chain's lock until the caller ends) and
// on a read-only standby (the primary's chainer does it). List and Verify
// call it; readers with SQL of their own call it first.
func CatchUp(ctx context.Context, db DB) error {
	if _, inTx := db.(pgx.Tx); inTx {
		return nil
	}
	b, ok := db.(Beginner)
	if !ok {
		return nil
	}
	_, err := Chain(ctx, b)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "25006" {
		return nil // a read-only standby: the primary's chainer does it
	}
	return err
}

// Report is the result of Verify.
type Report struct {
	// Records is how many rows were read.
	Records int
	// FirstBad is the seq of the first altered, missing or misplaced
	// record, nil when the chain is intact.
	FirstBad *int64
	// Reason says what is wrong with FirstBad ("" when intact).
	Reason string
	// HeadSeq and HeadHash describe the last record (0 and nil when empty);
	// keep a copy elsewhere to detect truncation at the end.
	HeadSeq  int64
	HeadHash []byte
	// Pending is how many records were committed but not chained yet when
	// the walk ended (Verify chains what is pending first, so these came
	// in meanwhile or could not be chained); OldestPending is when the
	// oldest of them was queued. Records pending for long mean the chainer
	// is not running.
	Pending       int
	OldestPending time.Time
}

// OK reports whether the chain verified.
func (r Report) OK() bool { return r.FirstBad == nil }

const selectRecord = "SELECT seq, at, actor, action, subject, details::text, prev_hash, hash FROM audit_log"

func scanRecord(rows pgx.Rows) (Record, error) {
	var r Record
	var details string
	if err := rows.Scan(&r.Seq, &r.At, &r.Actor, &r.Action, &r.Subject, &details, &r.PrevHash, &r.Hash); err != nil {
		return Record{}, err
	}
	r.At = r.At.UTC()
	r.Details = json.RawMessage(details)
	return r, nil
}

// Verify chains the pending records (when db is a Beginner), walks the
// chain in seq order and reports the first bad record. The error is only
// for failures to chain or read.
func Verify(ctx context.Context, db DB) (Report, error) {
	if err := CatchUp(ctx, db); err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	rows, err := db.Query(ctx, selectRecord+" ORDER BY seq")
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	defer rows.Close()
	var rep Report
	bad := func(seq int64, reason string, args ...any) {
		if rep.FirstBad == nil {
			s := seq
			rep.FirstBad = &s
			rep.Reason = fmt.Sprintf(reason, args...)
		}
	}
	var prev *Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return Report{}, fmt.Errorf("audit: verify: %w", err)
		}
		rep.Records++
		rep.HeadSeq, rep.HeadHash = r.Seq, r.Hash
		if rep.FirstBad != nil {
			continue // keep counting
		}
		selfOK := bytes.Equal(r.Hash, HashRecord(r.PrevHash, r.Seq, r.At, r.Actor, r.Action, r.Subject, r.Details))
		wantSeq, wantPrev := int64(1), genesis
		if prev != nil {
			wantSeq, wantPrev = prev.Seq+1, prev.Hash
		}
		switch {
		case r.Seq > wantSeq:
			bad(wantSeq, "record %d is missing (next record is %d)", wantSeq, r.Seq)
		case r.Seq < wantSeq:
			bad(r.Seq, "record %d is out of order", r.Seq)
		case !bytes.Equal(r.PrevHash, wantPrev):
			if selfOK && prev != nil {
				// r is consistent with itself, so the previous record
				// was rewritten together with its own hash.
				bad(prev.Seq, "record %d was altered: record %d links to a different hash", prev.Seq, r.Seq)
			} else {
				bad(r.Seq, "record %d was altered: its previous-hash link is wrong", r.Seq)
			}
		case !selfOK:
			bad(r.Seq, "record %d was altered: its content does not match its hash", r.Seq)
		}
		rr := r
		prev = &rr
	}
	if err := rows.Err(); err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	rows.Close()
	prow, err := db.Query(ctx, "SELECT count(*), min(queued_at) FROM audit_pending")
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify: pending: %w", err)
	}
	defer prow.Close()
	if prow.Next() {
		var oldest *time.Time
		if err := prow.Scan(&rep.Pending, &oldest); err != nil {
			return Report{}, fmt.Errorf("audit: verify: pending: %w", err)
		}
		if oldest != nil {
			rep.OldestPending = oldest.UTC()
		}
	}
	if err := prow.Err(); err != nil {
		return Report{}, fmt.Errorf("audit: verify: pending: %w", err)
	}
	return rep, nil
}

// ListOptions filter List.
type ListOptions struct {
	// Subject, when set, keeps only records about it.
	Subject string
	// AfterSeq keeps records with seq > AfterSeq (keyset paging).
	AfterSeq int64
	// Limit caps the result; default 100, at most 1000.
	Limit int
}

// List returns chained records in seq order, after chaining the pending
// ones when db is a Beginner (so that a caller sees what it just
// committed).
func List(ctx context.Context, db DB, o ListOptions) ([]Record, error) {
	if err := CatchUp(ctx, db); err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	if o.Limit <= 0 {
		o.Limit = 100
	}
	if o.Limit > 1000 {
		o.Limit = 1000
	}
	rows, err := db.Query(ctx, selectRecord+` WHERE seq > $1 AND ($2 = '' OR subject = $2) ORDER BY seq LIMIT $3`,
		o.AfterSeq, o.Subject, o.Limit)
	if err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("audit: list: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	return out, nil
}

// String summarises the report for people, e.g. "audit chain intact: 42
// records" or "audit chain broken at record 7: ...".
func (r Report) String() string {
	if r.FirstBad == nil {
		if r.Pending > 0 {
			return fmt.Sprintf("audit chain intact: %d records (%d more waiting to be chained)", r.Records, r.Pending)
		}
		return fmt.Sprintf("audit chain intact: %d records", r.Records)
	}
	return fmt.Sprintf("audit chain broken at record %d: %s (%d records read)", *r.FirstBad, r.Reason, r.Records)
}
