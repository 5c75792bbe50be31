package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"
	_ "time/tzdata" // site time zones work without system tzdata

	"github.com/jackc/pgx/v5"

	"kluis/backend/audit"
	"kluis/backend/lifecycle"
	"kluis/backend/store"
)

// Errors callers branch on with errors.Is. The first four are the store's
// and lifecycle's sentinels, repeated here for convenience.
var (
	// ErrNotFound: no such document, site, device or compartment (HTTP 404).
	ErrNotFound = store.ErrNotFound
	// ErrInvalid: input refused by validation (HTTP 400); often a
	// *store.ValidationError naming the fields.
	ErrInvalid = store.ErrInvalid
	// ErrConflict: the change collides with the current data (HTTP 409).
	ErrConflict = store.ErrConflict
	// ErrForbiddenTransition: the lifecycle refuses the action from the
	// document's state (HTTP 409); the message says what was tried.
	ErrForbiddenTransition = lifecycle.ErrForbiddenTransition
	// ErrNoCompartment: no free compartment fits the document. Errors
	// carrying it also match ErrConflict.
	ErrNoCompartment = errors.New("no free compartment fits the document")
	// ErrNoOnlineDevice: an automatic choice (Options.PickOnlineOnly)
	// found no device fit to serve now (online, heartbeat on time, no
	// open alarm that blocks pickups: Health.Fit) with a free compartment
	// that fits. Errors carrying it also match ErrNoCompartment and
	// ErrConflict.
	ErrNoOnlineDevice = errors.New("no device that is online, on time and without an alarm that stops pickups has a free compartment that fits the document")
	// ErrPurged: the document's holder's personal data was erased
	// (PurgeUnclaimed), so nobody can show it is theirs and nobody can be
	// told: it cannot be handed over at the counter, reissued, reminded of
	// or reserved; staff take it back (Retrieve) or cancel it. Errors
	// carrying it also match ErrConflict.
	ErrPurged = errors.New("the holder's personal data was erased")
)

// Notification kinds passed to Notifier.Notify.
const (
	// NotifyLoaded: the document is in its compartment; tell the holder
	// (Secret holds what CodeIssuer.Issue returned).
	NotifyLoaded = "loaded"
	// NotifyReminder: staff asked to remind the holder (renotify).
	NotifyReminder = "reminder"
	// NotifyReissued: new codes were issued (Secret holds them).
	NotifyReissued = "reissued"
	// NotifyExpired: the deadline passed; the document goes back to the counter.
	NotifyExpired = "expired"
	// NotifyCollected: the holder collected the document (a receipt).
	NotifyCollected = "collected"
)

// CodeIssuer issues and revokes pickup codes (implemented by backend/codes,
// H5). Both run inside the transition's transaction; an error rolls the
// transition back. This interface is a stable contract.
type CodeIssuer interface {
	// Issue creates codes for doc in comp, valid until doc.Deadline, and
	// revokes every earlier code of doc. Called on load and reissue. at is
	// the transition's time: the codes are issued then, and judged against
	// it (a load on a busy machine that reaches the codes after its short
	// deadline is not refused). The returned secret (e.g. credentials with
	// the clear PIN) is handed to the Notifier untouched; the service never
	// logs or stores it.
	Issue(ctx context.Context, tx pgx.Tx, doc store.Document, comp store.Compartment, at time.Time) (secret any, err error)
	// Revoke invalidates every code of the document. Called on reissue
	// (before Issue), expire, collect, retrieve and cancel.
	Revoke(ctx context.Context, tx pgx.Tx, documentID string) error
}

// Notification is what the Notifier gets after a transition committed.
type Notification struct {
	// Kind is one of the Notify* constants.
	Kind string
	// Document is the document after the transition.
	Document store.Document
	// Compartment is its compartment (zero when none).
	Compartment store.Compartment
	// Secret is what CodeIssuer.Issue returned in the same transition (nil
	// otherwise).
	Secret any
}

// Notifier tells holders what happened (implemented by backend/notify, H5).
// It is called after commit; its error is logged, never undoes the
// transition. To record that the holder was told, call Service.MarkNotified.
// With Options.Outbox set the notification is already queued when the
// Notifier is called: it is then only a hook after the commit (e.g. to wake
// the outbox sender) and must not send the message itself.
// This interface is a stable contract.
type Notifier interface {
	Notify(ctx context.Context, n Notification) error
}

