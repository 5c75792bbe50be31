package codes

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/audit"
	"kluis/backend/store"
	"kluis/controller/pickupcode"
)

// AuditEvent is one audit record the Service asks to append. It never holds
// a PIN, a token or a date of birth.
type AuditEvent struct {
	// Actor is "device:<id>" for attempts, "system" otherwise.
	Actor string
	// Action is e.g. "code.issued", "code.denied", "code.used".
	Action string
	// Subject is "document:<uuid>" or "device:<id>".
	Subject string
	// Details are small non-secret facts (reason, device, code id).
	Details map[string]any
}

// AuditFunc appends an audit record inside tx (backend/audit's Append).
type AuditFunc func(ctx context.Context, tx pgx.Tx, e AuditEvent) error

// LockoutFunc is called after commit when a device's PIN entry gets locked.
type LockoutFunc func(ctx context.Context, deviceID string, until time.Time)

// Options configure [New].
type Options struct {
	// Pool is the database (required).
	Pool *pgxpool.Pool
	// Keys sign tokens and key PIN digests (required).
	Keys Keys
	// Config is the policy; zero fields get defaults.
	Config pickupcode.Config
	// Argon are the offline verifier costs; default
	// pickupcode.OfflineArgonParams.
	Argon pickupcode.ArgonParams
	// Clock gives the time; default time.Now.
	Clock func() time.Time
	// Rand is the randomness for PINs, code ids and salts; default crypto/rand.
	Rand io.Reader
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil: not registered.
	Registerer prometheus.Registerer
	// Audit appends audit records; nil: the hash-chained backend/audit log.
	Audit AuditFunc
	// OnLockout raises the alarm of a device lockout; nil: log only.
	OnLockout LockoutFunc
	// VerifyBatch is the most QR verifications (of as many devices)
	// decided and recorded in one transaction (batch.go); default 64; 1
	// gives every verification a transaction of its own. Batching is off
	// with an Audit function of the caller's.
	VerifyBatch int
	// VerifyBatches is how many such transactions run at once; default 1
	// (one writer: while its transaction runs, the next batch gathers).
	VerifyBatches int
	// VerifyTimeout bounds one batch's transaction; default 10 s.
	VerifyTimeout time.Duration
	// Sealer, when set, is handed each batch's decided attempts that
	// carry a Seal before their Verify returns, beside the next batch
	// (deviceops.AnswerSigner signs their answers with one signature).
	Sealer Sealer
	// VerifyLeaders, read once per attempt, overrides VerifyBatches when
	// it returns more than 0; nil: VerifyBatches. A function so that a
	// benchmark can pair one and two writers in one process.
	VerifyLeaders func() int
}

// Service issues and verifies codes.
type Service struct {
	pool      *pgxpool.Pool
	keys      Keys
	ownCheck  bool      // the signing key signs deterministically: tokens are checked by signing again (pickupcode.VerifyOwnToken)
	tokenKey  []byte    // Keys.TokenDigestKey: the codes' token digests
	tokenMACs sync.Pool // hash.Hash: HMAC-SHA256 under tokenKey, reused (tokenDigest)
	cfg       pickupcode.Config
	argon     pickupcode.ArgonParams
	now       func() time.Time
	rand      io.Reader
	log       *slog.Logger
	audit     AuditFunc
	onLockout LockoutFunc
	sealer    Sealer   // nil: none
	batch     *batcher // nil: no batching

	verified *prometheus.CounterVec
	batches  *prometheus.CounterVec // by outcome: ok, error
	batched  prometheus.Counter
	waited   prometheus.Histogram // an attempt's wait for its batch
	batchDur prometheus.Histogram // a batch's transaction
	// batchStage is a batch's transaction by stage: connect, read,
	// decide, write (claimBatch).
	batchStage *prometheus.HistogramVec
	issued     prometheus.Counter
	lockouts   prometheus.Counter
}

// batchBuckets are the verification batches' histogram buckets (seconds):
// a batch is a few milliseconds on a quiet server.
func batchBuckets() []float64 {
	return []float64{0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1, 2, 5, 10}
}

