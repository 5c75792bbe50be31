package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/codes"
	"kluis/backend/internal/periodic"
	"kluis/backend/lifecycle"
	"kluis/backend/service"
	"kluis/backend/store"
)

// Defaults of OutboxOptions.
const (
	DefaultOutboxPoll        = 2 * time.Second
	DefaultOutboxWorkers     = 2
	DefaultOutboxSendTimeout = 30 * time.Second
	DefaultOutboxMaxAttempts = 12
	DefaultOutboxRetryBase   = 30 * time.Second
	DefaultOutboxRetryMax    = time.Hour
	DefaultOutboxJitter      = 0.2
)

// OutboxOptions configure [NewOutbox].
type OutboxOptions struct {
	// Pool is the database (required).
	Pool *pgxpool.Pool
	// Notifier renders and sends the messages (required); its OnNotified
	// is called after a ready message reached the holder.
	Notifier *Notifier
	// SealKey (32 bytes, required) seals the codes of queued ready
	// messages with AES-256-GCM; kluis-backend derives it from its keys.
	SealKey []byte
	// PreviousSealKey (32 bytes, optional) opens, never seals, what was
	// sealed before a rotation of the backend's PIN key, so that messages
	// queued then are still sent.
	PreviousSealKey []byte
	// Poll is how often the outbox is checked for due rows besides the
	// wake-ups after a commit; default DefaultOutboxPoll.
	Poll time.Duration
	// Workers send in parallel, each holding one row (and one database
	// connection) at a time; default DefaultOutboxWorkers.
	Workers int
	// SendTimeout bounds one channel's send (one SMTP conversation, one
	// gateway call); default DefaultOutboxSendTimeout.
	SendTimeout time.Duration
	// MaxAttempts is how many attempts a message gets before it is given
	// up; default DefaultOutboxMaxAttempts.
	MaxAttempts int
	// RetryBase is the wait after the first failed attempt, doubled after
	// each further one up to RetryMax (defaults DefaultOutboxRetryBase,
	// DefaultOutboxRetryMax).
	RetryBase, RetryMax time.Duration
	// Jitter spreads the retries of messages that failed together (a
	// gateway down for a while), so that they do not all come back in the
	// same second: each wait is shortened by up to this fraction of its
	// back-off, never lengthened (RetryMax stays the longest wait). At
	// most 0.5; default DefaultOutboxJitter; negative: none.
	Jitter float64
	// Rand returns a number in [0, 1) that chooses the jitter of one wait;
	// default math/rand/v2's Float64.
	Rand func() float64
	// Clock gives the time rows are queued and due at; default time.Now.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Registerer receives the outbox metrics; nil: not registered.
	Registerer prometheus.Registerer
}

// Outbox queues notifications in the database inside the transaction of
// the state change they tell about (service.Outbox) and sends them (Run):
// at least once, never lost by a crash after the commit, retried with
// back-off while a gateway fails. Every replica runs one; rows are claimed
// with FOR UPDATE SKIP LOCKED, so two replicas never send the same row at
// the same time.
type Outbox struct {
	pool    *pgxpool.Pool
	n       *Notifier
	seal    *sealer
	poll    time.Duration
	workers int
	timeout time.Duration
	max     int
	base    time.Duration
	maxWait time.Duration
	jitter  float64
	rand    func() float64
	now     func() time.Time
	log     *slog.Logger
	wake    chan struct{}

	pending  prometheus.Gauge
	oldest   prometheus.Gauge
	retries  prometheus.Counter
	finished *prometheus.CounterVec
}

var (
	_ service.Outbox   = (*Outbox)(nil)
	_ service.Notifier = (*Outbox)(nil)
)

