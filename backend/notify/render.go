package notify

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"strings"
	"time"
)

// ErrInvalid means a message cannot be built from the input.
var ErrInvalid = errors.New("invalid input")

// MessageData is what a message may say. Every field is plain text; HTML
// escaping is done when rendering.
type MessageData struct {
	// FirstName is the holder's first name ("" gives a greeting without name).
	FirstName string
	// DocumentKind is the store's kind, e.g. "passport".
	DocumentKind string
	// SiteName and SiteAddress say where the device stands.
	SiteName, SiteAddress string
	// DeviceKind is "locker" (default) or "automaton".
	DeviceKind string
	// DeviceName is the device's name on its front.
	DeviceName string
	// Directions say where the device is and how to get there, in the
	// holder's language ("" when none).
	Directions string
	// Compartment is the 1-based compartment number.
	Compartment int
	// Deadline ends the pickup period.
	Deadline time.Time
	// When is the time of the event (the collection).
	When time.Time
	// PIN is the PIN in clear (ready message only).
	PIN string
	// TrackURL is the citizen's track page.
	TrackURL string
	// Sender signs the message, e.g. "Stad Kortrijk".
	Sender string
	// Reissued marks a ready message with new codes.
	Reissued bool
	// QRContentID, when set, shows the inline QR image (cid:) in the HTML,
	// QRWidth CSS pixels wide (default 300).
	QRContentID string
	QRWidth     int
	// CalendarAttached says the message carries the .ics entry.
	CalendarAttached bool
	// Now is when the message is written (for the year of dates); zero: time.Now().
	Now time.Time
	// Location of the times shown; nil: Europe/Brussels.
	Location *time.Location
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
	// SMS is the short text message, at most MaxSMSSegments segments.
	SMS string
	// QRFilename and CalendarFilename name the attachments.
	QRFilename, CalendarFilename string
}

// mailView is a message laid out: the HTML and the plain-text bodies are
// both written from it, by templates that hold no words of their own.
type mailView struct {
	Lang, Subject, Greeting string
	Lead                    []string
	Blocks                  []block
	Signoff, Sender         string
}

// block is one part of a message: a heading, lines, and optionally the QR
// code or a link.
type block struct {
	Title string
	Lines []string
	// Box draws a frame around the block (the deadline).
	Box  bool
	QR   *qrView
	Link *linkView
}

type qrView struct {
	How, CID, Alt           string
	Width                   int
	PINIntro, PIN, PINAfter string
}

type linkView struct{ URL, Text string }

// Render builds message msg (MsgReady, ...) in lang (unknown languages fall
// back to Dutch).
func Render(lang, msg string, d MessageData) (Rendered, error) {
	return render(catalogue, lang, msg, d)
}

