package codes

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"kluis/backend/audit"
	"kluis/controller/pickupcode"
)

// Attempt is one code entry at a kiosk: a QR token or a PIN (with the date
// of birth).
type Attempt struct {
	// DeviceID is the device the code is presented at.
	DeviceID string
	// QRToken is the scanned token; empty for a PIN attempt.
	QRToken string
	// PIN as typed; empty for a QR attempt.
	PIN string
	// BirthDate ("YYYY-MM-DD") is asked with every PIN.
	BirthDate string
	// Seal is the caller's, for Options.Sealer: a QR attempt decided in a
	// batch is handed to the sealer with it (Decided.Attempt) before
	// Verify returns. nil: the attempt is not handed to the sealer.
	Seal any
}

// Decided is an attempt decided in a batch, with what Verify returns for
// it: Result, or Err (a *Denial).
type Decided struct {
	Attempt Attempt
	Result  Result
	Err     error
}

// Sealer seals the answers of one batch together: deviceops signs them
// with one signature (docs/security.md, "Answers signed in groups").
type Sealer interface {
	// SealBatch is called once per batch, after the batch's transaction
	// has committed and before any of its attempts' Verify returns, with
	// the attempts decided in it whose Seal is set (those left to go
	// alone are not; a failed batch calls nothing). It runs on a
	// goroutine of its own beside the next batch, which does not wait
	// for it; it must not block: the batch's callers wait for it.
	SealBatch(decided []Decided)
}

// Result tells the device which compartment to open.
type Result struct {
	// CodeID is the base64url code id.
	CodeID string
	// DocumentID is the released document.
	DocumentID string
	// DeviceID is the device.
	DeviceID string
	// CompartmentID, CompartmentNumber, Board and Channel address the compartment.
	CompartmentID     int64
	CompartmentNumber int
	Board             int
	Channel           int
	// UsedAt is when the code was consumed.
	UsedAt time.Time
}

// Denial is the error Verify returns for a refused attempt: a sentinel
// (errors.Is) plus, for a device lockout, until when.
type Denial struct {
	// Err is the sentinel.
	Err error
	// LockedUntil is set with ErrDeviceLockedOut.
	LockedUntil time.Time
	// Pending is set with ErrAlreadyCollected when the code was accepted
	// (used) but its document is still loaded or notified at this device:
	// nobody collected it, the device has not reported on it yet (kluisd
	// may have died before opening the door; deviceops.Followup gives such
	// a code back). The kiosk says "try again in a few minutes, or call
	// 1777" instead of "already collected".
	Pending bool
}

// Error implements error.
func (d *Denial) Error() string { return "codes: denied: " + d.Err.Error() }

// Unwrap returns the sentinel.
func (d *Denial) Unwrap() error { return d.Err }

type codeRow struct {
	id                []byte
	documentID        string
	deviceID          string
	compartmentID     int64
	compartmentNumber int
	board, channel    int
	needsDOB          bool
	dobDigest         []byte
	expiresAt         time.Time
	usedAt, revokedAt *time.Time
	lockedAt          *time.Time
	failed            int
	graceUntil        *time.Time
	tokenDigest       []byte // Keys.TokenDigest of its QR token; nil: issued before migration 0217
}

const codeColumns = `id, document_id::text, device_id, compartment_id, compartment_number, board, channel,
	needs_dob, dob_digest, expires_at, used_at, revoked_at, locked_at, failed_attempts, grace_until, token_digest`

func scanCode(row pgx.Row) (codeRow, error) {
	var c codeRow
	err := row.Scan(&c.id, &c.documentID, &c.deviceID, &c.compartmentID, &c.compartmentNumber, &c.board,
		&c.channel, &c.needsDOB, &c.dobDigest, &c.expiresAt, &c.usedAt, &c.revokedAt, &c.lockedAt, &c.failed, &c.graceUntil,
		&c.tokenDigest)
	return c, err
}

// diedOfExpiry reports whether the code is past its expiry and was not
// revoked before it: still open, or revoked at or after its expiry (the
// expire transition revokes the codes of a document past its deadline).
// Such a code answers ErrExpired; a code revoked while still valid (a
// re-issue, a cancellation, a retrieval, a stolen device) answers
// ErrWrongCode like a code that never existed.
func (c codeRow) diedOfExpiry(now time.Time) bool {
	return !now.Before(c.expiresAt) && (c.revokedAt == nil || !c.revokedAt.Before(c.expiresAt))
}

