package apiclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Session is kluis-backend's REST API as one signed-in user.
type Session struct {
	// Base is the API's URL, "http://host:port" (the routes are under
	// /api/v1). A caller may point it at another replica.
	Base string
	// Token is the session's bearer token.
	Token string
	// HTTP sends the requests; nil: http.DefaultClient.
	HTTP *http.Client
}

// Login opens a session for username at base (POST /api/v1/sessions). A
// wrong password is a *StatusError with status 401 (429 while the login is
// rate limited).
func Login(ctx context.Context, hc *http.Client, base, username, password string) (Session, error) {
	var tok struct {
		Token string `json:"token"`
	}
	if err := DoJSON(ctx, hc, http.MethodPost, base+"/api/v1/sessions", "",
		map[string]string{"username": username, "password": password}, &tok); err != nil {
		return Session{}, fmt.Errorf("login %s: %w", username, err)
	}
	if tok.Token == "" {
		return Session{}, fmt.Errorf("login %s: no token in the answer", username)
	}
	return Session{Base: base, Token: tok.Token, HTTP: hc}, nil
}

// Do sends in (when not nil) to path (e.g. "/api/v1/documents") with the
// session's token and decodes the 2xx answer into out (see DoJSON).
func (s Session) Do(ctx context.Context, method, path string, in, out any) error {
	return DoJSON(ctx, s.HTTP, method, s.Base+path, s.Token, in, out)
}

// AuditRecord is one record of the audit chain as GET /api/v1/audit lists
// it.
type AuditRecord struct {
	Seq     int64          `json:"seq"`
	At      time.Time      `json:"at"`
	Actor   string         `json:"actor"`
	Action  string         `json:"action"`
	Subject string         `json:"subject"`
	Details map[string]any `json:"details"`
	Hash    string         `json:"hash"`
}

// AuditQuery selects audit records.
type AuditQuery struct {
	// Subject keeps the records about one subject ("device:locker-1",
	// "document:..."); "" keeps all.
	Subject string
	// Max is the most records read; more is an error (ErrTooManyRecords),
	// so that a caller never looks at a cut-off chain. It must be above 0.
	Max int
	// PageSize is the records asked for per call; 0: MaxPageSize.
	PageSize int
}

// MaxPageSize is the largest page the API hands out.
const MaxPageSize = 200

// ErrTooManyRecords is returned when more than AuditQuery.Max records
// match.
var ErrTooManyRecords = errors.New("more audit records than asked for")

// Audit returns the audit records q selects, oldest first, following the
// API's cursors page by page (admins only).
func (s Session) Audit(ctx context.Context, q AuditQuery) ([]AuditRecord, error) {
	if q.Max <= 0 {
		return nil, fmt.Errorf("audit: Max must be above 0, not %d", q.Max)
	}
	if q.PageSize <= 0 || q.PageSize > MaxPageSize {
		q.PageSize = MaxPageSize
	}
	var all []AuditRecord
	cursor := ""
	for {
		var page struct {
			Items      []AuditRecord `json:"items"`
			NextCursor string        `json:"next_cursor"`
		}
		v := url.Values{"limit": {strconv.Itoa(q.PageSize)}}
		if q.Subject != "" {
			v.Set("subject", q.Subject)
		}
		if cursor != "" {
			v.Set("cursor", cursor)
		}
		if err := s.Do(ctx, http.MethodGet, "/api/v1/audit?"+v.Encode(), nil, &page); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		all = append(all, page.Items...)
		if len(all) > q.Max {
			return nil, fmt.Errorf("audit of %q: %w (%d)", q.Subject, ErrTooManyRecords, q.Max)
		}
		if page.NextCursor == "" {
			return all, nil
		}
		if len(page.Items) == 0 {
			return nil, fmt.Errorf("audit of %q: an empty page with a next cursor", q.Subject)
		}
		cursor = page.NextCursor
	}
}

// Document is a document as the API answers it (GET
// /api/v1/documents/{id}, and the transitions that return it): the fields
// the demo and the tests read; docs/api.md has them all.
type Document struct {
	ID            string     `json:"id"`
	Kind          string     `json:"kind"`
	Number        string     `json:"number"`
	State         string     `json:"state"`
	DeviceID      string     `json:"device_id"`
	CompartmentID int64      `json:"compartment_id"`
	Deadline      *time.Time `json:"deadline"`
	LoadedAt      *time.Time `json:"loaded_at"`
	// History is every transition, oldest first (only in GET's answer).
	History []Transition `json:"history"`
}

// Transition is one step of a document's life.
type Transition struct {
	At     time.Time `json:"at"`
	Action string    `json:"action"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	// Actor is who did it: "user:ID", "device:ID" or "system".
	Actor string `json:"actor"`
}

// ActorOf returns who last moved the document into state ("" when it never
// was).
func (d Document) ActorOf(state string) string {
	for i := len(d.History) - 1; i >= 0; i-- {
		if d.History[i].To == state {
			return d.History[i].Actor
		}
	}
	return ""
}

// Document reads a document with its history.
func (s Session) Document(ctx context.Context, id string) (Document, error) {
	var d Document
	err := s.Do(ctx, http.MethodGet, "/api/v1/documents/"+url.PathEscape(id), nil, &d)
	return d, err
}
