package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"kluis/backend/lifecycle"
)

const documentColumns = `id::text, kind, coalesce(number, ''), number_pseudonym, coalesce(holder_first_name, ''),
	coalesce(holder_last_name, ''), holder_birth_date, language, coalesce(email, ''), coalesce(mobile, ''),
	wants_low, site_id, state, coalesce(device_id, ''), coalesce(compartment_id, 0), deadline, loaded_at,
	notified_at, closed_at, purged_at, created_at, updated_at, version`

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func scanDocument(row pgx.Row) (Document, error) {
	var d Document
	err := row.Scan(&d.ID, &d.Kind, &d.Number, &d.NumberPseudonym, &d.FirstName, &d.LastName, &d.BirthDate,
		&d.Language, &d.Email, &d.Mobile, &d.WantsLow, &d.SiteID, &d.State, &d.DeviceID, &d.CompartmentID,
		&d.Deadline, &d.LoadedAt, &d.NotifiedAt, &d.ClosedAt, &d.PurgedAt, &d.CreatedAt, &d.UpdatedAt, &d.Version)
	d.Deadline, d.LoadedAt, d.NotifiedAt = utcPtr(d.Deadline), utcPtr(d.LoadedAt), utcPtr(d.NotifiedAt)
	d.ClosedAt, d.PurgedAt, d.BirthDate = utcPtr(d.ClosedAt), utcPtr(d.PurgedAt), utcPtr(d.BirthDate)
	d.CreatedAt, d.UpdatedAt = d.CreatedAt.UTC(), d.UpdatedAt.UTC()
	return d, err
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// InsertDocument validates n and inserts it as registered. pseudonym is the
// keyed pseudonym of the number ("" for none). ErrNotFound when the site
// does not exist; ErrConflict when the same kind and number (compared by
// DocumentNumberKey) is already in the process.
func InsertDocument(ctx context.Context, db DB, n NewDocument, pseudonym string, now time.Time) (Document, error) {
	if err := n.Validate(now); err != nil {
		return Document{}, err
	}
	if _, err := GetSite(ctx, db, n.SiteID); err != nil {
		return Document{}, err
	}
	now = now.UTC()
	d, err := scanDocument(db.QueryRow(ctx, `INSERT INTO documents (kind, number, number_pseudonym,
		holder_first_name, holder_last_name, holder_birth_date, language, email, mobile, wants_low, site_id,
		state, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'registered', $12, $12)
		RETURNING `+documentColumns, n.Kind, n.Number, pseudonym, n.FirstName, n.LastName, n.BirthDate,
		n.Language, nullIfEmpty(n.Email), nullIfEmpty(n.Mobile), n.WantsLow, n.SiteID, now))
	if IsUniqueViolation(err) {
		return Document{}, fmt.Errorf("a %s with this number is already being handled: %w", n.Kind, ErrConflict)
	}
	if err != nil {
		return Document{}, fmt.Errorf("store: insert document: %w", err)
	}
	return d, nil
}

func oneDocument(ctx context.Context, db DB, id, sql string) (Document, error) {
	if !validUUID(id) {
		return Document{}, fmt.Errorf("document %q: %w", id, ErrNotFound)
	}
	d, err := scanDocument(db.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Document{}, fmt.Errorf("document %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Document{}, fmt.Errorf("store: get document: %w", err)
	}
	return d, nil
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
				return false
			}
		}
	}
	return true
}

// GetDocument returns a document by id, or ErrNotFound (also for a
// malformed id).
func GetDocument(ctx context.Context, db DB, id string) (Document, error) {
	return oneDocument(ctx, db, id, "SELECT "+documentColumns+" FROM documents WHERE id = $1")
}

// LockDocument reads a document FOR UPDATE inside tx.
func LockDocument(ctx context.Context, tx pgx.Tx, id string) (Document, error) {
	return oneDocument(ctx, tx, id, "SELECT "+documentColumns+" FROM documents WHERE id = $1 FOR UPDATE")
}