// Outbox queues notifications durably (implemented by backend/notify's
// Outbox): Enqueue runs inside the transition's transaction, so the
// notification commits or rolls back with the state change and survives a
// crash right after the commit; a sender delivers it later, with retries.
// An Enqueue error rolls the transition back.
type Outbox interface {
	Enqueue(ctx context.Context, tx pgx.Tx, n Notification) error
}

// Purger erases personal data other packages keep about documents (e.g.
// notification recipients), inside the purge transaction.
type Purger interface {
	PurgeDocuments(ctx context.Context, tx pgx.Tx, documentIDs []string) error
}

// Purgers is a Purger that runs each of its Purgers in turn and stops at
// the first error.
type Purgers []Purger

// PurgeDocuments runs each Purger's PurgeDocuments.
func (ps Purgers) PurgeDocuments(ctx context.Context, tx pgx.Tx, documentIDs []string) error {
	for _, p := range ps {
		if err := p.PurgeDocuments(ctx, tx, documentIDs); err != nil {
			return err
		}
	}
	return nil
}

// Options configure New. Zero values get defaults.
type Options struct {
	// Store is the database (required).
	Store *store.Store
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Clock gives the current time; default time.Now.
	Clock func() time.Time
	// PickupDays is the pickup period per kind in days: the deadline is the
	// end of the N-th local day after loading. Missing kinds get
	// DefaultPickupDays.
	PickupDays map[store.DocumentKind]int
	// PickupPeriods are exact pickup periods per kind: the deadline is the
	// load time plus the period (1 s .. 366 days). A kind listed here
	// ignores its PickupDays.
	PickupPeriods map[store.DocumentKind]time.Duration
	// MinSize is the smallest compartment per kind; missing kinds get S,
	// except passports (M).
	MinSize map[store.DocumentKind]store.Size
	// LowMaxHeightCM is the highest compartment (cm from the floor) that
	// counts as low; default 120.
	LowMaxHeightCM int
	// MaxPerDevice caps the documents with live codes (reserved, loaded,
	// notified) one device holds, whatever its number of compartments: the
	// code security analysis bounds the open codes per device
	// (codes.MaxActiveCodesPerDevice). 0: no cap.
	MaxPerDevice int
	// PickOnlineOnly makes Reserve without a device (the automatic
	// choice) consider only devices fit to serve now (Health.Fit): never
	// one that never connected, is offline, late, or has an open alarm
	// that blocks pickups; devices with other open alarms last (see the
	// package doc). kluis-backend sets it; a reservation naming a device
	// is not limited.
	PickOnlineOnly bool
	// Retention is how long personal data of finished documents is kept
	// (Purge with olderThan 0 uses it); default DefaultRetention.
	Retention time.Duration
	// UnclaimedRetention is how long personal data of documents never
	// closed is kept after their pickup deadline, or after their
	// registration when they were never loaded (PurgeUnclaimed with
	// olderThan 0 uses it); default DefaultUnclaimedRetention, at least
	// MinUnclaimedRetention.
	UnclaimedRetention time.Duration
	// PurgeBatch is how many documents one transaction of Purge or
	// PurgeUnclaimed erases at most; default DefaultPurgeBatch.
	PurgeBatch int
	// PseudonymKey keys the document-number pseudonym; nil: none kept.
	PseudonymKey []byte
	// Codes issues and revokes codes; nil: none.
	Codes CodeIssuer
	// Notifier informs holders; nil: none. With Outbox set it is only
	// called after commit, as a hook (see Notifier).
	Notifier Notifier
	// Outbox queues the notifications inside the transitions'
	// transactions; nil: the Notifier sends them after commit, from memory
	// (lost if the process dies in between).
	Outbox Outbox
	// Purger erases personal data held elsewhere; nil: none.
	Purger Purger
}

