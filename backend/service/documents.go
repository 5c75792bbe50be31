package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"kluis/backend/audit"
	"kluis/backend/lifecycle"
	"kluis/backend/store"
)

// RegisterDocument validates and records a new document as registered
// (audited, with a "register" history row). Errors: a *store.ValidationError
// (ErrInvalid) naming every bad field, ErrNotFound for an unknown site,
// ErrConflict when the same kind and number is already being handled.
func (s *Service) RegisterDocument(ctx context.Context, actor string, n store.NewDocument) (store.Document, error) {
	if err := checkActor(actor); err != nil {
		return store.Document{}, err
	}
	now := s.clock()
	// The date of birth is judged by the site's day (at 00:30 in
	// Brussels today's date there is no date in the future); by UTC's
	// when the site cannot be read (an unknown site is the insert's
	// ErrNotFound).
	local := now
	if loc, err := s.location(ctx, s.db, n.SiteID); err == nil {
		local = now.In(loc)
	}
	if err := n.Validate(local); err != nil {
		return store.Document{}, err
	}
	var out store.Document
	err := s.st.InTx(ctx, func(tx pgx.Tx) error {
		d, err := store.InsertDocument(ctx, tx, n, s.pseudonym(n.Kind, store.DocumentNumberKey(n.Number)), local)
		if err != nil {
			return err
		}
		out = d
		if _, err := store.InsertTransition(ctx, tx, store.Transition{DocumentID: d.ID, At: now,
			Action: "register", From: "", To: lifecycle.Registered, Actor: actor}); err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx, audit.Entry{At: now, Actor: actor, Action: "document.register",
			Subject: "document:" + d.ID, Details: map[string]any{"kind": d.Kind, "site": d.SiteID, "to": d.State}})
		return err
	})
	if err != nil {
		return store.Document{}, err
	}
	s.log.Info("document registered", "document", out.ID, "kind", out.Kind, "actor", actor)
	return out, nil
}

// GetDocument returns a document or ErrNotFound.
func (s *Service) GetDocument(ctx context.Context, id string) (store.Document, error) {
	return store.GetDocument(ctx, s.db, id)
}

// ListDocuments returns a page of documents matching f, newest first.
func (s *Service) ListDocuments(ctx context.Context, f store.DocumentFilter) (store.DocumentPage, error) {
	return store.ListDocuments(ctx, s.db, f)
}

// History returns a document's transitions, oldest first.
func (s *Service) History(ctx context.Context, id string) ([]store.Transition, error) {
	if _, err := store.GetDocument(ctx, s.db, id); err != nil {
		return nil, err
	}
	return store.ListTransitions(ctx, s.db, id)
}

// DocumentCountsByState counts documents per state (for metrics).
func (s *Service) DocumentCountsByState(ctx context.Context) (map[string]int, error) {
	return s.st.DocumentCountsByState(ctx)
}

// step is the state shared by a transition's apply function.
type step struct {
	tx     pgx.Tx
	now    time.Time
	actor  string
	doc    *store.Document
	comp   store.Compartment // the document's compartment, when it has one
	secret any
}

// change describes one transition.
type change struct {
	action lifecycle.Action
	note   string
	// apply does the side effects inside the transaction and edits st.doc.
	apply func(ctx context.Context, st *step) error
	// notify is the notification kind queued in the transaction (with an
	// Outbox) or sent after commit ("" for none).
	notify string
}