// New checks opts and returns a Service.
func New(opts Options) (*Service, error) {
	if opts.Pool == nil {
		return nil, fmt.Errorf("codes: no pool: %w", pickupcode.ErrInvalid)
	}
	if err := opts.Keys.Validate(); err != nil {
		return nil, err
	}
	cfg := opts.Config.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Argon == (pickupcode.ArgonParams{}) {
		opts.Argon = pickupcode.OfflineArgonParams
	}
	if err := opts.Argon.Validate(); err != nil {
		return nil, err
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	batching := opts.Audit == nil
	if opts.Audit == nil {
		opts.Audit = AuditLog(opts.Clock)
	}
	if opts.VerifyBatch <= 0 {
		opts.VerifyBatch = 64
	}
	if opts.VerifyBatches <= 0 {
		opts.VerifyBatches = 1
	}
	if opts.VerifyTimeout <= 0 {
		opts.VerifyTimeout = 10 * time.Second
	}
	s := &Service{
		pool: opts.Pool, keys: opts.Keys, ownCheck: pickupcode.Deterministic(opts.Keys.Signing),
		tokenKey: opts.Keys.TokenDigestKey(), cfg: cfg, argon: opts.Argon,
		now: opts.Clock, rand: opts.Rand, log: opts.Logger.With("part", "codes"),
		audit: opts.Audit, onLockout: opts.OnLockout, sealer: opts.Sealer,
		verified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kluis_codes_verifications_total",
			Help: "Code verifications by outcome (reason ok or the kiosk-safe denial reason).",
		}, []string{"reason"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kluis_codes_verify_batches_total",
			Help: "Transactions that decided a batch of QR verifications, by outcome (ok; error: none of its attempts claimed).",
		}, []string{"outcome"}),
		batched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kluis_codes_verify_batched_total",
			Help: "QR verifications that went into a batch (divided by kluis_codes_verify_batches_total: the mean batch size).",
		}),
		waited: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kluis_codes_verify_batch_wait_seconds",
			Help:    "How long a batched QR verification waited in the queue before its batch's transaction began.",
			Buckets: batchBuckets(),
		}),
		batchDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kluis_codes_verify_batch_seconds",
			Help:    "How long a batch's transaction took, from taking a connection to the commit's answer.",
			Buckets: batchBuckets(),
		}),
		batchStage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kluis_codes_verify_batch_stage_seconds",
			Help: "A batch's transaction by stage: connect (taking a pooled connection), read (the first round trip: begin, lock the devices, read and lock the codes), " +
				"decide (deciding and building the writes, in the backend), write (the second round trip: the writes and the commit with its WAL flush).",
			Buckets: batchBuckets(),
		}, []string{"stage"}),
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kluis_codes_issued_total", Help: "Codes issued.",
		}),
		lockouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kluis_codes_device_lockouts_total", Help: "Times a device's PIN entry was locked.",
		}),
	}
	if batching && opts.VerifyBatch > 1 {
		s.batch = newBatcher(s, opts.VerifyBatch, opts.VerifyBatches, opts.VerifyTimeout)
		s.batch.leaders = opts.VerifyLeaders
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.verified, s.batches, s.batched, s.waited, s.batchDur, s.batchStage, s.issued, s.lockouts} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("codes: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Config returns the effective policy.
func (s *Service) Config() pickupcode.Config { return s.cfg }

// PublicKey returns the key devices verify QR tokens with.
func (s *Service) PublicKey() []byte { return s.keys.Public() }

func (s *Service) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

var (
	deviceIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	uuidPattern     = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// Compartment addresses the compartment a code opens.
type Compartment struct {
	// ID is compartments.id.
	ID int64
	// Number is the 1-based label people see.
	Number int
	// Board and Channel are the 0-based hardware address.
	Board, Channel int
}

// IssueRequest describes the code to issue.
type IssueRequest struct {
	// DocumentID is documents.id (a UUID).
	DocumentID string
	// DocumentKind is documents.kind; decides the date-of-birth factor.
	DocumentKind string
	// BirthDate is the holder's date of birth ("YYYY-MM-DD"); required when
	// the kind needs it.
	BirthDate string
	// DeviceID is the device holding the document.
	DeviceID string
	// Compartment is where the document is.
	Compartment Compartment
	// ExpiresAt ends the code's validity (the pickup deadline).
	ExpiresAt time.Time
	// At is when the code is issued: the time of the transition (load,
	// reissue) that issues it; zero means the codes' clock. The expiry is
	// judged against it, so a transaction that took long on a busy
	// machine is not refused for the time it took.
	At time.Time
}

// Credentials are what the citizen receives. The PIN exists only here.
type Credentials struct {
	// CodeID is the base64url code id (not secret).
	CodeID string
	// QRToken is the signed token to render as a QR code.
	QRToken string
	// PIN is the numeric code, in clear, for the notification only.
	PIN string
	// NeedsDOB tells whether the date of birth is checked with the PIN.
	NeedsDOB bool
	// ExpiresAt ends the validity.
	ExpiresAt time.Time
}

// ErrExpiryPassed means the code's expiry (the pickup deadline cut to the
// second) is not after the time of issue: a reissue after the deadline,
// before the sweep expired the document. It wraps store.ErrConflict (HTTP
// 409).
var ErrExpiryPassed = fmt.Errorf("the pickup deadline has passed: %w", store.ErrConflict)

// ErrTooManyCodes means the device already has the most active codes the
// security analysis allows.
// It wraps store.ErrConflict (HTTP 409).
var ErrTooManyCodes = fmt.Errorf("too many active codes on the device: %w", store.ErrConflict)

// Issue creates a code for a document inside the caller's transaction and
// revokes every earlier code of that document.
func (s *Service) Issue(ctx context.Context, tx pgx.Tx, req IssueRequest) (Credentials, error) {
	now := s.clock()
	if !req.At.IsZero() {
		now = req.At.UTC()
	}
	if !deviceIDPattern.MatchString(req.DeviceID) {
		return Credentials{}, fmt.Errorf("codes: issue: device id %q: %w", req.DeviceID, pickupcode.ErrInvalid)
	}
	if !uuidPattern.MatchString(req.DocumentID) || req.DocumentKind == "" {
		return Credentials{}, fmt.Errorf("codes: issue: a document id (UUID) and kind are required: %w", pickupcode.ErrInvalid)
	}
	if req.Compartment.ID <= 0 || req.Compartment.Number < 1 || req.Compartment.Board < 0 || req.Compartment.Channel < 0 {
		return Credentials{}, fmt.Errorf("codes: issue: compartment %+v: %w", req.Compartment, pickupcode.ErrInvalid)
	}
	exp := req.ExpiresAt.UTC().Truncate(time.Second)
	if !exp.After(now) {
		return Credentials{}, fmt.Errorf("codes: issue: expiry %s (the deadline cut to the second) is not after %s: %w", exp, now, ErrExpiryPassed)
	}
	if exp.Sub(now) > MaxValidity {
		return Credentials{}, fmt.Errorf("codes: issue: expiry %s not within %s from now: %w", exp, MaxValidity, pickupcode.ErrInvalid)
	}
	needsDOB := s.cfg.NeedsDOB(req.DocumentKind)
	dob := ""
	if needsDOB {
		d, err := pickupcode.ParseBirthDate(req.BirthDate)
		if err != nil {
			return Credentials{}, fmt.Errorf("codes: issue: %s needs the date of birth: %w", req.DocumentKind, err)
		}
		dob = d
	}
	salt, err := s.deviceSalt(ctx, tx, req.DeviceID, now)
	if err != nil {
		return Credentials{}, err
	}
	if _, err := tx.Exec(ctx, `UPDATE codes SET revoked_at = $2
		WHERE document_id = $1::uuid AND used_at IS NULL AND revoked_at IS NULL`, req.DocumentID, now); err != nil {
		return Credentials{}, fmt.Errorf("codes: issue: revoke earlier codes: %w", err)
	}
	var active int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM codes WHERE device_id = $1
		AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2`, req.DeviceID, now).Scan(&active); err != nil {
		return Credentials{}, fmt.Errorf("codes: issue: count active codes: %w", err)
	}
	if active >= pickupcode.MaxActiveCodesPerDevice {
		return Credentials{}, fmt.Errorf("codes: issue: device %s has %d active codes: %w", req.DeviceID, active, ErrTooManyCodes)
	}
	id := make([]byte, pickupcode.CodeIDSize)
	if _, err := io.ReadFull(s.rand, id); err != nil {
		return Credentials{}, fmt.Errorf("codes: issue: code id: %w", err)
	}
	cid := pickupcode.FormatCodeID(id)
	token, err := pickupcode.SignToken(s.keys.Signing, pickupcode.Claims{Version: 1, CodeID: cid, DeviceID: req.DeviceID, Expires: exp.Unix()})
	if err != nil {
		return Credentials{}, err
	}
	// The row keeps a keyed digest of the token (never the token), which
	// the online check compares instead of signing the token again.
	tokenD := s.tokenDigest(token)
	var pin string
	inserted := false
	for try := 0; try < 20 && !inserted; try++ {
		pin, err = GeneratePIN(s.rand, s.cfg.PINDigits)
		if err != nil {
			return Credentials{}, err
		}
		var dobD []byte
		if needsDOB {
			dobD = dobDigest(s.keys.PIN, id, dob)
		}
		if s.keys.PreviousPIN != nil {
			// During a PIN key rotation the unique index cannot see a code
			// of the device with this PIN under the previous key: draw
			// again if one may still be open (or re-armed).
			var taken bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM codes WHERE device_id = $1 AND pin_digest = $2
				AND revoked_at IS NULL)`, req.DeviceID, PINDigest(s.keys.PreviousPIN, req.DeviceID, pin)).Scan(&taken); err != nil {
				return Credentials{}, fmt.Errorf("codes: issue: PIN under the previous key: %w", err)
			}
			if taken {
				continue
			}
		}
		verifier := pickupcode.OfflineVerifier(s.argon, salt, req.DeviceID, pin, dob)
		err = pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error { // savepoint: a PIN collision only undoes this insert
			_, err := sp.Exec(ctx, `INSERT INTO codes (id, document_id, document_kind, device_id, compartment_id,
				compartment_number, board, channel, pin_digest, needs_dob, dob_digest, offline_verifier,
				offline_params, expires_at, created_at, token_digest)
				VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
				id, req.DocumentID, req.DocumentKind, req.DeviceID, req.Compartment.ID, req.Compartment.Number,
				req.Compartment.Board, req.Compartment.Channel, PINDigest(s.keys.PIN, req.DeviceID, pin),
				needsDOB, dobD, verifier, s.argon.String(), exp, now, tokenD)
			return err
		})
		var pe *pgconn.PgError
		switch {
		case err == nil:
			inserted = true
		case errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "codes_open_pin_idx":
			continue
		default:
			return Credentials{}, fmt.Errorf("codes: issue: insert: %w", err)
		}
	}
	if !inserted {
		return Credentials{}, fmt.Errorf("codes: issue: no unique PIN after 20 draws: %w", pickupcode.ErrInvalid)
	}
	if err := s.appendAudit(ctx, tx, AuditEvent{Action: "code.issued", Subject: "document:" + req.DocumentID, Details: map[string]any{
		"code_id": cid, "device": req.DeviceID, "expires_at": exp, "needs_dob": needsDOB,
	}}); err != nil {
		return Credentials{}, err
	}
	s.issued.Inc()
	s.log.Info("code issued", "document", req.DocumentID, "code_id", cid, "device", req.DeviceID, "expires_at", exp)
	return Credentials{CodeID: cid, QRToken: token, PIN: pin, NeedsDOB: needsDOB, ExpiresAt: exp}, nil
}

// Revoke revokes every open code of a document (collected elsewhere,
// cancelled, returned to the counter) inside the caller's transaction and
// returns how many it revoked.
func (s *Service) Revoke(ctx context.Context, tx pgx.Tx, documentID string) (int, error) {
	if !uuidPattern.MatchString(documentID) {
		return 0, fmt.Errorf("codes: revoke: document id %q: %w", documentID, pickupcode.ErrInvalid)
	}
	tag, err := tx.Exec(ctx, `UPDATE codes SET revoked_at = $2
		WHERE document_id = $1::uuid AND used_at IS NULL AND revoked_at IS NULL`, documentID, s.clock())
	if err != nil {
		return 0, fmt.Errorf("codes: revoke: %w", err)
	}
	n := int(tag.RowsAffected())
	if n > 0 {
		if err := s.appendAudit(ctx, tx, AuditEvent{Action: "code.revoked", Subject: "document:" + documentID,
			Details: map[string]any{"count": n}}); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// PurgeDocuments erases, inside the retention purge's transaction
// (service.Purger), what the dead codes of these documents (revoked, used
// or expired) derived from the holder's date of birth: the date-of-birth
// HMAC and the offline verifier of PIN and date of birth; purged_at marks
// them. A live code keeps both (a purged document has none: its codes
// expired with its deadline or were revoked when it closed).
func (s *Service) PurgeDocuments(ctx context.Context, tx pgx.Tx, documentIDs []string) error {
	if len(documentIDs) == 0 {
		return nil
	}
	now := s.clock()
	if _, err := tx.Exec(ctx, `UPDATE codes SET dob_digest = NULL, offline_verifier = '', purged_at = $2
		WHERE document_id = ANY($1::uuid[]) AND purged_at IS NULL
		AND (revoked_at IS NOT NULL OR used_at IS NOT NULL OR expires_at <= $2)`, documentIDs, now); err != nil {
		return fmt.Errorf("codes: purge: %w", err)
	}
	return nil
}

func (s *Service) deviceSalt(ctx context.Context, tx pgx.Tx, deviceID string, now time.Time) ([]byte, error) {
	salt := make([]byte, 16)
	if _, err := io.ReadFull(s.rand, salt); err != nil {
		return nil, fmt.Errorf("codes: device salt: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO code_devices (device_id, offline_salt, created_at)
		VALUES ($1, $2, $3) ON CONFLICT (device_id) DO NOTHING`, deviceID, salt, now); err != nil {
		return nil, fmt.Errorf("codes: device %s: %w", deviceID, err)
	}
	// The row lock serializes issues and verifications on one device (the
	// active-code count and PIN uniqueness); NO KEY UPDATE leaves foreign
	// key checks of other transactions alone. Lock order everywhere:
	// code_devices row, then codes rows, then the audit log.
	if err := tx.QueryRow(ctx, `SELECT offline_salt FROM code_devices WHERE device_id = $1 FOR NO KEY UPDATE`, deviceID).Scan(&salt); err != nil {
		return nil, fmt.Errorf("codes: device salt: %w", err)
	}
	return salt, nil
}

// AuditLog is the AuditFunc writing to backend/audit's hash-chained log
// with times from clock.
func AuditLog(clock func() time.Time) AuditFunc {
	return func(ctx context.Context, tx pgx.Tx, e AuditEvent) error {
		if e.Actor == "" {
			e.Actor = "system"
		}
		_, err := audit.Append(ctx, tx, audit.Entry{At: clock(), Actor: e.Actor, Action: e.Action,
			Subject: e.Subject, Details: e.Details})
		return err
	}
}

func (s *Service) appendAudit(ctx context.Context, tx pgx.Tx, e AuditEvent) error {
	if s.audit == nil {
		return nil
	}
	if err := s.audit(ctx, tx, e); err != nil {
		return fmt.Errorf("codes: audit %s: %w", e.Action, err)
	}
	return nil
}

// sameDigest compares two digests in constant time.
func sameDigest(a, b []byte) bool { return hmac.Equal(a, b) }

// RevokeDevice revokes every open code of a device (stolen or compromised
// device) inside the caller's transaction and returns the ids of the
// documents whose codes must be re-issued.
func (s *Service) RevokeDevice(ctx context.Context, tx pgx.Tx, deviceID string) ([]string, error) {
	rows, err := tx.Query(ctx, `UPDATE codes SET revoked_at = $2
		WHERE device_id = $1 AND used_at IS NULL AND revoked_at IS NULL RETURNING document_id::text`, deviceID, s.clock())
	if err != nil {
		return nil, fmt.Errorf("codes: revoke device: %w", err)
	}
	docs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("codes: revoke device: %w", err)
	}
	if err := s.appendAudit(ctx, tx, AuditEvent{Action: "code.device_revoked", Subject: "device:" + deviceID,
		Details: map[string]any{"device": deviceID, "count": len(docs)}}); err != nil {
		return nil, err
	}
	return docs, nil
}
