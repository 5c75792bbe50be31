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
)

// LockKey is the transaction-level advisory lock key serialising appends
// (the ASCII of "kluisaud").
const LockKey int64 = 0x6b6c756973617564

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
	Seq      int64
	At       time.Time
	Actor    string
	Action   string
	Subject  string
	Details  json.RawMessage
	PrevHash []byte
	Hash     []byte
}

// HashRecord computes a record's hash from prevHash and its fields:
// SHA-256(prevHash || u64(seq) || i64(at unix µs) || for each of actor,
// action, subject, details: u32(len) || bytes), integers big-endian.
func HashRecord(prevHash []byte, seq int64, at time.Time, actor, action, subject string, details []byte) []byte {
	h := sha256.New()
	h.Write(prevHash)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(at.UnixMicro()))
	h.Write(b[:])
	for _, f := range [][]byte{[]byte(actor), []byte(action), []byte(subject), details} {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(f)))
		h.Write(l[:])
		h.Write(f)
	}
	return h.Sum(nil)
}

// genesis is the prev_hash of record 1.
var genesis = make([]byte, sha256.Size)

// Append adds e to the chain inside tx, serialised with every other append
// by a transaction-level advisory lock held until tx ends. It returns the
// stored record.
func Append(ctx context.Context, tx Tx, e Entry) (Record, error) {
	if e.Actor == "" || e.Action == "" {
		return Record{}, fmt.Errorf("%w: actor and action are required", ErrInvalid)
	}
	details := []byte("{}")
	if e.Details != nil {
		b, err := json.Marshal(e.Details)
		if err != nil {
			return Record{}, fmt.Errorf("%w: details: %v", ErrInvalid, err)
		}
		if len(b) == 0 || b[0] != '{' {
			if !bytes.Equal(b, []byte("null")) {
				return Record{}, fmt.Errorf("%w: details must be a JSON object", ErrInvalid)
			}
		} else {
			details = b
		}
	}
	at := e.At
	if at.IsZero() {
		at = time.Now()
	}
	at = at.UTC().Truncate(time.Microsecond)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", LockKey); err != nil {
		return Record{}, fmt.Errorf("audit: lock chain: %w", err)
	}
	var seq int64
	prev := genesis
	err := tx.QueryRow(ctx, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").Scan(&seq, &prev)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Record{}, fmt.Errorf("audit: read chain head: %w", err)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		prev = genesis
	}
	seq++
	hash := HashRecord(prev, seq, at, e.Actor, e.Action, e.Subject, details)
	if _, err := tx.Exec(ctx, `INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6::text::json, $7, $8)`,
		seq, at, e.Actor, e.Action, e.Subject, string(details), prev, hash); err != nil {
		return Record{}, fmt.Errorf("audit: append: %w", err)
	}
	return Record{Seq: seq, At: at, Actor: e.Actor, Action: e.Action, Subject: e.Subject,
		Details: details, PrevHash: prev, Hash: hash}, nil
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

// Verify walks the chain in seq order and reports the first bad record.
// The error is only for failures to read the chain.
func Verify(ctx context.Context, db DB) (Report, error) {
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

// List returns records in seq order.
func List(ctx context.Context, db DB, o ListOptions) ([]Record, error) {
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
		return fmt.Sprintf("audit chain intact: %d records", r.Records)
	}
	return fmt.Sprintf("audit chain broken at record %d: %s (%d records read)", *r.FirstBad, r.Reason, r.Records)
}