func render(c cat, lang, msg string, d MessageData) (Rendered, error) {
	t := newTr(c, lang, d.Location, d.Now)
	v := baseVars(t, d, "where.")
	view := mailView{Lang: t.lang, Signoff: t.s("mail.signoff", nil), Sender: d.Sender}
	if d.FirstName != "" {
		view.Greeting = t.s("mail.greeting", &v)
	} else {
		view.Greeting = t.s("mail.greeting_anon", nil)
	}
	where := block{Title: t.s("mail.where_title", nil), Lines: nonEmpty(d.SiteName, d.SiteAddress, v.Place, d.Directions)}
	track := block{Title: t.s("mail.track_title", nil), Link: &linkView{URL: d.TrackURL, Text: t.s("mail.track_link", nil)}}
	help := block{Title: t.s("mail.help_title", nil), Lines: []string{t.s("mail.help", nil)}}
	when := block{Title: t.s("mail.when_title", nil), Box: true}
	if !d.Deadline.IsZero() {
		when.Lines = []string{t.s("mail.until", &v), t.s("mail.after", nil)}
	}
	if d.CalendarAttached {
		when.Lines = append(when.Lines, t.s("mail.calendar", nil))
	}
	switch msg {
	case MsgReady:
		if d.PIN == "" {
			return Rendered{}, fmt.Errorf("notify: ready message without PIN: %w", ErrInvalid)
		}
		view.Subject, view.Lead = t.s("ready.subject", &v), []string{t.s("ready.lead", &v)}
		if d.Reissued {
			view.Subject, view.Lead = t.s("ready.subject_reissued", &v), []string{t.s("ready.lead_reissued", &v)}
		}
		open := block{Title: t.s("mail.open_title", nil), QR: &qrView{How: t.s("mail.qr_how", nil), CID: d.QRContentID,
			Alt: t.s("mail.qr_alt", &v), Width: d.QRWidth, PINIntro: t.s("mail.pin_intro", nil), PIN: v.PIN, PINAfter: t.s("mail.pin_after", nil)}}
		if open.QR.Width <= 0 {
			open.QR.Width = 300
		}
		bring := block{Title: t.s("mail.bring_title", nil), Lines: []string{t.s("ready.bring", nil)}}
		view.Blocks = []block{when, open, where, bring, track, help}
	case MsgReminder:
		view.Subject, view.Lead = t.s("reminder.subject", &v), []string{t.s("reminder.lead", &v)}
		if !d.Deadline.IsZero() {
			when.Lines[0] = t.s("reminder.until", &v)
		}
		open := block{Title: t.s("mail.open_title", nil), Lines: []string{t.s("reminder.bring", nil), t.s("mail.lost_codes", nil)}}
		view.Blocks = []block{when, where, open, track, help}
	case MsgReceipt:
		view.Subject, view.Lead = t.s("receipt.subject", &v), []string{t.s("receipt.lead", &v)}
		notYou := block{Box: true, Lines: []string{t.s("receipt.not_you", nil)}}
		done := block{Lines: []string{t.s("receipt.done", nil)}}
		view.Blocks = []block{notYou, where, done, help}
	case MsgReturned:
		view.Subject, view.Lead = t.s("returned.subject", &v), []string{t.s("returned.lead", &v)}
		if !d.Deadline.IsZero() {
			view.Lead = append(view.Lead, t.s("returned.until", &v))
		}
		counter := block{Title: t.s("returned.counter_title", nil), Box: true,
			Lines: append([]string{t.s("returned.counter", nil)}, nonEmpty(d.SiteName, d.SiteAddress)...)}
		codes := block{Lines: []string{t.s("returned.codes", nil)}}
		view.Blocks = []block{counter, codes, track, help}
	default:
		return Rendered{}, fmt.Errorf("notify: no message %q: %w", msg, ErrInvalid)
	}
	out := Rendered{Language: t.lang, Subject: view.Subject, Text: plainText(view),
		QRFilename: t.s("mail.qr_file", nil), CalendarFilename: t.s("ics.file", nil)}
	var b bytes.Buffer
	if err := htmlMail.Execute(&b, view); err != nil {
		return Rendered{}, fmt.Errorf("notify: html: %w", err)
	}
	out.HTML = b.String()
	out.SMS = fitSMS(t, msg+".sms", d)
	if t.err != nil {
		return Rendered{}, t.err
	}
	if strings.ContainsAny(out.Subject, "\r\n") {
		return Rendered{}, fmt.Errorf("notify: subject with a line break: %w", ErrInvalid)
	}
	return out, nil
}