// do runs a transition: lock, check, apply, write, history, audit, queue
// the notification (Outbox), commit, notify.
func (s *Service) do(ctx context.Context, actor, docID string, ch change) (store.Document, error) {
	if err := checkActor(actor); err != nil {
		return store.Document{}, err
	}
	var out store.Document
	var st step
	err := s.st.InTx(ctx, func(tx pgx.Tx) error {
		doc, err := store.LockDocument(ctx, tx, docID)
		if err != nil {
			return err
		}
		from := doc.State
		to, err := lifecycle.Check(from, ch.action)
		if err != nil {
			return fmt.Errorf("document %s: %w", doc.ID, err)
		}
		st = step{tx: tx, now: s.clock(), actor: actor, doc: &doc}
		if doc.CompartmentID != 0 && from.Occupies() {
			if st.comp, err = store.LockCompartment(ctx, tx, doc.CompartmentID); err != nil {
				return err
			}
		}
		doc.State = to
		if ch.apply != nil {
			if err := ch.apply(ctx, &st); err != nil {
				return err
			}
		}
		if to.Final() {
			doc.ClosedAt = &st.now
		}
		out, err = store.UpdateDocument(ctx, tx, doc, st.now)
		if err != nil {
			return err
		}
		tr, err := store.InsertTransition(ctx, tx, store.Transition{DocumentID: doc.ID, At: st.now,
			Action: ch.action, From: from, To: to, Actor: actor, CompartmentID: st.comp.ID, Note: ch.note})
		if err != nil {
			return err
		}
		details := map[string]any{"from": from, "to": to}
		if st.comp.ID != 0 {
			details["device"] = st.comp.DeviceID
			details["compartment"] = st.comp.Number
		}
		if ch.note != "" {
			// The free text a clerk typed (a cancellation's reason) may
			// name someone: it stays in the document's history, which the
			// retention purge erases, and the audit record, chained and
			// never rewritten, only points at it.
			details["note_transition"] = tr.ID
		}
		if _, err := audit.Append(ctx, tx, audit.Entry{At: st.now, Actor: actor, Action: "document." + string(ch.action),
			Subject: "document:" + doc.ID, Details: details}); err != nil {
			return err
		}
		if out.PurgedAt != nil {
			// Nobody to tell, no name to write: a document whose holder's
			// data was erased gets no message (a pickup or load the
			// device records after the erasure, its expiry).
			ch.notify = ""
		}
		if ch.notify != "" && s.outbox != nil {
			if err := s.outbox.Enqueue(ctx, tx, Notification{Kind: ch.notify, Document: out, Compartment: st.comp, Secret: st.secret}); err != nil {
				return fmt.Errorf("service: queue notification: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return store.Document{}, err
	}
	s.log.Info("document transition", "document", out.ID, "action", ch.action, "state", out.State, "actor", actor)
	if ch.notify != "" && s.notifier != nil {
		if err := s.notifier.Notify(ctx, Notification{Kind: ch.notify, Document: out, Compartment: st.comp, Secret: st.secret}); err != nil {
			s.log.Warn("notification failed", "document", out.ID, "kind", ch.notify, "err", err)
		}
	}
	return out, nil
}

// setCompartment moves the step's compartment to state to.
func setCompartment(ctx context.Context, st *step, to store.CompartmentState) error {
	c, err := store.SetCompartmentState(ctx, st.tx, st.comp.ID, to)
	if err != nil {
		return err
	}
	st.comp = c
	return nil
}

func (s *Service) revoke(ctx context.Context, st *step) error {
	if s.codes == nil {
		return nil
	}
	if err := s.codes.Revoke(ctx, st.tx, st.doc.ID); err != nil {
		return fmt.Errorf("service: revoke codes: %w", err)
	}
	return nil
}

func (s *Service) issue(ctx context.Context, st *step) error {
	if s.codes == nil || st.doc.PurgedAt != nil {
		// A purged document loaded after the erasure (reserved, its load
		// recorded late) gets no codes: nobody could be given them.
		return nil
	}
	secret, err := s.codes.Issue(ctx, st.tx, *st.doc, st.comp, st.now)
	if err != nil {
		return fmt.Errorf("service: issue codes: %w", err)
	}
	st.secret = secret
	return nil
}

// ReserveOptions narrow a reservation.
type ReserveOptions struct {
	// DeviceID limits the choice to one device of the document's site.
	DeviceID string
}

// Reserve chooses a compartment for a registered document (see the package
// doc for the rules). ErrNoCompartment (also ErrConflict) when none fits;
// ErrConflict for a document whose personal data was erased (PurgeUnclaimed):
// nobody could be told it is ready, so it is registered again.
func (s *Service) Reserve(ctx context.Context, actor, docID string, o ReserveOptions) (store.Document, error) {
	return s.do(ctx, actor, docID, change{action: lifecycle.Reserve, apply: func(ctx context.Context, st *step) error {
		if st.doc.PurgedAt != nil {
			return purgedError(st.doc.ID, "register it again")
		}
		if o.DeviceID != "" {
			d, err := store.GetDevice(ctx, st.tx, o.DeviceID)
			if err != nil {
				return err
			}
			if d.SiteID != st.doc.SiteID {
				return fmt.Errorf("device %s is not at site %s: %w", d.ID, st.doc.SiteID, ErrInvalid)
			}
		}
		auto := o.DeviceID == "" && s.onlineOnly
		var skip, last []string
		if auto {
			var err error
			if skip, last, err = autoPick(ctx, st.tx, st.now, st.doc.SiteID); err != nil {
				return err
			}
		}
		c, err := store.PickCompartment(ctx, st.tx, store.Pick{SiteID: st.doc.SiteID, DeviceID: o.DeviceID,
			MinSize: s.minSize[st.doc.Kind], Low: st.doc.WantsLow, LowMaxHeightCM: s.lowMax, MaxPerDevice: s.maxPerDev,
			OnlineOnly: auto, Skip: skip, Last: last})
		if auto && errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("document %s (%s, size %s or larger%s): %w: %w: %w", st.doc.ID, st.doc.Kind,
				s.minSize[st.doc.Kind], lowText(st.doc.WantsLow, s.lowMax), ErrNoOnlineDevice, ErrNoCompartment, ErrConflict)
		}
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("document %s (%s, size %s or larger%s): %w: %w", st.doc.ID, st.doc.Kind,
				s.minSize[st.doc.Kind], lowText(st.doc.WantsLow, s.lowMax), ErrNoCompartment, ErrConflict)
		}
		if err != nil {
			return err
		}
		if s.maxPerDev > 0 {
			// Exact under concurrency: reservations on one device queue
			// here, and each counts the ones committed before it.
			held, err := store.HeldByDevice(ctx, st.tx, c.DeviceID)
			if err != nil {
				return err
			}
			if held >= s.maxPerDev {
				return fmt.Errorf("device %s already holds %d documents with live codes, the most allowed: %w: %w",
					c.DeviceID, held, ErrNoCompartment, ErrConflict)
			}
		}
		st.comp = c
		if err := setCompartment(ctx, st, store.CompartmentReserved); err != nil {
			return err
		}
		st.doc.DeviceID, st.doc.CompartmentID = c.DeviceID, c.ID
		return nil
	}})
}

// purgedError refuses an action on a document whose holder's data was
// erased (ErrPurged, ErrConflict), saying what to do instead.
func purgedError(docID, instead string) error {
	return fmt.Errorf("document %s: %w, nobody can show it is theirs or be told: %s: %w", docID, ErrPurged, instead, ErrConflict)
}

func lowText(low bool, max int) string {
	if !low {
		return ""
	}
	return fmt.Sprintf(", at most %d cm high", max)
}

// Unreserve gives a reserved document's compartment back; the document is
// registered again.
func (s *Service) Unreserve(ctx context.Context, actor, docID string) (store.Document, error) {
	return s.do(ctx, actor, docID, change{action: lifecycle.Unreserve, apply: func(ctx context.Context, st *step) error {
		if err := setCompartment(ctx, st, store.CompartmentFree); err != nil {
			return err
		}
		st.doc.DeviceID, st.doc.CompartmentID = "", 0
		return nil
	}})
}

// Load records that a reserved document is in its compartment (door closed
// with the item present, or confirmed by staff): sets the deadline, issues
// codes and, after commit, sends NotifyLoaded.
func (s *Service) Load(ctx context.Context, actor, docID string) (store.Document, error) {
	return s.do(ctx, actor, docID, s.loadChange(0))
}

func (s *Service) loadChange(wantCompartment int64) change {
	return change{action: lifecycle.Load, notify: NotifyLoaded, apply: func(ctx context.Context, st *step) error {
		if wantCompartment != 0 && st.comp.ID != wantCompartment {
			return fmt.Errorf("document %s is not reserved in compartment %d: %w", st.doc.ID, wantCompartment, ErrConflict)
		}
		if st.comp.State != store.CompartmentReserved {
			return fmt.Errorf("compartment %d is %s, not reserved: %w", st.comp.Number, st.comp.State, ErrConflict)
		}
		if err := setCompartment(ctx, st, store.CompartmentLoaded); err != nil {
			return err
		}
		loc, err := s.location(ctx, st.tx, st.doc.SiteID)
		if err != nil {
			return err
		}
		deadline := s.Deadline(st.doc.Kind, st.now, loc)
		st.doc.LoadedAt, st.doc.Deadline = &st.now, &deadline
		return s.issue(ctx, st)
	}}
}

// LoadAt is Load for a device event: the door of compartment number of
// device closed with an item inside. It loads the document reserved there
// (ErrNotFound when none).
func (s *Service) LoadAt(ctx context.Context, actor, deviceID string, number int) (store.Document, error) {
	return s.atCompartment(ctx, actor, deviceID, number, s.loadChange)
}

// atCompartment runs the change made by mk (given the compartment's id) on
// the document occupying compartment number of device.
func (s *Service) atCompartment(ctx context.Context, actor, deviceID string, number int, mk func(compartmentID int64) change) (store.Document, error) {
	c, err := store.CompartmentByNumber(ctx, s.db, deviceID, number)
	if err != nil {
		return store.Document{}, err
	}
	d, err := store.OccupantOf(ctx, s.db, c.ID)
	if err != nil {
		return store.Document{}, err
	}
	return s.do(ctx, actor, d.ID, mk(c.ID))
}

// MarkNotified records that the holder was told the document is ready.
func (s *Service) MarkNotified(ctx context.Context, actor, docID string) (store.Document, error) {
	return s.do(ctx, actor, docID, change{action: lifecycle.Notify, apply: func(_ context.Context, st *step) error {
		st.doc.NotifiedAt = &st.now
		return nil
	}})
}

// Renotify records a reminder and, after commit, sends NotifyReminder.
// ErrPurged when the holder's data was erased.
func (s *Service) Renotify(ctx context.Context, actor, docID string) (store.Document, error) {
	return s.do(ctx, actor, docID, change{action: lifecycle.Renotify, notify: NotifyReminder,
		apply: func(_ context.Context, st *step) error {
			if st.doc.PurgedAt != nil {
				return purgedError(st.doc.ID, "take it back")
			}
			st.doc.NotifiedAt = &st.now
			return nil
		}})
}

// Collect records that the holder took the document: frees the compartment,
// revokes the codes, and sends NotifyCollected after commit. It is the
// hand-over at the counter (the console's, the API's): ErrPurged for a
// document whose holder's data was erased, since nobody can show it is
// theirs; staff take it back (Retrieve). A pickup the device records
// (CollectAt: a code opened the door) is never refused.
func (s *Service) Collect(ctx context.Context, actor, docID string) (store.Document, error) {
	ch := s.emptyChange(lifecycle.Collect, NotifyCollected, 0)
	empty := ch.apply
	ch.apply = func(ctx context.Context, st *step) error {
		if st.doc.PurgedAt != nil {
			return purgedError(st.doc.ID, "take it back (retrieve) and register it again if its holder comes")
		}
		return empty(ctx, st)
	}
	return s.do(ctx, actor, docID, ch)
}

// CollectAt is Collect for a device event naming the compartment: the
// document in compartment number of device was taken out.
func (s *Service) CollectAt(ctx context.Context, actor, deviceID string, number int) (store.Document, error) {
	return s.atCompartment(ctx, actor, deviceID, number, func(id int64) change {
		return s.emptyChange(lifecycle.Collect, NotifyCollected, id)
	})
}

// emptyChange is a transition that takes the item out (collect, retrieve).
func (s *Service) emptyChange(a lifecycle.Action, notify string, wantCompartment int64) change {
	return change{action: a, notify: notify, apply: func(ctx context.Context, st *step) error {
		if wantCompartment != 0 && st.comp.ID != wantCompartment {
			return fmt.Errorf("document %s is not in compartment %d: %w", st.doc.ID, wantCompartment, ErrConflict)
		}
		if err := setCompartment(ctx, st, store.CompartmentFree); err != nil {
			return err
		}
		return s.revoke(ctx, st)
	}}
}

// Retrieve records that staff took the document back to the counter
// (expired, or early from loaded or notified): frees the compartment and
// revokes the codes.
func (s *Service) Retrieve(ctx context.Context, actor, docID string) (store.Document, error) {
	return s.do(ctx, actor, docID, s.emptyChange(lifecycle.Retrieve, "", 0))
}

// Cancel ends a registered or reserved document (a reserved compartment is
// freed). A loaded document must be retrieved instead.
func (s *Service) Cancel(ctx context.Context, actor, docID, reason string) (store.Document, error) {
	if len(reason) > 500 {
		return store.Document{}, fmt.Errorf("reason longer than 500 bytes: %w", ErrInvalid)
	}
	return s.do(ctx, actor, docID, change{action: lifecycle.Cancel, note: reason, apply: func(ctx context.Context, st *step) error {
		if st.comp.ID != 0 {
			if err := setCompartment(ctx, st, store.CompartmentFree); err != nil {
				return err
			}
		}
		return s.revoke(ctx, st)
	}})
}

// Reissue revokes a loaded or notified document's codes and issues new
// ones (same deadline and state); NotifyReissued follows after commit.
// ErrPurged when the holder's data was erased.
func (s *Service) Reissue(ctx context.Context, actor, docID string) (store.Document, error) {
	return s.do(ctx, actor, docID, change{action: lifecycle.Reissue, notify: NotifyReissued,
		apply: func(ctx context.Context, st *step) error {
			if st.doc.PurgedAt != nil {
				return purgedError(st.doc.ID, "take it back")
			}
			if err := s.revoke(ctx, st); err != nil {
				return err
			}
			return s.issue(ctx, st)
		}})
}

// Expire moves one loaded or notified document past its deadline to
// expired (ErrConflict when the deadline has not passed). The item stays in
// its compartment until retrieved.
func (s *Service) Expire(ctx context.Context, actor, docID string) (store.Document, error) {
	return s.do(ctx, actor, docID, change{action: lifecycle.Expire, notify: NotifyExpired,
		apply: func(ctx context.Context, st *step) error {
			if st.doc.Deadline == nil || st.doc.Deadline.After(st.now) {
				return fmt.Errorf("document %s is not past its deadline: %w", st.doc.ID, ErrConflict)
			}
			return s.revoke(ctx, st)
		}})
}

// ExpireDue expires every loaded or notified document whose deadline has
// passed, as "system", and returns how many it expired. Run it
// periodically; documents that change state meanwhile are skipped.
func (s *Service) ExpireDue(ctx context.Context) (int, error) {
	const batch, maxBatches = 200, 500
	n := 0
	seen := map[string]bool{}
	for range maxBatches {
		ids, err := store.DueForExpiry(ctx, s.db, s.clock(), batch)
		if err != nil {
			return n, err
		}
		progress := false
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			progress = true
			_, err := s.Expire(ctx, "system", id)
			switch {
			case err == nil:
				n++
			case errors.Is(err, ErrForbiddenTransition), errors.Is(err, ErrConflict), errors.Is(err, ErrNotFound):
				// changed meanwhile
			default:
				return n, err
			}
		}
		if len(ids) < batch || !progress {
			break
		}
	}
	if n > 0 {
		s.log.Info("documents expired", "count", n)
	}
	return n, nil
}

// Purge erases the personal data of collected, retrieved and cancelled
// documents closed more than olderThan ago (0: Options.Retention). Each
// purged document gets an audit record; the audit trail itself holds no
// personal data. It works in batches of Options.PurgeBatch documents, each
// its own transaction, skipping the documents another transaction holds
// (a clerk's: the purge neither waits for nor blocks it; the next pass
// takes them), and returns how many documents it purged.
func (s *Service) Purge(ctx context.Context, olderThan time.Duration) (int, error) {
	if olderThan == 0 {
		olderThan = s.retention
	}
	if olderThan < 0 {
		return 0, fmt.Errorf("purge: negative period: %w", ErrInvalid)
	}
	now := s.clock()
	cutoff := now.Add(-olderThan)
	n, err := s.inPurgeBatches(ctx, func(tx pgx.Tx) (int, error) {
		ids, err := store.PurgePersonalData(ctx, tx, cutoff, now, s.purgeBatch)
		if err != nil {
			return 0, err
		}
		return len(ids), s.purged(ctx, tx, now, ids, func(int) map[string]any { return map[string]any{"cutoff": cutoff} })
	})
	if n > 0 {
		s.log.Info("personal data purged", "count", n)
	}
	return n, err
}

// maxPurgeBatches bounds the transactions of one Purge or PurgeUnclaimed
// pass (the next pass goes on).
const maxPurgeBatches = 500

// inPurgeBatches runs batch, each time in its own transaction, until it
// purges fewer than Options.PurgeBatch documents (or maxPurgeBatches
// times), and returns how many documents the committed batches purged.
func (s *Service) inPurgeBatches(ctx context.Context, batch func(tx pgx.Tx) (int, error)) (int, error) {
	n := 0
	for range maxPurgeBatches {
		var got int
		err := s.st.InTx(ctx, func(tx pgx.Tx) error {
			var err error
			got, err = batch(tx)
			return err
		})
		if err != nil {
			return n, err
		}
		n += got
		if got < s.purgeBatch {
			break
		}
	}
	return n, nil
}

// PurgeUnclaimed erases the personal data of documents never closed
// (registered or reserved and never loaded, expired and never taken back,
// or still loaded or notified) whose pickup deadline, or registration when
// they were never loaded, is more than olderThan ago (0:
// Options.UnclaimedRetention). Their state and compartment stay: an expired
// document is still behind its door, and the console asks staff to take it
// back; only the holder's data goes. Each purged document gets an audit
// record document.purge with "unclaimed": true and its state (no personal
// data). It works in batches, each its own transaction, and returns how
// many documents it purged.
func (s *Service) PurgeUnclaimed(ctx context.Context, olderThan time.Duration) (int, error) {
	if olderThan == 0 {
		olderThan = s.unclaimed
	}
	if olderThan < 0 {
		return 0, fmt.Errorf("purge unclaimed: negative period: %w", ErrInvalid)
	}
	now := s.clock()
	cutoff := now.Add(-olderThan)
	n, err := s.inPurgeBatches(ctx, func(tx pgx.Tx) (int, error) {
		docs, err := store.PurgeUnclaimedPersonalData(ctx, tx, cutoff, now, s.purgeBatch)
		if err != nil {
			return 0, err
		}
		ids := make([]string, len(docs))
		for i, d := range docs {
			ids[i] = d.ID
		}
		return len(docs), s.purged(ctx, tx, now, ids, func(i int) map[string]any {
			return map[string]any{"cutoff": cutoff, "unclaimed": true, "state": docs[i].State}
		})
	})
	if n > 0 {
		s.log.Info("personal data of unclaimed documents purged", "count", n, "cutoff", cutoff)
	}
	return n, err
}

// purged finishes a purge inside its transaction: the free text of the
// documents' history (a cancellation's reason) and the personal data other
// packages keep (Purger) go too, and each document gets an audit record
// document.purge with details(i), never personal data.
func (s *Service) purged(ctx context.Context, tx pgx.Tx, now time.Time, ids []string, details func(i int) map[string]any) error {
	if len(ids) == 0 {
		return nil
	}
	if err := store.EraseTransitionNotes(ctx, tx, ids); err != nil {
		return err
	}
	if s.purger != nil {
		if err := s.purger.PurgeDocuments(ctx, tx, ids); err != nil {
			return fmt.Errorf("service: purge elsewhere: %w", err)
		}
	}
	for i, id := range ids {
		if _, err := audit.Append(ctx, tx, audit.Entry{At: now, Actor: "system", Action: "document.purge",
			Subject: "document:" + id, Details: details(i)}); err != nil {
			return err
		}
	}
	return nil
}

// FindActiveByNumber returns the document with this printed number still
// being handled, at siteID ("" for any site); for the kiosk's staff reserve
// flow (scan the document, then Reserve with the kiosk's device).
// ErrNotFound when none, ErrConflict when ambiguous.
func (s *Service) FindActiveByNumber(ctx context.Context, number, siteID string) (store.Document, error) {
	return store.FindActiveByNumber(ctx, s.db, number, siteID)
}