// graceOver reports whether a re-armed code's grace period has passed: the
// code counts as used from then on (see [Service.Rearm]).
func (c codeRow) graceOver(now time.Time) bool {
	return c.graceUntil != nil && !now.Before(*c.graceUntil)
}

// outcome is what one attempt did, decided inside the transaction.
type outcome struct {
	err       error // sentinel, nil on success
	counted   bool  // counts against the device's PIN limits
	codeFail  bool  // counts against the code (wrong date of birth)
	code      *codeRow
	lockUntil time.Time // PIN entry locked until then
	started   bool      // this attempt started the lockout
	pending   bool      // already collected, but the document is still there
}

// Verify checks an attempt, and on success marks the code used, atomically:
// of concurrent verifications of one code exactly one succeeds. A refusal is
// a *Denial wrapping one of pickupcode's ErrWrongCode, ErrWrongDevice,
// ErrExpired, ErrAlreadyCollected, ErrCodeLocked, ErrDeviceLockedOut,
// ErrSecondFactorRequired (map with pickupcode.Reason); every refusal is
// recorded and audited. Other errors are infrastructure failures.
func (s *Service) Verify(ctx context.Context, a Attempt) (Result, error) {
	res, err := s.verify(ctx, a)
	s.verified.WithLabelValues(pickupcode.Reason(err)).Inc()
	return res, err
}

func (s *Service) verify(ctx context.Context, a Attempt) (Result, error) {
	if !deviceIDPattern.MatchString(a.DeviceID) {
		return Result{}, &Denial{Err: fmt.Errorf("device id: %w", pickupcode.ErrInvalid)}
	}
	method := "pin"
	if a.QRToken != "" {
		method = "qr"
	}
	if a.QRToken != "" && a.PIN != "" {
		return Result{}, &Denial{Err: fmt.Errorf("give a QR token or a PIN, not both: %w", pickupcode.ErrInvalid)}
	}
	now := s.clock()
	// Everything that needs no database is decided first, outside the
	// transaction: the token's form (and the signature of a token for
	// another device), its digest, the PIN's digest.
	look := s.lookup(a, method, now)
	if s.batch != nil && method == "qr" && look.early == nil && look.sql != "" {
		// A well-formed QR token for this device: checked against its code's
		// digest and claimed in a transaction shared with other devices'
		// (batch.go).
		it := &batchItem{a: a, look: look, id: look.args[0].([]byte), done: make(chan struct{})}
		if err := s.batch.verify(ctx, it); err != nil {
			return Result{}, fmt.Errorf("codes: verify: %w", err)
		}
		switch {
		case it.err != nil:
			return Result{}, fmt.Errorf("codes: verify: %w", it.err)
		case !it.alone:
			return s.finish(ctx, a, method, it.out, it.res)
		}
		// Left out of the batch (its device or code busy, its device new): alone.
	}
	out, result, err := s.verifyTx(ctx, a, method, now, look)
	if err != nil {
		return Result{}, fmt.Errorf("codes: verify: %w", err)
	}
	return s.finish(ctx, a, method, out, result)
}