// Defaults of Options.
const (
	// DefaultPickupDays is the pickup period of kinds without one.
	DefaultPickupDays = 10
	// MaxPickupDays bounds a pickup period in whole days: its deadline,
	// the end of that day in the site's time zone, must stay within the
	// 60 days a pickup code may be valid (codes.MaxValidity; a test there
	// holds them together): 58 days and the rest of the loading day, a
	// daylight saving shift included. A longer period made every load
	// fail with codes' "expiry not within" (a 500).
	MaxPickupDays = 58
	// MaxPickupPeriod bounds an exact pickup period (codes.MaxValidity).
	MaxPickupPeriod = 60 * 24 * time.Hour
	// DefaultRetention is how long personal data of finished documents is kept.
	DefaultRetention = 30 * 24 * time.Hour
	// DefaultUnclaimedRetention is how long personal data of documents
	// never closed is kept after their deadline (or registration): an
	// expired document nobody took back, one registered and never loaded.
	DefaultUnclaimedRetention = 90 * 24 * time.Hour
	// MinUnclaimedRetention bounds UnclaimedRetention from below: a
	// document registered this week must not lose its holder's data
	// before it could be loaded.
	MinUnclaimedRetention = 7 * 24 * time.Hour
	// DefaultPurgeBatch is how many documents one purge transaction
	// erases at most: short transactions, each row skipped while a clerk's
	// transaction holds it.
	DefaultPurgeBatch = 200
)

// Service runs the use cases.
type Service struct {
	st          *store.Store
	db          store.DB
	log         *slog.Logger
	now         func() time.Time
	pickupDays  map[store.DocumentKind]int
	pickupExact map[store.DocumentKind]time.Duration
	minSize     map[store.DocumentKind]store.Size
	lowMax      int
	maxPerDev   int
	onlineOnly  bool
	retention   time.Duration
	unclaimed   time.Duration
	purgeBatch  int
	pseudoKey   []byte
	codes       CodeIssuer
	notifier    Notifier
	outbox      Outbox
	purger      Purger
}

