package notify

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	htmltemplate "html/template"
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
	// SiteName, SiteAddress, DeviceName and Compartment say where.
	SiteName, SiteAddress, DeviceName string
	Compartment                       int
	// Deadline ends the pickup period.
	Deadline time.Time
	// PIN in clear (grouped when shown).
	PIN string
	// QRToken is rendered as the QR code.
	QRToken string
	// Paper is "A6" (default) or "A4".
	Paper string
}

var slipTmpl = htmltemplate.Must(htmltemplate.New("slip").Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}"><head><meta charset="utf-8"><title>{{.T.title}}</title>
<style>
@page { size: {{.Paper}}; margin: 8mm; }
body { font-family: Arial, sans-serif; font-size: {{if eq .Paper "A4"}}16pt{{else}}11pt{{end}}; color: #000; margin: 0; }
h1 { font-size: 1.4em; margin: 0 0 0.4em; }
.qr { width: {{if eq .Paper "A4"}}90mm{{else}}55mm{{end}}; height: auto; image-rendering: pixelated; display: block; }
.pin { font-size: 1.8em; font-weight: bold; letter-spacing: 0.08em; margin: 0.2em 0; }
p { margin: 0.3em 0; }
@media screen { body { max-width: 148mm; margin: 1em auto; } }
@media print { .noprint { display: none; } }
</style></head>
<body>
<h1>{{.T.title}}: {{.Doc}}</h1>
<p>{{.FirstName}}</p>
<p><b>{{.T.where}}:</b> {{.SiteName}}, {{.SiteAddress}}. {{.T.locker}} {{.DeviceName}}, {{.T.compartment}} {{.Compartment}}.</p>
<p><b>{{.T.until}}:</b> {{.Deadline}}</p>
<p>{{.T.qr}}</p>
<img class="qr" alt="QR" src="{{.QR}}">
<p>{{.T.pin}}:</p>
<p class="pin">{{.PIN}}</p>
<p>{{.T.dob}}</p>
<p>{{.T.help}}</p>
</body></html>
`))

var pinGroups = regexp.MustCompile(`^[0-9 ]{1,20}$`)

// Slip renders the printable pickup slip (HTML with print CSS, the QR code as
// a data: PNG) in the holder's language.
func Slip(d SlipData) ([]byte, error) {
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
	lang := Language(d.Language)
	t := map[string]string{}
	for _, k := range []string{"title", "pin", "dob", "qr", "where", "until", "compartment", "locker", "help"} {
		t[k] = T(lang, "slip."+k)
	}
	var b bytes.Buffer
	err = slipTmpl.Execute(&b, map[string]any{
		"Lang": lang, "Paper": paper, "T": t, "Doc": DocName(lang, d.DocumentKind), "FirstName": d.FirstName,
		"SiteName": d.SiteName, "SiteAddress": d.SiteAddress, "DeviceName": d.DeviceName, "Compartment": d.Compartment,
		"Deadline": FormatTime(lang, d.Deadline), "PIN": groupPIN(d.PIN),
		// html/template only trusts data: URLs given as htmltemplate.URL.
		"QR": htmltemplate.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png)),
	})
	if err != nil {
		return nil, fmt.Errorf("notify: slip: %w", err)
	}
	return b.Bytes(), nil
}

// groupPIN groups digits in threes from the right.
func groupPIN(pin string) string {
	var digits []rune
	for _, r := range pin {
		if r >= '0' && r <= '9' {
			digits = append(digits, r)
		}
	}
	var b []rune
	for i, r := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b = append(b, ' ')
		}
		b = append(b, r)
	}
	return string(b)
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