// NewOutbox checks o and returns the outbox.
func NewOutbox(o OutboxOptions) (*Outbox, error) {
	if o.Pool == nil || o.Notifier == nil {
		return nil, fmt.Errorf("notify: the outbox needs a pool and a notifier: %w", ErrInvalid)
	}
	s, err := newSealer(o.SealKey, o.PreviousSealKey)
	if err != nil {
		return nil, err
	}
	if o.Poll <= 0 {
		o.Poll = DefaultOutboxPoll
	}
	if o.Workers <= 0 {
		o.Workers = DefaultOutboxWorkers
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = DefaultOutboxSendTimeout
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultOutboxMaxAttempts
	}
	if o.RetryBase <= 0 {
		o.RetryBase = DefaultOutboxRetryBase
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultOutboxRetryMax
	}
	if o.RetryMax < o.RetryBase {
		o.RetryMax = o.RetryBase
	}
	switch {
	case o.Jitter > 0.5:
		return nil, fmt.Errorf("notify: outbox jitter %g above 0.5: %w", o.Jitter, ErrInvalid)
	case o.Jitter == 0:
		o.Jitter = DefaultOutboxJitter
	case o.Jitter < 0:
		o.Jitter = 0
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	x := &Outbox{jitter: o.Jitter, rand: o.Rand, pool: o.Pool, n: o.Notifier, seal: s, poll: o.Poll, workers: o.Workers, timeout: o.SendTimeout,
		max: o.MaxAttempts, base: o.RetryBase, maxWait: o.RetryMax, now: o.Clock,
		log: o.Logger.With("part", "notify-outbox"), wake: make(chan struct{}, 1),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kluis_notify_outbox_pending",
			Help: "Notifications queued and not yet sent (including those waiting for a retry), at the last check."}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kluis_notify_outbox_oldest_seconds",
			Help: "Age of the oldest notification not yet sent, at the last check (0: none)."}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "kluis_notify_outbox_retries_total",
			Help: "Notification attempts that failed on some channel and were scheduled again."}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kluis_notify_outbox_finished_total",
			Help: "Queued notifications finished: delivered (every channel done), obsolete (no longer applies) or gave_up (attempts exhausted)."},
			[]string{"result"}),
	}
	for _, r := range []string{"delivered", "obsolete", "gave_up"} {
		x.finished.WithLabelValues(r)
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{x.pending, x.oldest, x.retries, x.finished} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("notify: register metrics: %w", err)
			}
		}
	}
	return x, nil
}

