package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"kluis/backend/lifecycle"
	"kluis/backend/store"
)

// ErrNotFound means no document has this tracking id.
var ErrNotFound = errors.New("not found")

// NewTrackingID returns a random tracking id: 16 bytes from crypto/rand in
// base64url (22 characters).
func NewTrackingID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("notify: tracking id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

var trackingRe = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

// ValidTrackingID reports whether s has the shape of a tracking id.
func ValidTrackingID(s string) bool { return trackingRe.MatchString(s) }

// TrackingID returns the document's tracking id, creating it on first use.
func TrackingID(ctx context.Context, db store.DB, documentID string, now time.Time) (string, error) {
	id, err := NewTrackingID()
	if err != nil {
		return "", err
	}
	if _, err := db.Exec(ctx, `INSERT INTO notify_tracking (document_id, tracking_id, created_at)
		VALUES ($1::uuid, $2, $3) ON CONFLICT (document_id) DO NOTHING`, documentID, id, now); err != nil {
		return "", fmt.Errorf("notify: tracking id for %s: %w", documentID, err)
	}
	if err := db.QueryRow(ctx, `SELECT tracking_id FROM notify_tracking WHERE document_id = $1::uuid`, documentID).Scan(&id); err != nil {
		return "", fmt.Errorf("notify: tracking id for %s: %w", documentID, err)
	}
	return id, nil
}

// TrackView is what the track page shows: never a code, never the last
// name, never who did what.
type TrackView struct {
	// Language to show the page in.
	Language string
	// TrackingID is the page's id.
	TrackingID string
	// FirstName of the holder ("" after the retention purge).
	FirstName string
	// State is the document's lifecycle state.
	State string
	// DocumentKind, e.g. "passport".
	DocumentKind string
	// SiteName and SiteAddress say where; DeviceKind, DeviceName,
	// Directions and Compartment which device and compartment
	// (Compartment 0: not yet known).
	SiteName, SiteAddress, DeviceKind, DeviceName string
	Directions                                    map[string]string
	Compartment                                   int
	// Deadline ends the pickup period (nil: not yet set).
	Deadline *time.Time
	// Location is the site's time zone (nil: Europe/Brussels).
	Location *time.Location
	// Steps are the document's journey so far, oldest first.
	Steps []Step
}

// Step is one event of a document's journey, from its history.
type Step struct {
	// Kind is one of the Step* constants.
	Kind string
	// At is when it happened.
	At time.Time
}

// The kinds of steps on the track page.
const (
	StepRegistered = "registered" // registered at the counter
	StepLoaded     = "loaded"     // put in the compartment: ready
	StepNotified   = "notified"   // the holder got the message with the codes
	StepReissued   = "reissued"   // new codes, the old ones revoked
	StepReminder   = "reminder"   // a reminder reached the holder
	StepCollected  = "collected"  // the holder took it
	StepExpired    = "expired"    // the pickup period ended
	StepRetrieved  = "retrieved"  // staff took it back to the counter
	StepCancelled  = "cancelled"  // the pickup was cancelled
)

// stepOf maps a history action to a step kind ("" for actions the citizen
// does not need: reserve, unreserve, renotify without a sent reminder).
var stepOf = map[string]string{
	"register": StepRegistered, "load": StepLoaded, "notify": StepNotified, "reissue": StepReissued,
	"renotify": StepReminder, "collect": StepCollected, "expire": StepExpired, "retrieve": StepRetrieved, "cancel": StepCancelled,
}

// statusKey maps a lifecycle state to the catalogue's status text.
func statusKey(state string) string {
	switch state {
	case "loaded", "notified":
		return "status.ready"
	case "collected":
		return "status.collected"
	case "expired":
		return "status.returning"
	case "retrieved":
		return "status.counter"
	case "cancelled":
		return "status.cancelled"
	default:
		return "status.preparing"
	}
}

// trackPage is the track page laid out; the template holds no words.
type trackPage struct {
	Lang, Title, LangLabel string
	Langs                  []langLink
	Found                  bool
	Hello, Status          string
	NextTitle              string
	Next                   []string
	WhereTitle             string
	Where                  []string
	StepsTitle             string
	Steps                  []stepView
	HelpTitle, Help        string
	// Message replaces the document part when there is none.
	Message string
}

type langLink struct {
	Code, Name string
	Current    bool
}

type stepView struct {
	Text, Detail, When, Datetime, Label string
	Current, Upcoming                   bool
}

// trackTmpl: one column that reflows from 320 CSS pixels up (200% zoom on
// a 640 px window is the same), sizes in rem so that text zoom works,
// headings in order, the journey as an ordered list, the current and the
// upcoming steps named in words (not by colour or shape alone), contrast
// above 7:1 for text and 3:1 for the marks.
const trackSrc = `<!DOCTYPE html>
<html lang="{{.Lang}}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}}</title>
<style>
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font-family: Arial, Helvetica, sans-serif; font-size: 1.25rem; line-height: 1.5; color: #111; background: #fff; margin: 0; overflow-wrap: anywhere; }
.page { max-width: 40rem; margin: 0 auto; padding: 0.75rem 1rem 2rem; }
a { color: #0b4f9c; text-decoration: underline; }
a:focus-visible { outline: 3px solid #111; outline-offset: 2px; }
nav ul { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: 0.25rem 1.25rem; }
nav a { display: inline-block; padding: 0.25rem 0; }
nav a[aria-current] { color: #111; font-weight: bold; text-decoration: none; border-bottom: 3px solid #111; }
h1 { font-size: 1.75rem; line-height: 1.25; margin: 1.25rem 0 0.75rem; }
h2 { font-size: 1.375rem; line-height: 1.3; margin: 2rem 0 0.75rem; }
h3 { font-size: 1.25rem; line-height: 1.3; margin: 1rem 0 0.25rem; }
p { margin: 0 0 0.75rem; }
.status { font-size: 1.375rem; font-weight: bold; }
.next { border: 3px solid #111; border-radius: 0.5rem; padding: 0 1rem 0.25rem; margin-top: 1.5rem; }
.next h2 { margin-top: 0.75rem; }
.where { margin: 0 0 0.75rem; }
.where p { margin: 0; }
.steps { list-style: none; margin: 0; padding: 0; }
.steps li { position: relative; padding: 0 0 1.25rem 2.5rem; }
.steps li::before { content: ""; position: absolute; left: 0.6875rem; top: 1.75rem; bottom: 0.25rem; border-left: 3px solid #555; }
.steps li:last-child::before { display: none; }
.steps li.upcoming::before, .steps li:has(+ li.upcoming)::before { border-left-style: dashed; }
.mark { position: absolute; left: 0; top: 0.25rem; width: 1.5rem; height: 1.5rem; border: 3px solid #111; border-radius: 50%; background: #111; }
.upcoming .mark { background: #fff; }
.steps p { margin: 0; }
.step { font-weight: bold; }
.when, .detail { color: #333; }
.label { display: inline-block; font-size: 1rem; line-height: 1.4; border: 2px solid #111; border-radius: 0.25rem; padding: 0 0.375rem; margin-left: 0.25rem; }
.current .label { background: #111; color: #fff; }
</style></head>
<body><div class="page">
<header><nav aria-label="{{.LangLabel}}"><ul>{{range .Langs}}<li><a href="?lang={{.Code}}" hreflang="{{.Code}}" lang="{{.Code}}"{{if .Current}} aria-current="true"{{end}}>{{.Name}}</a></li>{{end}}</ul></nav></header>
<main>
<h1>{{.Title}}</h1>
{{if .Found}}{{if .Hello}}<p>{{.Hello}}</p>
{{end}}<p class="status">{{.Status}}</p>
<section class="next" aria-labelledby="next-title">
<h2 id="next-title">{{.NextTitle}}</h2>
{{range .Next}}<p>{{.}}</p>
{{end}}{{if .Where}}<h3>{{.WhereTitle}}</h3>
<div class="where">{{range .Where}}<p>{{.}}</p>{{end}}</div>
{{end}}</section>
<section aria-labelledby="steps-title">
<h2 id="steps-title">{{.StepsTitle}}</h2>
<ol class="steps">
{{range .Steps}}<li class="{{if .Upcoming}}upcoming{{else}}done{{end}}{{if .Current}} current{{end}}"{{if .Current}} aria-current="step"{{end}}>
<span class="mark" aria-hidden="true"></span>
<p class="step">{{.Text}}{{if .Label}} <span class="label">{{.Label}}</span>{{end}}</p>
{{if .Detail}}<p class="detail">{{.Detail}}</p>
{{end}}<p class="when">{{if .Datetime}}<time datetime="{{.Datetime}}">{{.When}}</time>{{else}}{{.When}}{{end}}</p>
</li>
{{end}}</ol>
</section>
{{else}}<p class="status">{{.Message}}</p>
{{end}}<section aria-labelledby="help-title">
<h2 id="help-title">{{.HelpTitle}}</h2>
<p>{{.Help}}</p>
</section>
</main>
</div></body></html>
`

var trackTmpl = htmltemplate.Must(htmltemplate.New("track").Parse(trackSrc))

// trackCSP allows the page's one style element by its hash, not any
// inline style ('unsafe-inline' before): no script, no framing, no
// form, images only as data:.
var trackCSP = "default-src 'none'; style-src '" + styleHash(trackSrc) + "'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// styleHash is the CSP source of the text of src's first <style>
// element ('sha256-...'), as a browser hashes it.
func styleHash(src string) string {
	_, rest, ok := strings.Cut(src, "<style>")
	css, _, ok2 := strings.Cut(rest, "</style>")
	if !ok || !ok2 {
		panic("notify: no <style> element to hash")
	}
	sum := sha256.Sum256([]byte(css))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// Track page messages for RenderTrackPage's v == nil.
const (
	trackNotFound    = "track.unknown"
	trackUnavailable = "track.unavailable"
)

// RenderTrackPage writes the citizen's track page for v (nil: "not
// found") in lang (falls back to v.Language, then Dutch); now is the
// current time (for the year of dates).
func RenderTrackPage(w io.Writer, lang string, v *TrackView, now time.Time) error {
	return renderTrack(w, catalogue, lang, v, trackNotFound, now)
}

func renderTrack(w io.Writer, c cat, lang string, v *TrackView, missing string, now time.Time) error {
	if _, ok := c[lang]; !ok && v != nil {
		lang = v.Language
	}
	var loc *time.Location
	if v != nil {
		loc = v.Location
	}
	t := newTr(c, lang, loc, now)
	p := trackPage{Lang: t.lang, Title: t.s("track.title", nil), LangLabel: t.s("track.language", nil), Found: v != nil,
		HelpTitle: t.s("mail.help_title", nil), Help: t.s("mail.help", nil)}
	for _, l := range Languages {
		p.Langs = append(p.Langs, langLink{Code: l, Name: c.raw(l, "lang.name"), Current: l == t.lang})
	}
	if v == nil {
		p.Message = t.s(missing, nil)
	} else {
		fillTrack(t, &p, v)
	}
	if t.err != nil {
		return t.err
	}
	var b bytes.Buffer
	if err := trackTmpl.Execute(&b, p); err != nil {
		return fmt.Errorf("notify: track page: %w", err)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func fillTrack(t *tr, p *trackPage, v *TrackView) {
	md := MessageData{FirstName: v.FirstName, DocumentKind: v.DocumentKind, SiteName: v.SiteName, SiteAddress: v.SiteAddress,
		DeviceKind: v.DeviceKind, DeviceName: v.DeviceName, Compartment: v.Compartment}
	if v.Deadline != nil {
		md.Deadline = *v.Deadline
	}
	vv := baseVars(t, md, "where.")
	if v.FirstName != "" {
		p.Hello = t.s("track.hello", &vv)
	}
	p.Status = t.s(statusKey(v.State), &vv)
	p.NextTitle, p.WhereTitle, p.StepsTitle = t.s("track.next_title", nil), t.s("mail.where_title", nil), t.s("track.steps_title", nil)
	ready := lifecycle.State(v.State).AwaitsHolder()
	switch {
	case ready && v.Deadline != nil:
		p.Next = []string{t.s("next.ready", &vv), t.s("next.bring", nil), t.s("mail.lost_codes", nil)}
	case ready:
		p.Next = []string{t.s("next.bring", nil), t.s("mail.lost_codes", nil)}
	case v.State == "collected":
		p.Next = []string{t.s("next.done", nil), t.s("receipt.not_you", nil)}
	case v.State == "expired":
		p.Next = []string{t.s("returned.counter", nil)}
	case v.State == "retrieved":
		p.Next = []string{t.s("next.counter", nil)}
	case v.State == "cancelled":
		p.Next = []string{t.s("next.cancelled", nil)}
	default:
		p.Next = []string{t.s("next.preparing", nil)}
	}
	switch {
	case ready && v.Compartment > 0:
		p.Where = nonEmpty(v.SiteName, v.SiteAddress, vv.Place, DirectionsIn(v.Directions, t.lang))
	case v.State == "expired" || v.State == "retrieved":
		p.Where = nonEmpty(v.SiteName, v.SiteAddress)
	}
	for _, s := range v.Steps {
		sv := stepView{When: t.at(s.At), Datetime: s.At.In(t.loc).Format(time.RFC3339)}
		switch s.Kind {
		case StepLoaded:
			sv.Text = t.s("step.loaded_"+deviceKey(v.DeviceKind), nil)
			if v.Compartment > 0 {
				sv.Detail = vv.Place
			}
		case StepRetrieved:
			sv.Text, sv.Detail = t.s("step.retrieved", nil), v.SiteName
		default:
			sv.Text = t.s("step."+s.Kind, nil)
		}
		p.Steps = append(p.Steps, sv)
	}
	if n := len(p.Steps); n > 0 {
		p.Steps[n-1].Current, p.Steps[n-1].Label = true, t.s("track.now", nil)
	}
	if ready && v.Deadline != nil {
		p.Steps = append(p.Steps, stepView{Text: t.s("step.deadline", nil), Label: t.s("track.upcoming", nil), Upcoming: true,
			When: vv.Until, Datetime: v.Deadline.In(t.loc).Format(time.RFC3339)})
	}
}

// LookupTrack loads the track view of a tracking id: the document, where
// it is, and its journey from the document history (transitions) and the
// reminders that reached the holder.
func LookupTrack(ctx context.Context, db store.DB, trackingID string) (TrackView, error) {
	if !ValidTrackingID(trackingID) {
		return TrackView{}, ErrNotFound
	}
	var (
		v                        TrackView
		docID, tz                string
		first, deviceName, dkind *string
		compartment              *int
		dirs                     map[string]string
	)
	err := db.QueryRow(ctx, `SELECT d.id::text, d.language, d.holder_first_name, d.state, d.kind, s.name, s.address, s.time_zone,
		dv.kind, coalesce(nullif(dv.name, ''), dv.id), dv.directions, c.number, d.deadline
		FROM notify_tracking t JOIN documents d ON d.id = t.document_id JOIN sites s ON s.id = d.site_id
		LEFT JOIN devices dv ON dv.id = d.device_id LEFT JOIN compartments c ON c.id = d.compartment_id
		WHERE t.tracking_id = $1`, trackingID).Scan(&docID, &v.Language, &first, &v.State, &v.DocumentKind, &v.SiteName,
		&v.SiteAddress, &tz, &dkind, &deviceName, &dirs, &compartment, &v.Deadline)
	if errors.Is(err, pgx.ErrNoRows) {
		return TrackView{}, ErrNotFound
	}
	if err != nil {
		return TrackView{}, fmt.Errorf("notify: track: %w", err)
	}
	v.TrackingID = trackingID
	v.Location = store.Site{TimeZone: tz}.Location()
	v.Directions = dirs
	if first != nil {
		v.FirstName = *first
	}
	if dkind != nil {
		v.DeviceKind = *dkind
	}
	if deviceName != nil {
		v.DeviceName = *deviceName
	}
	if compartment != nil {
		v.Compartment = *compartment
	}
	v.Steps, err = journey(ctx, db, docID)
	if err != nil {
		return TrackView{}, err
	}
	return v, nil
}

// journey reads a document's steps: its transitions (reserve and unreserve
// left out), a reminder only when one reached the holder (a sent reminder
// notification at or after the renotify transition and before the next).
func journey(ctx context.Context, db store.DB, documentID string) ([]Step, error) {
	rows, err := db.Query(ctx, `SELECT action, at FROM document_transitions WHERE document_id = $1::uuid ORDER BY id`, documentID)
	if err != nil {
		return nil, fmt.Errorf("notify: track history: %w", err)
	}
	type tr struct {
		action string
		at     time.Time
	}
	hist, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tr, error) {
		var x tr
		err := r.Scan(&x.action, &x.at)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("notify: track history: %w", err)
	}
	rows, err = db.Query(ctx, `SELECT created_at FROM notifications WHERE document_id = $1::uuid AND kind = 'reminder' AND status = 'sent'`, documentID)
	if err != nil {
		return nil, fmt.Errorf("notify: track reminders: %w", err)
	}
	sent, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return nil, fmt.Errorf("notify: track reminders: %w", err)
	}
	var out []Step
	for i, h := range hist {
		kind := stepOf[h.action]
		if kind == StepReminder {
			next := time.Time{}
			for _, later := range hist[i+1:] {
				if later.action == "renotify" {
					next = later.at
					break
				}
			}
			reached := false
			for _, at := range sent {
				if !at.Before(h.at) && (next.IsZero() || at.Before(next)) {
					reached = true
				}
			}
			if !reached {
				kind = ""
			}
		}
		if kind != "" {
			out = append(out, Step{Kind: kind, At: h.at})
		}
	}
	return out, nil
}

// TrackHandler serves the track page; mount it as "GET /t/{trackingID}".
// The language comes from ?lang=, else the holder's language. Without a
// valid tracking id it shows the same "not found" page whatever the id.
type TrackHandler struct {
	// DB is the database.
	DB store.DB
	// Clock gives the time; default time.Now.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// ServeHTTP renders the page (404 with a helpful page when unknown, 503
// with one when the database fails).
func (h *TrackHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Robots-Tag", "noindex")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Content-Security-Policy", trackCSP)
	now := time.Now()
	if h.Clock != nil {
		now = h.Clock()
	}
	lang := r.URL.Query().Get("lang")
	if !cleanText(lang) {
		lang = ""
	}
	id := r.PathValue("trackingID")
	if !cleanText(r.URL.Path) || !cleanText(id) {
		// A NUL byte or invalid UTF-8 (a link cut or typed wrong): a bad
		// request, the page saying to check the link, in the person's
		// language; never a lookup (PostgreSQL's text refuses both).
		w.WriteHeader(http.StatusBadRequest)
		_ = renderTrack(w, catalogue, lang, nil, trackNotFound, now)
		return
	}
	v, err := LookupTrack(r.Context(), h.DB, id)
	switch {
	case errors.Is(err, ErrNotFound):
		w.WriteHeader(http.StatusNotFound)
		_ = renderTrack(w, catalogue, lang, nil, trackNotFound, now)
		return
	case err != nil:
		log := h.Logger
		if log == nil {
			log = slog.Default()
		}
		log.With("part", "notify").Error("track page", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = renderTrack(w, catalogue, lang, nil, trackUnavailable, now)
		return
	}
	_ = RenderTrackPage(w, lang, &v, now)
}

// cleanText reports whether s holds neither a NUL byte nor invalid UTF-8.
func cleanText(s string) bool { return strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) }
