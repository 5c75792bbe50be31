package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"

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

// TrackView is what the track page shows: never a code, never the last name.
type TrackView struct {
	// Language to show the page in.
	Language string
	// TrackingID is the page's id (for the language links).
	TrackingID string
	// FirstName of the holder ("" after the retention purge).
	FirstName string
	// State is the document's lifecycle state.
	State string
	// DocumentKind, e.g. "passport".
	DocumentKind string
	// SiteName, SiteAddress, DeviceName and Compartment say where (Compartment 0: not yet known).
	SiteName, SiteAddress, DeviceName string
	Compartment                       int
	// Deadline ends the pickup period (nil: not yet set).
	Deadline *time.Time
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

var trackTmpl = htmltemplate.Must(htmltemplate.New("track").Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.T.title}}</title>
<style>
body { font-family: Arial, sans-serif; font-size: 20px; line-height: 1.5; color: #111; max-width: 34em; margin: 1em auto; padding: 0 1em; }
nav a { margin-right: 0.8em; } nav a[aria-current] { font-weight: bold; text-decoration: none; color: #111; }
.status { font-size: 1.3em; font-weight: bold; }
</style></head>
<body>
<nav aria-label="{{.T.language}}">{{range .Langs}}<a href="?lang={{.Code}}" hreflang="{{.Code}}" lang="{{.Code}}"{{if .Current}} aria-current="true"{{end}}>{{.Name}}</a>{{end}}</nav>
<h1>{{.T.title}}</h1>
{{if .Found}}{{if .FirstName}}<p>{{.T.hello}} {{.FirstName}},</p>{{end}}
<p class="status">{{.Status}}</p>
{{if .Doc}}<p>{{.Doc}}</p>{{end}}
{{if .Where}}<p><b>{{.T.where}}:</b> {{.Where}}</p>{{end}}
{{if .Deadline}}<p><b>{{.T.until}}:</b> {{.Deadline}}</p>{{end}}
{{else}}<p class="status">{{.T.unknown}}</p>{{end}}
<p>{{.T.help}}</p>
</body></html>
`))

var langNames = map[string]string{"nl": "Nederlands", "fr": "Français", "en": "English", "de": "Deutsch"}

// RenderTrackPage writes the citizen's track page for v (nil: "not found")
// in lang (falls back to v.Language, then Dutch).
func RenderTrackPage(w io.Writer, lang string, v *TrackView) error {
	if _, ok := catalogue[lang]; !ok && v != nil {
		lang = v.Language
	}
	lang = Language(lang)
	t := map[string]string{}
	for _, k := range []string{"title", "hello", "status", "where", "until", "help", "language", "unknown"} {
		t[k] = T(lang, "track."+k)
	}
	type link struct {
		Code, Name string
		Current    bool
	}
	var langs []link
	for _, l := range Languages {
		langs = append(langs, link{l, langNames[l], l == lang})
	}
	data := map[string]any{"Lang": lang, "T": t, "Langs": langs, "Found": v != nil}
	if v != nil {
		data["FirstName"] = v.FirstName
		data["Status"] = T(lang, statusKey(v.State))
		data["Doc"] = ""
		if v.DocumentKind != "" {
			data["Doc"] = DocName(lang, v.DocumentKind)
		}
		where := ""
		switch {
		case v.State == "retrieved" || v.State == "expired":
			where = v.SiteName + ", " + v.SiteAddress
		case v.Compartment > 0 && (v.State == "loaded" || v.State == "notified"):
			where = fmt.Sprintf("%s, %s. %s %s, %s %d.", v.SiteName, v.SiteAddress, T(lang, "slip.locker"), v.DeviceName, T(lang, "slip.compartment"), v.Compartment)
		case v.SiteName != "":
			where = v.SiteName + ", " + v.SiteAddress
		}
		data["Where"] = where
		data["Deadline"] = ""
		if v.Deadline != nil && (v.State == "loaded" || v.State == "notified") {
			data["Deadline"] = FormatTime(lang, *v.Deadline)
		}
	}
	var b bytes.Buffer
	if err := trackTmpl.Execute(&b, data); err != nil {
		return fmt.Errorf("notify: track page: %w", err)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// LookupTrack loads the track view of a tracking id.
func LookupTrack(ctx context.Context, db store.DB, trackingID string) (TrackView, error) {
	if !ValidTrackingID(trackingID) {
		return TrackView{}, ErrNotFound
	}
	var (
		v           TrackView
		first       *string
		deviceName  *string
		compartment *int
	)
	err := db.QueryRow(ctx, `SELECT d.language, coalesce(d.holder_first_name, ''), d.state, d.kind, s.name, s.address,
		coalesce(nullif(dv.name, ''), dv.id), c.number, d.deadline
		FROM notify_tracking t JOIN documents d ON d.id = t.document_id JOIN sites s ON s.id = d.site_id
		LEFT JOIN devices dv ON dv.id = d.device_id LEFT JOIN compartments c ON c.id = d.compartment_id
		WHERE t.tracking_id = $1`, trackingID).Scan(&v.Language, &first, &v.State, &v.DocumentKind, &v.SiteName,
		&v.SiteAddress, &deviceName, &compartment, &v.Deadline)
	if errors.Is(err, pgx.ErrNoRows) {
		return TrackView{}, ErrNotFound
	}
	if err != nil {
		return TrackView{}, fmt.Errorf("notify: track %w", err)
	}
	v.TrackingID = trackingID
	if first != nil {
		v.FirstName = *first
	}
	if deviceName != nil {
		v.DeviceName = *deviceName
	}
	if compartment != nil {
		v.Compartment = *compartment
	}
	return v, nil
}

// TrackHandler serves the track page; mount it as "GET /t/{trackingID}".
// The language comes from ?lang=, else the holder's language.
type TrackHandler struct {
	// DB is the database.
	DB store.DB
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// ServeHTTP renders the page (404 with a helpful page when unknown).
func (h *TrackHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Robots-Tag", "noindex")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	lang := r.URL.Query().Get("lang")
	v, err := LookupTrack(r.Context(), h.DB, r.PathValue("trackingID"))
	switch {
	case errors.Is(err, ErrNotFound):
		w.WriteHeader(http.StatusNotFound)
		_ = RenderTrackPage(w, lang, nil)
		return
	case err != nil:
		log := h.Logger
		if log == nil {
			log = slog.Default()
		}
		log.With("part", "notify").Error("track page", "err", err)
		http.Error(w, "temporarily unavailable, call 1777", http.StatusServiceUnavailable)
		return
	}
	_ = RenderTrackPage(w, lang, &v)
}
