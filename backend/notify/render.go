package notify

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"strings"
	"text/template"
	"time"
	_ "time/tzdata" // Europe/Brussels without system tzdata
)

// ErrInvalid means a message cannot be built from the input.
var ErrInvalid = errors.New("invalid input")

// MessageData fills the message templates. Every field is plain text; HTML
// escaping is done when rendering.
type MessageData struct {
	// FirstName is the holder's first name.
	FirstName string
	// Doc is the document kind in the holder's language (see DocName).
	Doc string
	// SiteName and SiteAddress say where the device stands.
	SiteName, SiteAddress string
	// DeviceName is the device's name on its front.
	DeviceName string
	// Compartment is the 1-based compartment number.
	Compartment int
	// Deadline is the pickup deadline, formatted (see FormatTime).
	Deadline string
	// When is the time of the event (collection), formatted.
	When string
	// PIN is the grouped PIN (ready message only).
	PIN string
	// TrackURL is the citizen's track page.
	TrackURL string
	// Sender signs the message, e.g. "Stad Kortrijk".
	Sender string
}

// Rendered is one message in one language.
type Rendered struct {
	// Language is the language used (after fallback).
	Language string
	// Subject is the e-mail subject.
	Subject string
	// Text is the plain-text body.
	Text string
	// HTML is the HTML body; it shows the inline QR image when QRContentID is set.
	HTML string
	// SMS is the short text message.
	SMS string
}

// Language returns lang when supported, else Dutch.
func Language(lang string) string {
	if _, ok := catalogue[lang]; ok {
		return lang
	}
	return Languages[0]
}

// DocName is a document kind in a language.
func DocName(lang, kind string) string {
	if n, ok := docNames[Language(lang)][kind]; ok {
		return n
	}
	return kind
}

// Brussels is the time zone of every time shown to citizens.
var Brussels = mustLoad("Europe/Brussels")

func mustLoad(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		return time.FixedZone("CET", 3600)
	}
	return l
}

// FormatTime writes t in Europe/Brussels time the way the language does,
// e.g. "4 december 2026 om 18.00 uur".
func FormatTime(lang string, t time.Time) string {
	lang = Language(lang)
	t = t.In(Brussels)
	m := months[lang][t.Month()-1]
	switch lang {
	case "nl":
		return fmt.Sprintf("%d %s %d om %02d.%02d uur", t.Day(), m, t.Year(), t.Hour(), t.Minute())
	case "fr":
		return fmt.Sprintf("%d %s %d à %02dh%02d", t.Day(), m, t.Year(), t.Hour(), t.Minute())
	case "de":
		return fmt.Sprintf("%d. %s %d, %02d:%02d Uhr", t.Day(), m, t.Year(), t.Hour(), t.Minute())
	default:
		return fmt.Sprintf("%d %s %d at %02d:%02d", t.Day(), m, t.Year(), t.Hour(), t.Minute())
	}
}

var htmlBody = htmltemplate.Must(htmltemplate.New("mail").Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}"><head><meta charset="utf-8"><title>{{.Subject}}</title></head>
<body style="font-family: Arial, sans-serif; font-size: 18px; line-height: 1.5; color: #111; max-width: 36em;">
{{range $i, $p := .Paragraphs}}<p>{{$p}}</p>
{{if and (eq $i 4) $.QR}}<p><img src="cid:{{$.QR}}" alt="QR" width="240" height="240" style="image-rendering: pixelated;"></p>
{{end}}{{end}}</body></html>
`))

// Render builds message msg in lang (unknown languages fall back to Dutch).
// qrContentID, when not empty, puts the inline QR image (cid:) in the HTML.
func Render(lang, msg string, d MessageData, qrContentID string) (Rendered, error) {
	lang = Language(lang)
	e, ok := catalogue[lang][msg]
	if !ok {
		return Rendered{}, fmt.Errorf("notify: no message %q: %w", msg, ErrInvalid)
	}
	out := Rendered{Language: lang}
	var err error
	if out.Subject, err = execText(e.Subject, d); err != nil {
		return Rendered{}, err
	}
	paras := make([]string, 0, len(e.Paragraphs))
	for _, p := range e.Paragraphs {
		s, err := execText(p, d)
		if err != nil {
			return Rendered{}, err
		}
		paras = append(paras, s)
	}
	out.Text = strings.Join(paras, "\n\n") + "\n"
	if out.SMS, err = execText(e.SMS, d); err != nil {
		return Rendered{}, err
	}
	var b bytes.Buffer
	if err := htmlBody.Execute(&b, map[string]any{"Lang": lang, "Subject": out.Subject, "Paragraphs": paras, "QR": qrContentID}); err != nil {
		return Rendered{}, fmt.Errorf("notify: html: %w", err)
	}
	out.HTML = b.String()
	return out, nil
}

func execText(src string, d MessageData) (string, error) {
	t, err := template.New("m").Option("missingkey=error").Parse(src)
	if err != nil {
		return "", fmt.Errorf("notify: template %q: %w", src, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("notify: template: %w", err)
	}
	return b.String(), nil
}

// T returns a fixed word of the slip or track page in lang.
func T(lang, key string) string {
	if s, ok := ui[Language(lang)][key]; ok {
		return s
	}
	return ui["en"][key]
}