// OccupantOf returns the document holding a compartment (reserved, loaded,
// notified or expired), or ErrNotFound.
func OccupantOf(ctx context.Context, db DB, compartmentID int64) (Document, error) {
	d, err := scanDocument(db.QueryRow(ctx, "SELECT "+documentColumns+` FROM documents
		WHERE compartment_id = $1 AND state IN ('reserved', 'loaded', 'notified', 'expired')`, compartmentID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Document{}, fmt.Errorf("no document in compartment %d: %w", compartmentID, ErrNotFound)
	}
	if err != nil {
		return Document{}, fmt.Errorf("store: occupant: %w", err)
	}
	return d, nil
}

// UpdateDocument writes the lifecycle fields of d (state, device,
// compartment, deadline, loaded/notified/closed times), sets updated_at to
// now and increments the version. It returns the stored row.
func UpdateDocument(ctx context.Context, db DB, d Document, now time.Time) (Document, error) {
	var comp any
	if d.CompartmentID != 0 {
		comp = d.CompartmentID
	}
	out, err := scanDocument(db.QueryRow(ctx, `UPDATE documents SET state = $2, device_id = $3, compartment_id = $4,
		deadline = $5, loaded_at = $6, notified_at = $7, closed_at = $8, updated_at = $9, version = version + 1
		WHERE id = $1 RETURNING `+documentColumns, d.ID, d.State, nullIfEmpty(d.DeviceID), comp,
		d.Deadline, d.LoadedAt, d.NotifiedAt, d.ClosedAt, now.UTC()))
	if errors.Is(err, pgx.ErrNoRows) {
		return Document{}, fmt.Errorf("document %s: %w", d.ID, ErrNotFound)
	}
	if IsUniqueViolation(err) {
		return Document{}, fmt.Errorf("compartment %d already holds a document: %w", d.CompartmentID, ErrConflict)
	}
	if err != nil {
		return Document{}, fmt.Errorf("store: update document: %w", err)
	}
	return out, nil
}

// InsertTransition records a row of a document's history.
func InsertTransition(ctx context.Context, db DB, t Transition) (Transition, error) {
	var comp any
	if t.CompartmentID != 0 {
		comp = t.CompartmentID
	}
	t.At = t.At.UTC()
	err := db.QueryRow(ctx, `INSERT INTO document_transitions (document_id, at, action, from_state, to_state, actor, compartment_id, note)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
		t.DocumentID, t.At, t.Action, t.From, t.To, t.Actor, comp, t.Note).Scan(&t.ID)
	if err != nil {
		return Transition{}, fmt.Errorf("store: insert transition: %w", err)
	}
	return t, nil
}

// EraseTransitionNotes clears the free text of these documents' history
// (the reason a clerk typed when cancelling, which may name someone), for
// the retention purge; the transitions themselves stay.
func EraseTransitionNotes(ctx context.Context, db DB, documentIDs []string) error {
	if _, err := db.Exec(ctx, `UPDATE document_transitions SET note = '' WHERE document_id = ANY($1::uuid[]) AND note <> ''`,
		documentIDs); err != nil {
		return fmt.Errorf("store: erase transition notes: %w", err)
	}
	return nil
}

// ListTransitions returns a document's history, oldest first.
func ListTransitions(ctx context.Context, db DB, documentID string) ([]Transition, error) {
	if !validUUID(documentID) {
		return nil, fmt.Errorf("document %q: %w", documentID, ErrNotFound)
	}
	rows, err := db.Query(ctx, `SELECT id, document_id::text, at, action, from_state, to_state, actor,
		coalesce(compartment_id, 0), note FROM document_transitions WHERE document_id = $1 ORDER BY id`, documentID)
	if err != nil {
		return nil, fmt.Errorf("store: list transitions: %w", err)
	}
	defer rows.Close()
	out := []Transition{}
	for rows.Next() {
		var t Transition
		if err := rows.Scan(&t.ID, &t.DocumentID, &t.At, &t.Action, &t.From, &t.To, &t.Actor, &t.CompartmentID, &t.Note); err != nil {
			return nil, fmt.Errorf("store: list transitions: %w", err)
		}
		t.At = t.At.UTC()
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list transitions: %w", err)
	}
	return out, nil
}

// DocumentFilter selects documents for ListDocuments.
type DocumentFilter struct {
	// State keeps one state ("" for all).
	State lifecycle.State
	// DeviceID keeps documents of one device ("" for all).
	DeviceID string
	// SiteID keeps documents of one site ("" for all).
	SiteID string
	// States keeps documents in any of these states (with State: both).
	States []lifecycle.State
	// Query keeps documents whose number (compared as DocumentNumberKey)
	// or holder name (first and last, either order) contains it, without
	// regard to case; "" for all.
	Query string
	// DeadlineBefore keeps documents with a deadline at or before it.
	DeadlineBefore *time.Time
	// CreatedFrom and CreatedBefore keep documents registered at or after
	// CreatedFrom and before CreatedBefore (nil: no bound), e.g. one day's.
	CreatedFrom, CreatedBefore *time.Time
	// ByDeadline orders by deadline, earliest first (else newest first).
	ByDeadline bool
	// Limit caps the page; default 50, at most 500.
	Limit int
	// Offset skips that many rows.
	Offset int
}

// DocumentPage is one page of ListDocuments.
type DocumentPage struct {
	Documents []Document `json:"documents"`
	// Total counts every document matching the filter.
	Total  int `json:"total"`
	Limit  int `json:"limit"`
	Offset int `json:"offset"`
}

// ListDocuments returns documents matching f, newest first.
func ListDocuments(ctx context.Context, db DB, f DocumentFilter) (DocumentPage, error) {
	if f.State != "" && !f.State.Valid() {
		return DocumentPage{}, fmt.Errorf("unknown state %q: %w", f.State, ErrInvalid)
	}
	states := make([]string, 0, len(f.States))
	for _, st := range f.States {
		if !st.Valid() {
			return DocumentPage{}, fmt.Errorf("unknown state %q: %w", st, ErrInvalid)
		}
		states = append(states, string(st))
	}
	f.Query = strings.TrimSpace(f.Query)
	if len(f.Query) > 100 {
		return DocumentPage{}, fmt.Errorf("search text longer than 100 bytes: %w", ErrInvalid)
	}
	if f.Limit <= 0 {
		f.Limit = 50
	}
	if f.Limit > 500 {
		f.Limit = 500
	}
	if f.Offset < 0 {
		return DocumentPage{}, fmt.Errorf("negative offset: %w", ErrInvalid)
	}
	const where = ` FROM documents WHERE ($1 = '' OR state = $1) AND ($2 = '' OR device_id = $2) AND ($3 = '' OR site_id = $3)
		AND (cardinality($4::text[]) = 0 OR state = ANY($4))
		AND ($5 = '' OR ($6 <> '' AND number_key LIKE '%' || $6 || '%' ESCAPE '\')
		     OR coalesce(holder_first_name, '') || ' ' || coalesce(holder_last_name, '') ILIKE '%' || $7 || '%' ESCAPE '\'
		     OR coalesce(holder_last_name, '') || ' ' || coalesce(holder_first_name, '') ILIKE '%' || $7 || '%' ESCAPE '\')
		AND ($8::timestamptz IS NULL OR deadline <= $8)
		AND ($9::timestamptz IS NULL OR created_at >= $9) AND ($10::timestamptz IS NULL OR created_at < $10)`
	like := func(s string) string {
		return strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(s)
	}
	// utc is a bound as the query takes it: nil (none) or UTC.
	utc := func(t *time.Time) any {
		if t == nil {
			return nil
		}
		return t.UTC()
	}
	args := []any{string(f.State), f.DeviceID, f.SiteID, states, f.Query, like(DocumentNumberKey(f.Query)),
		like(strings.Join(strings.Fields(f.Query), " ")), utc(f.DeadlineBefore), utc(f.CreatedFrom), utc(f.CreatedBefore)}
	page := DocumentPage{Documents: []Document{}, Limit: f.Limit, Offset: f.Offset}
	if err := db.QueryRow(ctx, "SELECT count(*)"+where, args...).Scan(&page.Total); err != nil {
		return DocumentPage{}, fmt.Errorf("store: list documents: %w", err)
	}
	order := " ORDER BY created_at DESC, id"
	if f.ByDeadline {
		order = " ORDER BY deadline NULLS LAST, id"
	}
	rows, err := db.Query(ctx, "SELECT "+documentColumns+where+order+" LIMIT $11 OFFSET $12",
		append(args, f.Limit, f.Offset)...)
	if err != nil {
		return DocumentPage{}, fmt.Errorf("store: list documents: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		d, err := scanDocument(rows)
		if err != nil {
			return DocumentPage{}, fmt.Errorf("store: list documents: %w", err)
		}
		page.Documents = append(page.Documents, d)
	}
	if err := rows.Err(); err != nil {
		return DocumentPage{}, fmt.Errorf("store: list documents: %w", err)
	}
	return page, nil
}

// DocumentCountsByState counts documents per state; every state is present
// (0 when none). For the metrics gauge.
func DocumentCountsByState(ctx context.Context, db DB) (map[string]int, error) {
	out := map[string]int{}
	for _, s := range lifecycle.States() {
		out[string(s)] = 0
	}
	rows, err := db.Query(ctx, "SELECT state, count(*) FROM documents GROUP BY state")
	if err != nil {
		return nil, fmt.Errorf("store: count documents: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, fmt.Errorf("store: count documents: %w", err)
		}
		out[s] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: count documents: %w", err)
	}
	return out, nil
}

// DocumentCountsByState counts documents per state on the pool.
func (s *Store) DocumentCountsByState(ctx context.Context) (map[string]int, error) {
	return DocumentCountsByState(ctx, s.pool)
}

// DueForExpiry returns ids of loaded or notified documents whose deadline
// is at or before now, earliest deadline first, at most limit.
func DueForExpiry(ctx context.Context, db DB, now time.Time, limit int) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT id::text FROM documents WHERE state IN ('loaded', 'notified') AND deadline <= $1
		ORDER BY deadline, id LIMIT $2`, now.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("store: due for expiry: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: due for expiry: %w", err)
	}
	return ids, nil
}

// PurgePersonalData erases the personal fields (number, names, birth date,
// e-mail, mobile) of at most limit documents in a final state closed at or
// before cutoff and not purged yet, oldest first, setting purged_at to
// now. The number pseudonym, kind, language, states and times stay. Rows
// another transaction holds (a clerk's) are skipped, never waited for: the
// next pass takes them. It returns the purged ids.
func PurgePersonalData(ctx context.Context, db DB, cutoff, now time.Time, limit int) ([]string, error) {
	rows, err := db.Query(ctx, `WITH doomed AS (
		SELECT id FROM documents
		WHERE purged_at IS NULL AND state IN ('collected', 'retrieved', 'cancelled') AND closed_at <= $1
		ORDER BY closed_at LIMIT $3 FOR UPDATE SKIP LOCKED)
		UPDATE documents d SET number = NULL, holder_first_name = NULL, holder_last_name = NULL,
		holder_birth_date = NULL, email = NULL, mobile = NULL, purged_at = $2, updated_at = $2, version = version + 1
		FROM doomed WHERE d.id = doomed.id
		RETURNING d.id::text`, cutoff.UTC(), now.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("store: purge: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: purge: %w", err)
	}
	return ids, nil
}

// Unclaimed is a document whose personal data PurgeUnclaimedPersonalData
// erased while it was still open, and the state it was in.
type Unclaimed struct {
	ID    string
	State lifecycle.State
}

// PurgeUnclaimedPersonalData erases the personal fields of at most limit
// documents that were never closed (any state but collected, retrieved and
// cancelled) and not purged yet, whose pickup deadline, or registration
// when they were never loaded, is at or before cutoff, oldest first,
// setting purged_at to now. Their state, compartment and history stay: an
// expired document is still behind its door until staff take it back.
// Rows another transaction holds are skipped (the next pass takes them).
func PurgeUnclaimedPersonalData(ctx context.Context, db DB, cutoff, now time.Time, limit int) ([]Unclaimed, error) {
	rows, err := db.Query(ctx, `WITH doomed AS (
		SELECT id FROM documents
		WHERE purged_at IS NULL AND state NOT IN ('collected', 'retrieved', 'cancelled') AND coalesce(deadline, created_at) <= $1
		ORDER BY coalesce(deadline, created_at) LIMIT $3 FOR UPDATE SKIP LOCKED)
		UPDATE documents d SET number = NULL, holder_first_name = NULL, holder_last_name = NULL,
		holder_birth_date = NULL, email = NULL, mobile = NULL, purged_at = $2, updated_at = $2, version = version + 1
		FROM doomed WHERE d.id = doomed.id
		RETURNING d.id::text, d.state`, cutoff.UTC(), now.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("store: purge unclaimed: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Unclaimed, error) {
		var u Unclaimed
		err := r.Scan(&u.ID, &u.State)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: purge unclaimed: %w", err)
	}
	return out, nil
}

// FindActiveByNumber returns the document with this printed number that is
// still being handled (not collected, retrieved or cancelled), optionally
// at one site (siteID ""). Numbers compare by DocumentNumberKey (no case,
// spaces or dashes). ErrNotFound when none, ErrConflict when documents of
// several kinds share the number.
func FindActiveByNumber(ctx context.Context, db DB, number, siteID string) (Document, error) {
	number = DocumentNumberKey(number)
	if number == "" || len(number) > 64 {
		return Document{}, fmt.Errorf("document number: %w", ErrNotFound)
	}
	rows, err := db.Query(ctx, "SELECT "+documentColumns+` FROM documents
		WHERE number_key = $1 AND ($2 = '' OR site_id = $2) AND state NOT IN ('collected', 'retrieved', 'cancelled')
		ORDER BY created_at LIMIT 2`, number, siteID)
	if err != nil {
		return Document{}, fmt.Errorf("store: find by number: %w", err)
	}
	defer rows.Close()
	var found []Document
	for rows.Next() {
		d, err := scanDocument(rows)
		if err != nil {
			return Document{}, fmt.Errorf("store: find by number: %w", err)
		}
		found = append(found, d)
	}
	if err := rows.Err(); err != nil {
		return Document{}, fmt.Errorf("store: find by number: %w", err)
	}
	switch len(found) {
	case 0:
		return Document{}, fmt.Errorf("no document with this number is being handled: %w", ErrNotFound)
	case 1:
		return found[0], nil
	}
	return Document{}, fmt.Errorf("documents of several kinds share this number: %w", ErrConflict)
}
