package notify

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// SlipData is what a pickup slip shows.
type SlipData struct {
	// Language of the holder.
	Language string
	// FirstName of the holder.
	FirstName string
	// DocumentKind, e.g. "eid".
	DocumentKind string
	// SiteName, SiteAddress, DeviceKind, DeviceName, Directions and
	// Compartment say where (see MessageData).
	SiteName, SiteAddress, DeviceKind, DeviceName, Directions string
	Compartment                                               int
	// Deadline ends the pickup period.
	Deadline time.Time
	// PIN in clear (grouped when shown).
	PIN string
	// QRToken is rendered as the QR code.
	QRToken string
	// Paper is "A6" (default) or "A4".
	Paper string
	// Now is when the slip is made (for the year of dates); zero: time.Now().
	Now time.Time
	// Location of the times shown; nil: Europe/Brussels.
	Location *time.Location
}

var slipTmpl = htmltemplate.Must(htmltemplate.New("slip").Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
@page { size: {{.Paper}}; margin: 8mm; }
body { font-family: Arial, sans-serif; font-size: {{if eq .Paper "A4"}}16pt{{else}}11pt{{end}}; color: #000; margin: 0; }
h1 { font-size: 1.4em; margin: 0 0 0.4em; }
h2 { font-size: 1.1em; margin: 0.6em 0 0.2em; }
.qr { width: {{if eq .Paper "A4"}}90mm{{else}}55mm{{end}}; height: auto; image-rendering: pixelated; display: block; }
.pin { font-size: 1.8em; font-weight: bold; letter-spacing: 0.08em; margin: 0.2em 0; }
.until { font-weight: bold; border: 2px solid #000; padding: 0.2em 0.4em; }
p { margin: 0.3em 0; }
@media screen { body { max-width: 148mm; margin: 1em auto; } }
</style></head>
<body>
<h1>{{.Title}}</h1>
{{if .Greeting}}<p>{{.Greeting}}</p>{{end}}
<p class="until">{{.Until}}</p>
<h2>{{.WhereTitle}}</h2>
{{range .Where}}<p>{{.}}</p>
{{end}}<h2>{{.OpenTitle}}</h2>
<p>{{.QRHow}}</p>
<img class="qr" alt="{{.QRAlt}}" src="{{.QR}}">
<p>{{.PINIntro}}</p>
<p class="pin">{{.PIN}}</p>
<p>{{.PINAfter}}</p>
<p>{{.Help}}</p>
</body></html>
`))

var pinGroups = regexp.MustCompile(`^[0-9 ]{1,20}$`)

// Slip renders the printable pickup slip (HTML with print CSS, the QR code as
// a data: PNG) in the holder's language.
func Slip(d SlipData) ([]byte, error) { return slip(catalogue, d) }

func slip(c cat, d SlipData) ([]byte, error) {
	if d.QRToken == "" || !pinGroups.MatchString(d.PIN) {
		return nil, fmt.Errorf("notify: slip needs a QR token and a PIN: %w", ErrInvalid)
	}
	paper := d.Paper
	if paper != "A4" {
		paper = "A6"
	}
	png, err := QRPNG(d.QRToken)
	if err != nil {
		return nil, err
	}
	t := newTr(c, d.Language, d.Location, d.Now)
	md := MessageData{FirstName: d.FirstName, DocumentKind: d.DocumentKind, SiteName: d.SiteName, SiteAddress: d.SiteAddress,
		DeviceKind: d.DeviceKind, DeviceName: d.DeviceName, Compartment: d.Compartment, Deadline: d.Deadline, PIN: d.PIN}
	v := baseVars(t, md, "where.")
	greeting := ""
	if d.FirstName != "" {
		greeting = t.s("track.hello", &v)
	}
	var b bytes.Buffer
	err = slipTmpl.Execute(&b, map[string]any{
		"Lang": t.lang, "Paper": paper, "Title": t.s("slip.title", &v), "Greeting": greeting,
		"Until": t.s("mail.until", &v), "WhereTitle": t.s("mail.where_title", nil),
		"Where":     nonEmpty(d.SiteName, d.SiteAddress, v.Place, d.Directions),
		"OpenTitle": t.s("mail.open_title", nil), "QRHow": t.s("mail.qr_how", nil), "QRAlt": t.s("mail.qr_alt", &v),
		"PINIntro": t.s("mail.pin_intro", nil), "PIN": v.PIN, "PINAfter": t.s("mail.pin_after", nil), "Help": t.s("mail.help", nil),
		// html/template only trusts data: URLs given as htmltemplate.URL.
		"QR": htmltemplate.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png)),
	})
	if err != nil {
		return nil, fmt.Errorf("notify: slip: %w", err)
	}
	if t.err != nil {
		return nil, t.err
	}
	return b.Bytes(), nil
}

// SlipSink receives slips for documents whose holder has no e-mail or
// mobile; the counter prints them. A slip holds the PIN: keep it private.
type SlipSink interface {
	PutSlip(ctx context.Context, documentID string, html []byte) error
}

// DirSlips writes slips as Dir/<document id>.html (mode 0600), the print
// queue of the counter.
type DirSlips struct {
	// Dir receives the files; created 0700.
	Dir string
}

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F-]{36}$`)

// SlipRemover is a SlipSink that can also forget a document's slip: the
// retention purge (Notifier.PurgeDocuments) removes the slips of the
// documents it erases, since a slip carries the holder's first name.
type SlipRemover interface {
	RemoveSlip(ctx context.Context, documentID string) error
}

// RemoveSlip deletes Dir/<document id>.html; a slip that does not exist
// is no error.
func (d *DirSlips) RemoveSlip(_ context.Context, documentID string) error {
	if !uuidRe.MatchString(documentID) {
		return fmt.Errorf("notify: slip for %q: %w", documentID, ErrInvalid)
	}
	if err := os.Remove(filepath.Join(d.Dir, documentID+".html")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("notify: remove slip: %w", err)
	}
	return nil
}

// PutSlip writes the slip atomically.
func (d *DirSlips) PutSlip(_ context.Context, documentID string, html []byte) error {
	if !uuidRe.MatchString(documentID) {
		return fmt.Errorf("notify: slip for %q: %w", documentID, ErrInvalid)
	}
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return fmt.Errorf("notify: slips: %w", err)
	}
	return WriteFileAtomic(filepath.Join(d.Dir, documentID+".html"), html)
}