// baseVars fills the placeholders from d; placePrefix picks the "where."
// (mail) or "sms." texts for the compartment.
func baseVars(t *tr, d MessageData, placePrefix string) vars {
	v := vars{FirstName: d.FirstName, SiteName: d.SiteName, SiteAddress: d.SiteAddress, DeviceName: d.DeviceName,
		Compartment: d.Compartment, PIN: groupPIN(d.PIN), TrackURL: d.TrackURL, Sender: d.Sender}
	v.Doc, v.DocShort = t.doc(d.DocumentKind)
	v.Place = t.s(placePrefix+deviceKey(d.DeviceKind), &v)
	if !d.Deadline.IsZero() {
		v.Until = t.until(d.Deadline)
	}
	if !d.When.IsZero() {
		v.When = t.at(d.When)
	}
	return v
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// plainText writes the text/plain body: the same blocks as the HTML, a
// heading line above each, blank lines between.
func plainText(v mailView) string {
	var b strings.Builder
	b.WriteString(v.Greeting + "\n\n")
	for _, l := range v.Lead {
		b.WriteString(l + "\n\n")
	}
	for _, bl := range v.Blocks {
		if bl.Title != "" {
			b.WriteString(bl.Title + "\n")
		}
		for _, l := range bl.Lines {
			b.WriteString(l + "\n")
		}
		if q := bl.QR; q != nil {
			b.WriteString(q.How + "\n" + q.PINIntro + " " + q.PIN + "\n" + q.PINAfter + "\n")
		}
		if bl.Link != nil {
			b.WriteString(bl.Link.Text + "\n" + bl.Link.URL + "\n")
		}
		b.WriteString("\n")
	}
	b.WriteString(v.Signoff + "\n" + v.Sender + "\n")
	return b.String()
}

// htmlMail lays out a message for mail programs: one column, inline styles
// (many programs drop <style>), large type, headings, the deadline in a
// frame (not by colour alone), the QR code big enough to scan from a phone
// (5 CSS pixels per module, narrower screens scale it down), a light
// colour scheme so that dark mode does not invert the code.
var htmlMail = htmltemplate.Must(htmltemplate.New("mail").Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}" dir="ltr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<meta name="supported-color-schemes" content="light">
<title>{{.Subject}}</title>
</head>
<body style="margin:0;padding:0;background:#ffffff;color:#111111;">
<div lang="{{.Lang}}" style="max-width:600px;margin:0 auto;padding:16px;font-family:Arial,Helvetica,sans-serif;font-size:18px;line-height:1.5;color:#111111;background:#ffffff;">
<p style="margin:0 0 16px;">{{.Greeting}}</p>
{{range .Lead}}<p style="margin:0 0 16px;font-size:20px;font-weight:bold;">{{.}}</p>
{{end}}{{range .Blocks}}{{if .Box}}<div style="border:3px solid #111111;border-radius:8px;padding:12px 16px;margin:24px 0;">{{else}}<div style="margin:24px 0;">{{end}}
{{if .Title}}<h2 style="margin:0 0 8px;font-size:22px;line-height:1.3;color:#111111;">{{.Title}}</h2>
{{end}}{{$box := .Box}}{{range $i, $l := .Lines}}<p style="margin:0 0 8px;{{if and $box (eq $i 0)}}font-weight:bold;font-size:20px;{{end}}">{{$l}}</p>
{{end}}{{with .QR}}<p style="margin:0 0 8px;">{{.How}}</p>
{{if .CID}}<p style="margin:16px 0;"><img src="cid:{{.CID}}" alt="{{.Alt}}" width="{{.Width}}" height="{{.Width}}" style="display:block;width:{{.Width}}px;max-width:100%;height:auto;border:0;background:#ffffff;image-rendering:pixelated;"></p>
{{end}}<p style="margin:16px 0 4px;">{{.PINIntro}}</p>
<p style="margin:0 0 8px;font-family:'Courier New',Courier,monospace;font-size:30px;font-weight:bold;letter-spacing:2px;">{{.PIN}}</p>
<p style="margin:0 0 8px;">{{.PINAfter}}</p>
{{end}}{{with .Link}}<p style="margin:0 0 8px;"><a href="{{.URL}}" style="color:#0b4f9c;text-decoration:underline;">{{.Text}}</a></p>
{{end}}</div>
{{end}}<p style="margin:24px 0 0;">{{.Signoff}}<br>{{.Sender}}</p>
</div>
</body>
</html>
`))

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