// verifyTx decides and records one attempt in a transaction of its own.
func (s *Service) verifyTx(ctx context.Context, a Attempt, method string, now time.Time, look codeLookup) (outcome, Result, error) {
	var (
		out    outcome
		result Result
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Serialize the attempts of one device: counting and single use are
		// exact. The device lock, the recent failures and the code go in
		// one pipeline (one round trip); each statement runs after the one
		// before and sees what committed until then, so the failures and
		// the code are read under the lock. The device's row is made on its
		// first attempt (one statement less on every later one).
		r, err := s.read(ctx, tx, a.DeviceID, now, look)
		if err == nil && !r.known {
			salt := make([]byte, 16)
			if _, err := io.ReadFull(s.rand, salt); err != nil {
				return fmt.Errorf("device salt: %w", err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO code_devices (device_id, offline_salt, created_at)
				SELECT $1, $3::bytea, $2 WHERE EXISTS (SELECT 1 FROM devices WHERE id = $1)
				ON CONFLICT (device_id) DO NOTHING`, a.DeviceID, now, salt); err != nil {
				return fmt.Errorf("device row: %w", err)
			}
			r, err = s.read(ctx, tx, a.DeviceID, now, look)
		}
		if err != nil {
			return err
		}
		burstUntil := time.Time{}
		if r.burst != nil {
			burstUntil = *r.burst
		}
		failures := r.failures
		if r.known {
			out = s.decide(a, method, now, burstUntil, failures, look, r)
		} else {
			// Unknown device: nothing can match. Recorded and audited, not counted.
			out = outcome{err: pickupcode.ErrWrongCode}
		}
		if out.err == nil && out.code == nil {
			return fmt.Errorf("internal: no code")
		}
		// The writes of a granted attempt (mark used, the attempt row) go
		// out in one pipeline with the audit record.
		p := &pipeTx{Tx: tx}
		if out.err == nil {
			// The code's row is locked since the read: nobody else can
			// have used or revoked it meanwhile.
			p.queue(`UPDATE codes SET used_at = $2 WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL`,
				func(tag pgconn.CommandTag) error {
					if tag.RowsAffected() != 1 {
						return fmt.Errorf("mark used: %d rows, want 1", tag.RowsAffected())
					}
					return nil
				}, out.code.id, now)
		}
		if errors.Is(out.err, pickupcode.ErrAlreadyCollected) && out.code != nil && !out.code.graceOver(now) {
			// Used, but is the document still there, not collected, and
			// no other open code of it (a re-issue's) is the one to use?
			if err := tx.QueryRow(ctx, pendingSQL, out.code.documentID, a.DeviceID, out.code.id).Scan(&out.pending); err != nil {
				return fmt.Errorf("pending: %w", err)
			}
		}
		if out.codeFail && out.code != nil {
			if _, err := tx.Exec(ctx, `UPDATE codes SET failed_attempts = failed_attempts + 1,
				locked_at = CASE WHEN failed_attempts + 1 >= $2 THEN $3 ELSE locked_at END WHERE id = $1`,
				out.code.id, s.cfg.CodeMaxFailures, now); err != nil {
				return fmt.Errorf("count code failure: %w", err)
			}
		}
		if out.counted {
			if b := s.cfg.BurstAfterFailure(since(append(failures, now), r.cleared), now); !b.IsZero() {
				if _, err := tx.Exec(ctx, `UPDATE code_devices SET locked_until = $2 WHERE device_id = $1`, a.DeviceID, b); err != nil {
					return fmt.Errorf("lock device: %w", err)
				}
				burstUntil = b
			}
			if u := s.cfg.LockUntil(burstUntil, append(failures, now), now); !u.IsZero() {
				out.lockUntil, out.started = u, true
			}
		}
		var codeID []byte
		if out.code != nil {
			codeID = out.code.id
		}
		p.queue(`INSERT INTO code_attempts (device_id, at, method, reason, counted, code_id)
			VALUES ($1, $2, $3, $4, $5, $6)`, nil, a.DeviceID, now, method, pickupcode.Reason(out.err), out.counted, codeID)
		e := s.attemptEvent(a.DeviceID, method, out, now)
		ev := AuditEvent{Actor: e.Actor, Action: e.Action, Subject: e.Subject, Details: e.Details.(attemptDetails).asMap()}
		if err := s.appendAudit(ctx, p, ev); err != nil {
			return err
		}
		if err := p.flush(ctx); err != nil {
			return err
		}
		if out.started {
			if err := s.appendAudit(ctx, tx, AuditEvent{Actor: "device:" + a.DeviceID, Action: "device.pin_locked", Subject: "device:" + a.DeviceID,
				Details: map[string]any{"device": a.DeviceID, "until": out.lockUntil}}); err != nil {
				return err
			}
		}
		if out.err == nil {
			result = resultOf(out.code, now)
		}
		return nil
	})
	return out, result, err
}

// pendingSQL asks, for a used code ($3) of a document ($1) at a device
// ($2): is the document still there, not collected, and no other open code
// of it (a re-issue's) the one to use?
const pendingSQL = `SELECT EXISTS (SELECT 1 FROM documents WHERE id = $1::uuid AND device_id = $2
	AND state IN ('loaded', 'notified'))
	AND NOT EXISTS (SELECT 1 FROM codes WHERE document_id = $1::uuid AND id <> $3
		AND used_at IS NULL AND revoked_at IS NULL)`

// resultOf is the answer to a granted attempt on c.
func resultOf(c *codeRow, now time.Time) Result {
	return Result{CodeID: pickupcode.FormatCodeID(c.id), DocumentID: c.documentID, DeviceID: c.deviceID,
		CompartmentID: c.compartmentID, CompartmentNumber: c.compartmentNumber, Board: c.board,
		Channel: c.channel, UsedAt: now}
}

// attemptEvent is the audit record of an attempt: code.used or
// code.denied with the reason (Details is a map[string]any).
func (s *Service) attemptEvent(deviceID, method string, out outcome, now time.Time) audit.Entry {
	e := audit.Entry{At: now, Actor: "device:" + deviceID, Action: "code.used", Subject: "device:" + deviceID}
	details := attemptDetails{Device: deviceID, Method: method, Reason: pickupcode.Reason(out.err)}
	if out.code != nil {
		e.Subject = "document:" + out.code.documentID
		details.CodeID = pickupcode.FormatCodeID(out.code.id)
	}
	if out.err != nil {
		e.Action = "code.denied"
	}
	e.Details = details
	return e
}

// attemptDetails are a code attempt's audit details. encoding/json writes
// a struct's fields in their order and a map's keys sorted: these are in
// sorted order, so the record is byte for byte the one the map of asMap
// gives (TestAttemptDetailsAsTheMap), without the map and its reflection
// (about 11 allocations per attempt in the batch).
type attemptDetails struct {
	CodeID string `json:"code_id,omitempty"`
	Device string `json:"device"`
	Method string `json:"method"`
	Reason string `json:"reason"`
}

// asMap is d as AuditEvent's map (Options.Audit).
func (d attemptDetails) asMap() map[string]any {
	m := map[string]any{"device": d.Device, "method": d.Method, "reason": d.Reason}
	if d.CodeID != "" {
		m["code_id"] = d.CodeID
	}
	return m
}

// finish does what follows a decided attempt's commit: the lockout's
// alarm, the log line, the answer.
func (s *Service) finish(ctx context.Context, a Attempt, method string, out outcome, result Result) (Result, error) {
	if out.started {
		s.lockouts.Inc()
		s.log.Warn("device PIN entry locked", "device", a.DeviceID, "until", out.lockUntil)
		if s.onLockout != nil {
			s.onLockout(ctx, a.DeviceID, out.lockUntil)
		}
	}
	if out.err != nil {
		s.log.Info("code denied", "device", a.DeviceID, "method", method, "reason", pickupcode.Reason(out.err))
	} else if s.log.Enabled(ctx, slog.LevelDebug) {
		// At debug (KLUIS_LOG_LEVEL=debug): the audit row code.used says
		// the same (device, method, document, code id) and
		// kluis_codes_verifications_total{reason="ok"} counts it; a denial
		// stays at info. docs/performance.md, "Sixteenth pass".
		s.log.Debug("code used", "device", a.DeviceID, "method", method, "document", result.DocumentID, "code_id", result.CodeID)
	}
	return answerOf(out, result)
}

// answerOf is what Verify returns for a decided attempt: the result, or
// the denial of out's error.
func answerOf(out outcome, result Result) (Result, error) {
	if out.err == nil {
		return result, nil
	}
	d := &Denial{Err: out.err, Pending: out.pending}
	if errors.Is(out.err, pickupcode.ErrDeviceLockedOut) {
		d.LockedUntil = out.lockUntil
	}
	return Result{}, d
}

// recentFailures returns the counted failures of the device within the daily
// window (at most a little above the cap: attempts are refused beyond it).
func (s *Service) recentFailures(ctx context.Context, tx pgx.Tx, deviceID string, now time.Time) ([]time.Time, error) {
	// No upper bound at now: a failure recorded by an attempt that took
	// the device's lock first may carry a slightly later time than this
	// attempt's (read before it waited for the lock), and must count.
	rows, err := tx.Query(ctx, `SELECT at FROM code_attempts WHERE device_id = $1 AND counted
		AND at > $2 ORDER BY at DESC LIMIT $3`,
		deviceID, now.Add(-s.cfg.DailyWindow), s.cfg.DailyMaxFailures+s.cfg.DeviceMaxFailures)
	if err != nil {
		return nil, fmt.Errorf("recent failures: %w", err)
	}
	ts, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return nil, fmt.Errorf("recent failures: %w", err)
	}
	return ts, nil
}

// codeLookup is how an attempt finds its code, known before the
// transaction: the code id of a well-formed QR token, the digest of a
// well-formed PIN.
type codeLookup struct {
	early  *outcome // decided without the database (an invalid token)
	tokErr error    // pickupcode.ErrExpired from a token past its expiry, else nil; only once the token holds
	// digest, when set, is the QR token's Keys.TokenDigest: its signature
	// is not checked yet, and nothing in its claims counts until the
	// digest matches the code's (tokenHolds).
	digest []byte
	sql    string // empty: no code to read
	args   []any
}

// verifyToken checks a QR token this backend issued by its signature (a
// token for another device, a code without a token digest): by signing it again
// where the key signs deterministically (it always does with Go's
// crypto/ed25519; checked once in New), which costs about a third of a
// signature verification and accepts every token the backend made, else
// with the public key.
func (s *Service) verifyToken(token, deviceID string, now time.Time) (pickupcode.Claims, error) {
	if s.ownCheck {
		return pickupcode.VerifyOwnToken(s.keys.Signing, token, deviceID, now)
	}
	return pickupcode.VerifyToken(s.keys.Public(), token, deviceID, now)
}

// codeByID reads and locks the code a QR token checked by its signature
// names.
const codeByID = `SELECT ` + codeColumns + ` FROM codes WHERE id = $1 FOR NO KEY UPDATE`

// codeByDigest reads and locks the code ($1) a QR token checked by its
// digest ($2) names, only if the row keeps that digest (or none: issued
// before migration 0217, its token's signature is checked under the
// lock). PostgreSQL locks only the rows that pass the WHERE clause: a
// forged token reads no row, so it neither takes the code's lock nor
// waits for it, and a genuine claim of the code never waits for a forger.
const codeByDigest = `SELECT ` + codeColumns + ` FROM codes WHERE id = $1
	AND (token_digest = $2 OR token_digest IS NULL) FOR NO KEY UPDATE`

// lookup finds how to read an attempt's code. A QR token is checked
// without signing it again (docs/security.md, "How the backend checks a
// token online"): a malformed one is refused here and reaches no
// database; a well-formed one for this device reads the code its claims
// name only if the code's row keeps the same keyed digest of the token
// (codeByDigest: a forged token locks no code), and holds only if
// tokenHolds agrees, in the transaction; only then do its device and
// expiry count. A token for another device is checked by its signature
// here, as before, so that only an authentic one answers wrong_device and
// no code is read for it.
func (s *Service) lookup(a Attempt, method string, now time.Time) codeLookup {
	if method == "qr" {
		claims, err := pickupcode.ParseUnverifiedToken(a.QRToken)
		if err != nil {
			return codeLookup{early: &outcome{err: pickupcode.ErrWrongCode}}
		}
		if claims.DeviceID != a.DeviceID {
			return s.signedLookup(a, now)
		}
		id, _ := pickupcode.ParseCodeID(claims.CodeID) // checked by ParseUnverifiedToken
		digest := s.tokenDigest(a.QRToken)
		return codeLookup{tokErr: claims.Check(a.DeviceID, now), digest: digest,
			sql: codeByDigest, args: []any{id, digest}}
	}
	pin, err := pickupcode.NormalizePIN(a.PIN, s.cfg.PINDigits)
	if err != nil || strings.TrimSpace(a.BirthDate) == "" {
		return codeLookup{}
	}
	if _, err := pickupcode.ParseBirthDate(a.BirthDate); err != nil {
		return codeLookup{}
	}
	return codeLookup{sql: `SELECT ` + codeColumns + ` FROM codes
		WHERE device_id = $1 AND pin_digest = ANY($2)
		ORDER BY (used_at IS NULL AND revoked_at IS NULL) DESC, created_at DESC LIMIT 1 FOR NO KEY UPDATE`,
		args: []any{a.DeviceID, s.pinDigests(a.DeviceID, pin)}}
}

// signedLookup is lookup for a QR token checked by its signature.
func (s *Service) signedLookup(a Attempt, now time.Time) codeLookup {
	claims, err := s.verifyToken(a.QRToken, a.DeviceID, now)
	if err != nil && !errors.Is(err, pickupcode.ErrExpired) {
		if errors.Is(err, pickupcode.ErrWrongDevice) {
			return codeLookup{early: &outcome{err: pickupcode.ErrWrongDevice}}
		}
		return codeLookup{early: &outcome{err: pickupcode.ErrWrongCode}}
	}
	id, _ := pickupcode.ParseCodeID(claims.CodeID) // checked by pickupcode.VerifyToken
	return codeLookup{tokErr: err, sql: codeByID, args: []any{id}}
}

// tokenDigest is Keys.TokenDigest of token, with an HMAC of the pool: its
// key's inner and outer states are computed once, not per token.
func (s *Service) tokenDigest(token string) []byte {
	m, _ := s.tokenMACs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, s.tokenKey)
	}
	m.Reset()
	_, _ = io.WriteString(m, token)
	d := m.Sum(make([]byte, 0, sha256.Size))
	s.tokenMACs.Put(m)
	return d
}

// tokenHolds reports whether the QR token of a lookup with a digest is
// the one issued for code c: c keeps the same digest (compared in
// constant time), or, for a code issued without one (before migration
// 0217), the token's signature holds. Either way a forged, altered or
// other key's token fails, and its attempt answers wrong_code as when its
// signature was checked first.
func (s *Service) tokenHolds(a Attempt, now time.Time, look codeLookup, c codeRow) bool {
	if c.tokenDigest == nil {
		_, err := s.verifyToken(a.QRToken, a.DeviceID, now)
		return err == nil || errors.Is(err, pickupcode.ErrExpired)
	}
	return sameDigest(look.digest, c.tokenDigest)
}

// reading is what the transaction's first round trip read: the device's
// lock state, its recent failures and the code (each after the device's
// row lock was taken).
type reading struct {
	known          bool // the device has its code_devices row (locked)
	burst, cleared *time.Time
	failures       []time.Time
	code           codeRow
	codeErr        error // pgx.ErrNoRows: no such code; also set when none was looked up
}

func (s *Service) read(ctx context.Context, tx pgx.Tx, deviceID string, now time.Time, look codeLookup) (reading, error) {
	r := reading{codeErr: pgx.ErrNoRows}
	b := &pgx.Batch{}
	b.Queue(`SELECT locked_until, burst_cleared_at FROM code_devices WHERE device_id = $1 FOR NO KEY UPDATE`, deviceID)
	// Every counted failure of the window, also those timed a little
	// after now: an attempt that took the lock before this one may have
	// read the clock after it (see recentFailures).
	b.Queue(`SELECT at FROM code_attempts WHERE device_id = $1 AND counted
		AND at > $2 ORDER BY at DESC LIMIT $3`,
		deviceID, now.Add(-s.cfg.DailyWindow), s.cfg.DailyMaxFailures+s.cfg.DeviceMaxFailures)
	if look.sql != "" {
		b.Queue(look.sql, look.args...)
	}
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	err := br.QueryRow().Scan(&r.burst, &r.cleared)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// No row, nothing locked: what else was read does not count.
		return r, br.Close()
	case err != nil:
		return r, fmt.Errorf("lock device: %w", err)
	}
	r.known = true
	rows, err := br.Query()
	if err == nil {
		r.failures, err = pgx.CollectRows(rows, pgx.RowTo[time.Time])
	}
	if err != nil {
		return r, fmt.Errorf("recent failures: %w", err)
	}
	if look.sql != "" {
		r.code, r.codeErr = scanCode(br.QueryRow())
		if r.codeErr != nil && !errors.Is(r.codeErr, pgx.ErrNoRows) {
			return r, fmt.Errorf("code: %w", r.codeErr)
		}
	}
	if err := br.Close(); err != nil {
		return r, fmt.Errorf("read: %w", err)
	}
	return r, nil
}

// decide looks at the attempt and the code it names (read under the
// device's lock), without changing anything.
func (s *Service) decide(a Attempt, method string, now, burstUntil time.Time, failures []time.Time, look codeLookup, r reading) outcome {
	if method == "qr" {
		return s.decideQR(a, now, look, r)
	}
	if u := s.cfg.LockUntil(burstUntil, failures, now); !u.IsZero() {
		return outcome{err: pickupcode.ErrDeviceLockedOut, lockUntil: u}
	}
	if _, err := pickupcode.NormalizePIN(a.PIN, s.cfg.PINDigits); err != nil {
		return outcome{err: pickupcode.ErrWrongCode, counted: true}
	}
	// Asked for every well-formed PIN, before any lookup: reveals nothing.
	if strings.TrimSpace(a.BirthDate) == "" {
		return outcome{err: pickupcode.ErrSecondFactorRequired}
	}
	dob, err := pickupcode.ParseBirthDate(a.BirthDate)
	if err != nil {
		return outcome{err: pickupcode.ErrSecondFactorRequired}
	}
	c := r.code
	if r.codeErr != nil {
		// No such PIN.
		return outcome{err: pickupcode.ErrWrongCode, counted: true}
	}
	// An expired code (also one revoked by the expire transition) is not
	// counted: its holder is not locked out for retrying it, and it opens
	// nothing (docs/security.md, "Brute-force bound").
	switch {
	case c.usedAt != nil:
		// Also a code a device spent offline and reported (used after the
		// collection revoked it): it is what it is, collected.
		return outcome{err: pickupcode.ErrAlreadyCollected, code: &c}
	case c.revokedAt != nil && !c.diedOfExpiry(now):
		return outcome{err: pickupcode.ErrWrongCode, counted: true, code: &c}
	case c.graceOver(now):
		return outcome{err: pickupcode.ErrAlreadyCollected, code: &c}
	case c.lockedAt != nil || c.failed >= s.cfg.CodeMaxFailures:
		return outcome{err: pickupcode.ErrCodeLocked, counted: true, code: &c}
	case c.diedOfExpiry(now):
		return outcome{err: pickupcode.ErrExpired, code: &c}
	}
	if c.needsDOB && !s.sameDOB(c.dobDigest, c.id, dob) {
		return outcome{err: pickupcode.ErrWrongCode, counted: true, codeFail: true, code: &c}
	}
	return outcome{code: &c}
}

func (s *Service) decideQR(a Attempt, now time.Time, look codeLookup, r reading) outcome {
	if look.early != nil {
		return *look.early
	}
	if r.codeErr != nil {
		return outcome{err: pickupcode.ErrWrongCode}
	}
	if look.digest != nil && !s.tokenHolds(a, now, look, r.code) {
		// Not the token issued for the code it names: like a bad
		// signature, recorded without the code.
		return outcome{err: pickupcode.ErrWrongCode}
	}
	c, err := r.code, look.tokErr
	// The token's expiry is the code's (both the pickup deadline).
	expired := c.diedOfExpiry(now) || (err != nil && (c.revokedAt == nil || !c.revokedAt.Before(c.expiresAt)))
	switch {
	case c.deviceID != a.DeviceID:
		return outcome{err: pickupcode.ErrWrongDevice, code: &c}
	case c.usedAt != nil:
		return outcome{err: pickupcode.ErrAlreadyCollected, code: &c}
	case c.revokedAt != nil && !expired:
		return outcome{err: pickupcode.ErrWrongCode, code: &c}
	case c.graceOver(now):
		return outcome{err: pickupcode.ErrAlreadyCollected, code: &c}
	case c.lockedAt != nil || c.failed >= s.cfg.CodeMaxFailures:
		return outcome{err: pickupcode.ErrCodeLocked, code: &c}
	case expired:
		return outcome{err: pickupcode.ErrExpired, code: &c}
	}
	return outcome{code: &c}
}

// pipeTx is a transaction whose queued statements go out in one pipeline
// with the next statement that returns something (the audit record's
// insert), or with flush: one round trip instead of one per statement.
// The statements run in order; their results are checked before the
// next statement's. Only Exec and QueryRow take the queue along: whoever
// is handed a pipeTx (an AuditFunc) must not read what is queued.
type pipeTx struct {
	pgx.Tx
	b      *pgx.Batch
	checks []func(pgconn.CommandTag) error
}

// queue adds a statement; check (optional) judges its command tag.
func (p *pipeTx) queue(sql string, check func(pgconn.CommandTag) error, args ...any) {
	if p.b == nil {
		p.b = &pgx.Batch{}
	}
	p.b.Queue(sql, args...)
	p.checks = append(p.checks, check)
}

// send sends the queued statements and then sql (if any), checks the
// queued ones' results and returns the batch positioned at sql's result.
func (p *pipeTx) send(ctx context.Context, sql string, args ...any) (pgx.BatchResults, error) {
	if sql != "" {
		p.b.Queue(sql, args...)
	}
	checks := p.checks
	br := p.Tx.SendBatch(ctx, p.b) // reads p.b until closed: a new one for the next queue
	p.b, p.checks = nil, nil
	for _, check := range checks {
		tag, err := br.Exec()
		if err == nil && check != nil {
			err = check(tag)
		}
		if err != nil {
			br.Close()
			return nil, err
		}
	}
	return br, nil
}

// flush sends what is queued.
func (p *pipeTx) flush(ctx context.Context) error {
	if len(p.checks) == 0 {
		return nil
	}
	br, err := p.send(ctx, "")
	if err != nil {
		return err
	}
	return br.Close()
}

// Exec implements pgx.Tx: the queued statements, then sql.
func (p *pipeTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if len(p.checks) == 0 {
		return p.Tx.Exec(ctx, sql, args...)
	}
	br, err := p.send(ctx, sql, args...)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// QueryRow implements pgx.Tx: the queued statements, then sql.
func (p *pipeTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if len(p.checks) == 0 {
		return p.Tx.QueryRow(ctx, sql, args...)
	}
	br, err := p.send(ctx, sql, args...)
	if err != nil {
		return errRow{err}
	}
	return batchRow{br}
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// batchRow is the last result of a batch; Scan closes the batch.
type batchRow struct{ br pgx.BatchResults }

func (r batchRow) Scan(dest ...any) error {
	err := r.br.QueryRow().Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

// LockedUntil reports until when PIN entry is locked on a device (zero: open).
func (s *Service) LockedUntil(ctx context.Context, deviceID string) (time.Time, error) {
	now := s.clock()
	var until time.Time
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var burst *time.Time
		err := tx.QueryRow(ctx, `SELECT locked_until FROM code_devices WHERE device_id = $1`, deviceID).Scan(&burst)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		b := time.Time{}
		if burst != nil {
			b = *burst
		}
		f, err := s.recentFailures(ctx, tx, deviceID, now)
		if err != nil {
			return err
		}
		until = s.cfg.LockUntil(b, f, now)
		return nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("codes: locked until: %w", err)
	}
	return until, nil
}

// ClearBurstLock lets staff lift a device's burst lockout early, audited
// (device.pin_unlocked with actor and reason) in the caller's transaction,
// and reports whether a burst lock was in force. The failures before the
// lift stop counting towards the next burst lockout. The daily cap is not
// lifted: the security bound relies on it.
func (s *Service) ClearBurstLock(ctx context.Context, tx pgx.Tx, deviceID, actor, reason string) (wasLocked bool, err error) {
	now := s.clock()
	var was *time.Time
	err = tx.QueryRow(ctx, `WITH old AS (SELECT device_id, locked_until FROM code_devices WHERE device_id = $1 FOR UPDATE)
		UPDATE code_devices c SET locked_until = NULL, burst_cleared_at = $2 FROM old WHERE c.device_id = old.device_id
		RETURNING old.locked_until`, deviceID, now).Scan(&was)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("codes: clear lock: %w", err)
	}
	wasLocked = was != nil && now.Before(*was)
	return wasLocked, s.appendAudit(ctx, tx, AuditEvent{Actor: actor, Action: "device.pin_unlocked", Subject: "device:" + deviceID,
		Details: map[string]any{"device": deviceID, "actor": actor, "reason": reason, "was_locked": wasLocked}})
}

// since returns the times after cleared (all of them when cleared is nil).
func since(ts []time.Time, cleared *time.Time) []time.Time {
	if cleared == nil {
		return ts
	}
	out := make([]time.Time, 0, len(ts))
	for _, t := range ts {
		if t.After(*cleared) {
			out = append(out, t)
		}
	}
	return out
}