// Enqueue implements service.Outbox: it inserts the notification in the
// transition's transaction (none for a document whose holder's data was
// erased: ErrPurged). The codes of a ready message are sealed, and
// the codes of earlier ready messages of the document still queued are
// forgotten (a reissue revoked them).
func (x *Outbox) Enqueue(ctx context.Context, tx pgx.Tx, note service.Notification) error {
	msg, ok := messageFor(note.Kind)
	if !ok {
		return fmt.Errorf("notify: kind %q: %w", note.Kind, ErrInvalid)
	}
	docID := note.Document.ID
	if note.Document.PurgedAt != nil {
		// Nobody to tell (ErrPurged): nothing is queued.
		return nil
	}
	var sealed []byte
	if msg == MsgReady {
		c, ok := note.Secret.(codes.Credentials)
		if !ok || c.QRToken == "" || c.PIN == "" {
			return fmt.Errorf("notify: %s for %s without credentials: %w", note.Kind, docID, ErrInvalid)
		}
		plain, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("notify: queue: %w", err)
		}
		if sealed, err = x.seal.seal(plain, docID, note.Kind); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE notify_outbox SET sealed = NULL WHERE document_id = $1::uuid
			AND kind IN ('loaded', 'reissued') AND sealed IS NOT NULL`, docID); err != nil {
			return fmt.Errorf("notify: queue: %w", err)
		}
	}
	now := x.now().UTC()
	if _, err := tx.Exec(ctx, `INSERT INTO notify_outbox (document_id, kind, compartment, sealed, next_at, created_at)
		VALUES ($1::uuid, $2, $3, $4, $5, $5)`, docID, note.Kind, note.Compartment.Number, sealed, now); err != nil {
		return fmt.Errorf("notify: queue %s for %s: %w", note.Kind, docID, err)
	}
	return nil
}

// Notify implements service.Notifier as the hook after the commit: it
// sends the document's due messages (the one Enqueue just queued) at once,
// as the sender would, so that the holder is told before the use case
// returns when the gateways work. A failure leaves the message queued for
// its retry; a crash before or during this call loses nothing (any
// replica's sender finds the row). It never returns an error.
func (x *Outbox) Notify(ctx context.Context, note service.Notification) error {
	// The caller going away (an HTTP client hanging up) must not cut a
	// send short: that would only send the message twice.
	ctx = context.WithoutCancel(ctx)
	for range maxPerDrain {
		ok, err := x.send(ctx, note.Document.ID)
		if err != nil {
			x.log.Warn("outbox: send after commit", "document", note.Document.ID, "err", err)
			x.Wake()
			return nil
		}
		if !ok {
			return nil
		}
	}
	return nil
}

// Wake makes Run look for due rows now.
func (x *Outbox) Wake() {
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// Run sends what is due now, then whenever woken and at least every Poll,
// until ctx ends; it returns ctx's error.
func (x *Outbox) Run(ctx context.Context) error {
	return periodic.Loop{Every: x.poll, Wake: x.wake}.Run(ctx, func(ctx context.Context) { x.Drain(ctx) })
}

// maxPerDrain bounds the rows one worker handles in one Drain.
const maxPerDrain = 1000

// Drain sends every row due now with the workers in parallel, refreshes
// the depth gauges and returns how many rows it handled. Failures are
// logged; the rows stay for the next pass.
func (x *Outbox) Drain(ctx context.Context) int {
	var (
		wg    sync.WaitGroup
		total atomic.Int64
	)
	for range x.workers {
		wg.Go(func() {
			for range maxPerDrain {
				ok, err := x.SendOne(ctx)
				if err != nil {
					if ctx.Err() == nil {
						x.log.Warn("outbox", "err", err)
					}
					return
				}
				if !ok {
					return
				}
				total.Add(1)
			}
		})
	}
	wg.Wait()
	x.markTold(ctx)
	x.refresh(ctx)
	return int(total.Load())
}

// markTold marks notified the loaded documents whose ready message did
// reach the holder: OnNotified runs after the send's commit, so a crash in
// between leaves them loaded.
func (x *Outbox) markTold(ctx context.Context) {
	if x.n.opts.OnNotified == nil {
		return
	}
	rows, err := x.pool.Query(ctx, `SELECT d.id::text FROM documents d WHERE d.state = 'loaded'
		AND EXISTS (SELECT 1 FROM notifications n WHERE n.document_id = d.id
			AND n.kind IN ('loaded', 'reissued') AND n.status IN ('sent', 'needed'))
		ORDER BY d.id LIMIT 100`)
	if err != nil {
		if ctx.Err() == nil {
			x.log.Warn("outbox: told but not marked", "err", err)
		}
		return
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		if ctx.Err() == nil {
			x.log.Warn("outbox: told but not marked", "err", err)
		}
		return
	}
	for _, id := range ids {
		if err := x.n.opts.OnNotified(ctx, id); err != nil && !errors.Is(err, lifecycle.ErrForbiddenTransition) && ctx.Err() == nil {
			x.log.Warn("mark notified", "document", id, "err", err)
		}
	}
}

// refresh sets the depth gauges from the table.
func (x *Outbox) refresh(ctx context.Context) {
	var n int
	var oldest *time.Time
	if err := x.pool.QueryRow(ctx, `SELECT count(*), min(created_at) FROM notify_outbox WHERE state = 'pending'`).Scan(&n, &oldest); err != nil {
		if ctx.Err() == nil {
			x.log.Warn("outbox depth", "err", err)
		}
		return
	}
	x.pending.Set(float64(n))
	age := 0.0
	if oldest != nil {
		age = max(0, x.now().Sub(*oldest).Seconds())
	}
	x.oldest.Set(age)
}

// row is one claimed outbox row.
type outboxRow struct {
	id       int64
	docID    string
	kind     string
	number   int
	sealed   []byte
	done     []string
	attempts int
}

// SendOne claims one due row (skipping rows other workers or replicas
// hold), sends it on the channels not yet done, records the attempts in
// notifications and deletes the row, or schedules a retry, in the same
// transaction. It reports whether it found a row.
func (x *Outbox) SendOne(ctx context.Context) (bool, error) { return x.send(ctx, "") }

// send is SendOne for the rows of one document (docID "": any).
func (x *Outbox) send(ctx context.Context, docID string) (bool, error) {
	var (
		found bool
		after func()
	)
	err := pgx.BeginFunc(ctx, x.pool, func(tx pgx.Tx) error {
		var r outboxRow
		err := tx.QueryRow(ctx, `SELECT id, document_id::text, kind, compartment, sealed, channels_done, attempts
			FROM notify_outbox WHERE state = 'pending' AND next_at <= $1 AND ($2 = '' OR document_id::text = $2)
			ORDER BY next_at, id LIMIT 1 FOR UPDATE SKIP LOCKED`,
			x.now().UTC(), docID).Scan(&r.id, &r.docID, &r.kind, &r.number, &r.sealed, &r.done, &r.attempts)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("notify: outbox claim: %w", err)
		}
		found = true
		after, err = x.process(ctx, tx, r)
		return err
	})
	if err != nil {
		return found, err
	}
	if after != nil {
		after()
	}
	return found, nil
}

// process handles one claimed row inside tx; the returned function runs
// after the commit.
func (x *Outbox) process(ctx context.Context, tx pgx.Tx, r outboxRow) (func(), error) {
	doc, err := store.GetDocument(ctx, tx, r.docID)
	if err != nil {
		return nil, fmt.Errorf("notify: outbox document %s: %w", r.docID, err)
	}
	msg, ok := messageFor(r.kind)
	if !ok {
		return nil, x.giveUp(ctx, tx, r, fmt.Sprintf("unknown kind %q", r.kind))
	}
	if doc.PurgedAt != nil {
		// The holder's data was erased since it was queued (ErrPurged):
		// nobody to tell, no name to write.
		return nil, x.obsolete(ctx, tx, r, doc.State)
	}
	note := service.Notification{Kind: r.kind, Document: doc, Compartment: store.Compartment{Number: r.number}}
	switch {
	case msg == MsgReady:
		// The codes are forgotten when the document leaves its
		// compartment or gets new codes: this message no longer applies.
		if r.sealed == nil || !doc.State.AwaitsHolder() {
			return nil, x.obsolete(ctx, tx, r, doc.State)
		}
		plain, err := x.seal.open(r.sealed, r.docID, r.kind)
		if err != nil {
			return nil, x.giveUp(ctx, tx, r, err.Error())
		}
		var cr codes.Credentials
		if err := json.Unmarshal(plain, &cr); err != nil {
			return nil, x.giveUp(ctx, tx, r, "sealed secret unreadable")
		}
		note.Secret = cr
	case msg == MsgReminder && !doc.State.AwaitsHolder():
		return nil, x.obsolete(ctx, tx, r, doc.State)
	}
	p, err := x.n.prepare(ctx, tx, note)
	if err != nil {
		if errors.Is(err, ErrInvalid) {
			return nil, x.giveUp(ctx, tx, r, redact(err.Error()))
		}
		return nil, x.retry(ctx, tx, r, r.done, redact(err.Error()))
	}
	var (
		sentNow []string
		again   []string
		errs    []error
	)
	for _, ch := range x.n.channels(doc, msg) {
		if slices.Contains(r.done, ch) {
			continue
		}
		err := x.n.send(ctx, tx, p, ch, x.timeout)
		switch {
		case err == nil:
			sentNow = append(sentNow, ch)
		case errors.Is(err, ErrInvalid):
			// a wrong address, no slip printer: trying again changes nothing
			errs = append(errs, err)
		default:
			again = append(again, ch)
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	done := append(slices.Clone(r.done), sentNow...)
	var afterCommit func()
	if msg == MsgReady && len(sentNow) > 0 && x.n.opts.OnNotified != nil {
		afterCommit = func() {
			if err := x.n.opts.OnNotified(context.WithoutCancel(ctx), r.docID); err != nil && !errors.Is(err, lifecycle.ErrForbiddenTransition) {
				x.log.Warn("mark notified", "document", r.docID, "err", err)
			}
		}
	}
	errText := ""
	if len(errs) > 0 {
		errText = redact(errors.Join(errs...).Error())
	}
	if len(again) > 0 && r.attempts+1 < x.max {
		x.log.Warn("a channel failed, will retry", "document", r.docID, "kind", r.kind, "attempt", r.attempts+1, "err", errText)
		return afterCommit, x.retry(ctx, tx, r, done, errText)
	}
	if msg == MsgReady && len(done) == 0 {
		// Nothing reached the holder and nothing will: the counter
		// hands over a printed slip (or calls them).
		x.fallbackSlip(ctx, tx, p, r)
	}
	if len(again) > 0 {
		return afterCommit, x.giveUp(ctx, tx, r, errText)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM notify_outbox WHERE id = $1`, r.id); err != nil {
		return nil, fmt.Errorf("notify: outbox finish: %w", err)
	}
	x.finished.WithLabelValues("delivered").Inc()
	if errText != "" {
		x.log.Warn("a channel failed for good", "document", r.docID, "kind", r.kind, "err", errText)
	}
	return afterCommit, nil
}