// New checks opts, fills defaults and returns a Service.
func New(opts Options) (*Service, error) {
	if opts.Store == nil {
		return nil, fmt.Errorf("service: no store: %w", ErrInvalid)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.LowMaxHeightCM == 0 {
		opts.LowMaxHeightCM = 120
	}
	if opts.LowMaxHeightCM < 0 || opts.LowMaxHeightCM > 300 {
		return nil, fmt.Errorf("service: LowMaxHeightCM %d out of 0..300: %w", opts.LowMaxHeightCM, ErrInvalid)
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.MaxPerDevice < 0 {
		return nil, fmt.Errorf("service: negative MaxPerDevice: %w", ErrInvalid)
	}
	if opts.Retention < 0 {
		return nil, fmt.Errorf("service: negative retention: %w", ErrInvalid)
	}
	if opts.UnclaimedRetention == 0 {
		opts.UnclaimedRetention = DefaultUnclaimedRetention
	}
	if opts.UnclaimedRetention < MinUnclaimedRetention {
		return nil, fmt.Errorf("service: unclaimed retention %s shorter than %s: %w", opts.UnclaimedRetention, MinUnclaimedRetention, ErrInvalid)
	}
	if opts.PurgeBatch == 0 {
		opts.PurgeBatch = DefaultPurgeBatch
	}
	if opts.PurgeBatch < 0 {
		return nil, fmt.Errorf("service: negative PurgeBatch: %w", ErrInvalid)
	}
	s := &Service{
		purgeBatch: opts.PurgeBatch,
		st:         opts.Store, db: opts.Store.Pool(), log: opts.Logger.With("part", "service"), now: opts.Clock,
		pickupDays: map[store.DocumentKind]int{}, pickupExact: map[store.DocumentKind]time.Duration{}, minSize: map[store.DocumentKind]store.Size{},
		lowMax: opts.LowMaxHeightCM, maxPerDev: opts.MaxPerDevice, onlineOnly: opts.PickOnlineOnly, retention: opts.Retention, unclaimed: opts.UnclaimedRetention, pseudoKey: opts.PseudonymKey,
		codes: opts.Codes, notifier: opts.Notifier, outbox: opts.Outbox, purger: opts.Purger,
	}
	for _, k := range store.DocumentKinds() {
		s.pickupDays[k] = DefaultPickupDays
		s.minSize[k] = store.SizeS
	}
	s.minSize[store.Passport] = store.SizeM
	for k, d := range opts.PickupDays {
		if !k.Valid() || d < 1 || d > MaxPickupDays {
			return nil, fmt.Errorf("service: pickup days %q=%d (want a kind and 1..%d): %w", k, d, MaxPickupDays, ErrInvalid)
		}
		s.pickupDays[k] = d
	}
	for k, p := range opts.PickupPeriods {
		if !k.Valid() || p < time.Second || p > MaxPickupPeriod {
			return nil, fmt.Errorf("service: pickup period %q=%s (want a kind and 1s..%dd): %w", k, p, MaxPickupPeriod/(24*time.Hour), ErrInvalid)
		}
		s.pickupExact[k] = p
	}
	for k, z := range opts.MinSize {
		if !k.Valid() || !z.Valid() {
			return nil, fmt.Errorf("service: min size %q=%q: %w", k, z, ErrInvalid)
		}
		s.minSize[k] = z
	}
	return s, nil
}

// Store returns the underlying store.
func (s *Service) Store() *store.Store { return s.st }

func (s *Service) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

var actorPattern = regexp.MustCompile(`^(system|user:[A-Za-z0-9._@-]{1,64}|device:[a-z0-9][a-z0-9_-]{0,62})$`)

// ValidActor reports whether a is "system", "user:<id>" or "device:<id>".
func ValidActor(a string) bool { return actorPattern.MatchString(a) }

func checkActor(a string) error {
	if !ValidActor(a) {
		return fmt.Errorf("actor %q: want system, user:<id> or device:<id>: %w", a, ErrInvalid)
	}
	return nil
}

// pseudonym is the keyed pseudonym of a document number, "" without key.
func (s *Service) pseudonym(kind store.DocumentKind, number string) string {
	if len(s.pseudoKey) == 0 {
		return ""
	}
	m := hmac.New(sha256.New, s.pseudoKey)
	m.Write([]byte(string(kind) + "\x00" + number))
	return hex.EncodeToString(m.Sum(nil))
}

// PickupDays returns the pickup period of a kind in days (not used when the
// kind has an exact period, see PickupPeriod).
func (s *Service) PickupDays(k store.DocumentKind) int { return s.pickupDays[k] }

// PickupPeriod returns the exact pickup period of a kind, if it has one.
func (s *Service) PickupPeriod(k store.DocumentKind) (time.Duration, bool) {
	p, ok := s.pickupExact[k]
	return p, ok
}

// LowMaxHeightCM returns the highest compartment (cm from the floor) that
// counts as low, for holders who need one (wheelchair users).
func (s *Service) LowMaxHeightCM() int { return s.lowMax }

// MinSize returns the smallest compartment size a kind needs.
func (s *Service) MinSize(k store.DocumentKind) store.Size { return s.minSize[k] }

// Deadline returns the pickup deadline of a document of kind k loaded at
// loadedAt at a site in loc: the end of the N-th calendar day after
// loading (i.e. midnight starting day N+1), in UTC; for a kind with an
// exact period, loadedAt plus that period.
func (s *Service) Deadline(k store.DocumentKind, loadedAt time.Time, loc *time.Location) time.Time {
	if p, ok := s.pickupExact[k]; ok {
		return loadedAt.Add(p).UTC()
	}
	l := loadedAt.In(loc)
	y, m, d := l.Date()
	return time.Date(y, m, d+s.pickupDays[k]+1, 0, 0, 0, 0, loc).UTC()
}

func (s *Service) location(ctx context.Context, db store.DB, siteID string) (*time.Location, error) {
	site, err := store.GetSite(ctx, db, siteID)
	if err != nil {
		return nil, err
	}
	loc, err := time.LoadLocation(site.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("service: site %s time zone %q: %w", siteID, site.TimeZone, err)
	}
	return loc, nil
}

// RecordEvent appends an audit record in its own transaction, for events
// that are not document transitions: door events, remote opens, alarms.
// e.Actor must be "system", "user:<id>" or "device:<id>"; e.At defaults to
// the service clock. Never put personal data, PINs or tokens in e.Details.
func (s *Service) RecordEvent(ctx context.Context, e audit.Entry) (audit.Record, error) {
	if err := checkActor(e.Actor); err != nil {
		return audit.Record{}, err
	}
	if e.At.IsZero() {
		e.At = s.clock()
	}
	var rec audit.Record
	err := s.st.InTx(ctx, func(tx pgx.Tx) error {
		var err error
		rec, err = audit.Append(ctx, tx, e)
		return err
	})
	if errors.Is(err, audit.ErrInvalid) {
		return audit.Record{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return rec, err
}