// fallbackSlip writes a pickup slip for a ready message that reached
// nobody, when a slip printer is configured and no slip was the channel.
func (x *Outbox) fallbackSlip(ctx context.Context, tx pgx.Tx, p *prepared, r outboxRow) {
	if x.n.opts.Slips == nil || slices.Contains(x.n.channels(p.doc, p.msg), ChannelSlip) {
		return
	}
	if err := x.n.send(ctx, tx, p, ChannelSlip, x.timeout); err != nil {
		x.log.Error("fallback slip", "document", r.docID, "err", redact(err.Error()))
	}
}

// backoff is the wait after the attempts-th failed attempt: RetryBase
// doubled per attempt up to RetryMax, shortened by a random part of at
// most Jitter of it.
func (x *Outbox) backoff(attempts int) time.Duration {
	d := x.base
	for i := 1; i < attempts && d < x.maxWait; i++ {
		d *= 2
	}
	d = min(d, x.maxWait)
	r := min(max(x.rand(), 0), 1)
	return d - time.Duration(x.jitter*r*float64(d))
}

func (x *Outbox) retry(ctx context.Context, tx pgx.Tx, r outboxRow, done []string, errText string) error {
	attempts := r.attempts + 1
	if attempts >= x.max {
		return x.giveUp(ctx, tx, r, errText)
	}
	next := x.now().UTC().Add(x.backoff(attempts))
	if _, err := tx.Exec(ctx, `UPDATE notify_outbox SET attempts = $2, channels_done = $3, next_at = $4, last_error = $5 WHERE id = $1`,
		r.id, attempts, done, next, clip(errText)); err != nil {
		return fmt.Errorf("notify: outbox retry: %w", err)
	}
	x.retries.Inc()
	return nil
}

func (x *Outbox) giveUp(ctx context.Context, tx pgx.Tx, r outboxRow, errText string) error {
	if _, err := tx.Exec(ctx, `UPDATE notify_outbox SET state = 'gave_up', sealed = NULL, attempts = attempts + 1,
		last_error = $2, gave_up_at = $3 WHERE id = $1`, r.id, clip(errText), x.now().UTC()); err != nil {
		return fmt.Errorf("notify: outbox give up: %w", err)
	}
	x.finished.WithLabelValues("gave_up").Inc()
	x.log.Error("notification given up", "document", r.docID, "kind", r.kind, "attempts", r.attempts+1, "err", errText)
	return nil
}

func (x *Outbox) obsolete(ctx context.Context, tx pgx.Tx, r outboxRow, state lifecycle.State) error {
	if _, err := tx.Exec(ctx, `DELETE FROM notify_outbox WHERE id = $1`, r.id); err != nil {
		return fmt.Errorf("notify: outbox drop: %w", err)
	}
	x.finished.WithLabelValues("obsolete").Inc()
	x.log.Info("queued notification no longer applies", "document", r.docID, "kind", r.kind, "state", state)
	return nil
}

// clip shortens an error text for storage.
func clip(s string) string {
	if len(s) > 500 {
		return s[:500]
	}
	return s
}

// Undelivered is a queued notification that has not reached its holder
// after at least one attempt: still waiting for its next try, or given up.
type Undelivered struct {
	DocumentID string
	// Number and the holder's names are empty once the document is purged.
	Number, FirstName, LastName string
	DocumentState               lifecycle.State
	// Kind is the service.Notify* kind (loaded, reissued, reminder,
	// collected, expired).
	Kind string
	// GaveUp: every attempt failed; nothing will try again. A given-up
	// ready message ended as a pickup slip for the counter.
	GaveUp   bool
	Attempts int
	// Channels are the channels (email, sms, slip) whose attempts at this
	// message failed and that have not reached the holder since, sorted.
	Channels []string
	// LastError is the last attempt's failure in a form safe to show
	// staff (see SafeError); "" when none was stored.
	LastError string
	// NextAt is when a waiting message is tried again.
	NextAt    time.Time
	CreatedAt time.Time
}

// undeliveredColumns are what scanUndelivered reads, from notify_outbox o
// joined with documents d.
const undeliveredColumns = `o.document_id::text, coalesce(d.number, ''), coalesce(d.holder_first_name, ''),
	coalesce(d.holder_last_name, ''), d.state, o.kind, o.state = 'gave_up', o.attempts,
	coalesce((SELECT array_agg(DISTINCT n.channel ORDER BY n.channel) FROM notifications n
		WHERE n.document_id = o.document_id AND n.kind = o.kind AND n.status = 'failed' AND n.created_at >= o.created_at
		AND NOT n.channel = ANY(o.channels_done)), '{}'),
	o.last_error, o.next_at, o.created_at`

func scanUndelivered(r pgx.CollectableRow) (Undelivered, error) {
	var u Undelivered
	err := r.Scan(&u.DocumentID, &u.Number, &u.FirstName, &u.LastName, &u.DocumentState, &u.Kind, &u.GaveUp,
		&u.Attempts, &u.Channels, &u.LastError, &u.NextAt, &u.CreatedAt)
	u.LastError = SafeError(u.LastError)
	return u, err
}

// ListUndelivered lists the notifications staff may have to act on, at
// most limit, given up first, then by next try: the rows waiting for a
// retry after a failed attempt, and the given-up rows of documents still
// in their compartment (the holder has no codes: hand over the slip or
// make new codes). A row not yet tried is not listed (it is being sent),
// nor a given-up one of a document that left its compartment (the
// document's own page, ListUndeliveredOf, still shows it).
func ListUndelivered(ctx context.Context, db store.DB, limit int) ([]Undelivered, error) {
	rows, err := db.Query(ctx, `SELECT `+undeliveredColumns+`
		FROM notify_outbox o JOIN documents d ON d.id = o.document_id
		WHERE (o.state = 'pending' AND o.attempts > 0) OR (o.state = 'gave_up' AND d.state IN ('loaded', 'notified'))
		ORDER BY o.state = 'gave_up' DESC, o.next_at, o.id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("notify: undelivered: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanUndelivered)
	if err != nil {
		return nil, fmt.Errorf("notify: undelivered: %w", err)
	}
	return out, nil
}

// ListUndeliveredOf lists one document's messages that did not reach its
// holder, oldest first: those waiting for a retry after a failed attempt
// and those given up, whatever the document's state, until PruneGivenUp
// deletes them or the document is purged.
func ListUndeliveredOf(ctx context.Context, db store.DB, documentID string) ([]Undelivered, error) {
	rows, err := db.Query(ctx, `SELECT `+undeliveredColumns+`
		FROM notify_outbox o JOIN documents d ON d.id = o.document_id
		WHERE o.document_id = $1::uuid AND (o.state = 'gave_up' OR o.attempts > 0)
		ORDER BY o.created_at, o.id`, documentID)
	if err != nil {
		return nil, fmt.Errorf("notify: undelivered of %s: %w", documentID, err)
	}
	out, err := pgx.CollectRows(rows, scanUndelivered)
	if err != nil {
		return nil, fmt.Errorf("notify: undelivered of %s: %w", documentID, err)
	}
	return out, nil
}

var (
	digitsRe = regexp.MustCompile(`[0-9]{4,}|[0-9]{3}[ .-][0-9]{3}(?:[ .-][0-9]{3})*`)
	tokenRe  = regexp.MustCompile(`[A-Za-z0-9_-]{20,}`)
)

// SafeError turns a stored failure text into what staff may read: e-mail
// addresses and phone numbers out (as when it was stored), and also runs
// of four or more digits and groups of three (a PIN, as "123 456 789",
// a gateway might echo) and long token-like
// words (a QR token, a track id, a key), shortened to 200 bytes. SMTP
// status codes (550, 5.1.1) stay.
func SafeError(s string) string {
	s = redact(s)
	s = tokenRe.ReplaceAllString(s, "[hidden]")
	s = digitsRe.ReplaceAllString(s, "[digits]")
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	return s
}

// DefaultGaveUpRetention is how long a given-up notification is kept for
// staff after it was given up (and after its document left its
// compartment) before PruneGivenUp deletes it.
const DefaultGaveUpRetention = 30 * 24 * time.Hour

// PruneGivenUp deletes, at most limit at a time, the given-up outbox rows
// given up at or before cutoff whose document is no longer in its
// compartment, and returns how many it deleted. The rows of a document
// still loaded or notified stay whatever their age: staff must still see
// that its holder was not reached, and a given-up reminder must keep the
// reminder pass from queueing another one. Pending rows are never touched.
func PruneGivenUp(ctx context.Context, db store.DB, cutoff time.Time, limit int) (int, error) {
	if limit <= 0 || limit > 10000 {
		limit = 10000
	}
	tag, err := db.Exec(ctx, `DELETE FROM notify_outbox WHERE id IN (SELECT o.id FROM notify_outbox o
		JOIN documents d ON d.id = o.document_id
		WHERE o.state = 'gave_up' AND o.gave_up_at <= $1 AND d.state NOT IN ('loaded', 'notified')
		ORDER BY o.gave_up_at, o.id LIMIT $2)`, cutoff.UTC(), limit)
	if err != nil {
		return 0, fmt.Errorf("notify: prune given-up notifications: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
