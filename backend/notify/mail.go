package notify

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"
)

// Inline is a part shown inside the HTML body (referenced as cid:ContentID).
type Inline struct {
	// ContentID without angle brackets, e.g. "qr@kluis".
	ContentID string
	// ContentType, e.g. "image/png".
	ContentType string
	// Filename suggested to mail programs.
	Filename string
	// Data is the raw content.
	Data []byte
}

// Attachment is a file attached to the message, e.g. the calendar entry.
type Attachment struct {
	// ContentType with its parameters, e.g. `text/calendar; charset=utf-8; method=PUBLISH`.
	ContentType string
	// Filename suggested to mail programs (ASCII).
	Filename string
	// Data is the raw content.
	Data []byte
}

// Email is everything BuildEmail needs.
type Email struct {
	// From and To are addresses ("Stad Kortrijk <kluis@kortrijk.be>").
	From, To string
	// Subject is plain text (encoded as needed).
	Subject string
	// Text and HTML are the two alternatives.
	Text, HTML string
	// Language is the Content-Language of the message ("" for none).
	Language string
	// Inline parts, e.g. the QR code.
	Inline []Inline
	// Attachments, e.g. the .ics calendar entry.
	Attachments []Attachment
	// Date of the message; zero: now.
	Date time.Time
	// MessageID without angle brackets; empty: random @kluis.
	MessageID string
}

// QRPixelsPerModule is the size of one QR module in the PNGs Kluis sends
// (about 610 px for a token). A whole number of pixels per module keeps
// every module the same width: a fixed image size (go-qrcode's positive
// sizes) stretches some modules by a pixel, which standard decoders misread
// for some tokens.
const QRPixelsPerModule = 10

// QRDisplayPixelsPerModule is the size of one module in the e-mail's HTML,
// in CSS pixels: half the PNG's, so that the image is sharp on phones
// (two or more device pixels per CSS pixel), and about 300 CSS pixels wide
// for a token: two thirds of a phone's width, about 5 cm, easy for the
// locker's scanner to read from a screen.
const QRDisplayPixelsPerModule = 5

// QR is a rendered QR code.
type QR struct {
	// PNG is the image, QRPixelsPerModule pixels per module.
	PNG []byte
	// Modules is the width in modules, the quiet zone included.
	Modules int
}

// DisplayWidth is the width to show the code at in the e-mail (CSS pixels).
func (q QR) DisplayWidth() int { return q.Modules * QRDisplayPixelsPerModule }

// QRCode renders content as a QR code (medium error correction, a quiet
// zone of four modules).
func QRCode(content string) (QR, error) {
	if content == "" {
		return QR{}, fmt.Errorf("notify: empty QR content: %w", ErrInvalid)
	}
	q, err := qrcode.New(content, qrcode.Medium)
	if err != nil {
		return QR{}, fmt.Errorf("notify: QR code: %w", err)
	}
	png, err := q.PNG(-QRPixelsPerModule)
	if err != nil {
		return QR{}, fmt.Errorf("notify: QR code: %w", err)
	}
	return QR{PNG: png, Modules: len(q.Bitmap())}, nil
}

// QRPNG renders content as a QR code PNG (see QRCode).
func QRPNG(content string) ([]byte, error) {
	q, err := QRCode(content)
	return q.PNG, err
}

// BuildEmail makes the MIME message, CRLF line ends throughout:
//
//	multipart/mixed                      (only with attachments)
//	  multipart/related                  (only with inline parts)
//	    multipart/alternative
//	      text/plain; charset=utf-8      quoted-printable
//	      text/html; charset=utf-8       quoted-printable
//	    inline parts (the QR PNG)        base64, Content-ID
//	  attachments (the .ics)             base64, Content-Disposition: attachment
func BuildEmail(e Email) ([]byte, error) {
	from, err := mail.ParseAddress(e.From)
	if err != nil {
		return nil, fmt.Errorf("notify: from %q: %w", e.From, ErrInvalid)
	}
	to, err := mail.ParseAddress(e.To)
	if err != nil {
		return nil, fmt.Errorf("notify: recipient address: %w", ErrInvalid)
	}
	if strings.ContainsAny(e.Subject, "\r\n") {
		return nil, fmt.Errorf("notify: subject with a line break: %w", ErrInvalid)
	}
	if e.Language != "" && !langTag.MatchString(e.Language) {
		return nil, fmt.Errorf("notify: language %q: %w", e.Language, ErrInvalid)
	}
	if e.Date.IsZero() {
		e.Date = time.Now()
	}
	if e.MessageID == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		e.MessageID = hex.EncodeToString(b[:]) + "@kluis"
	}
	for _, in := range e.Inline {
		if in.ContentID == "" || strings.ContainsAny(in.ContentID, "<>\r\n \"") || in.ContentType == "" || strings.ContainsAny(in.ContentType, "\r\n") {
			return nil, fmt.Errorf("notify: inline part %q: %w", in.ContentID, ErrInvalid)
		}
	}
	for _, a := range e.Attachments {
		if a.ContentType == "" || strings.ContainsAny(a.ContentType, "\r\n") || !safeFilename.MatchString(a.Filename) {
			return nil, fmt.Errorf("notify: attachment %q: %w", a.Filename, ErrInvalid)
		}
	}

	// The innermost part first: the two alternatives.
	ctype, body, err := alternative(e.Text, e.HTML)
	if err != nil {
		return nil, err
	}
	if len(e.Inline) > 0 {
		var buf bytes.Buffer
		rel := multipart.NewWriter(&buf)
		if err := writePart(rel, textproto.MIMEHeader{"Content-Type": {ctype}}, body); err != nil {
			return nil, err
		}
		for _, in := range e.Inline {
			name := in.Filename
			if !safeFilename.MatchString(name) {
				name = "image"
			}
			if err := writePart(rel, textproto.MIMEHeader{
				"Content-Type":              {in.ContentType + `; name="` + name + `"`},
				"Content-Transfer-Encoding": {"base64"},
				"Content-ID":                {"<" + in.ContentID + ">"},
				"Content-Disposition":       {`inline; filename="` + name + `"`},
			}, base64Lines(in.Data)); err != nil {
				return nil, err
			}
		}
		if err := rel.Close(); err != nil {
			return nil, fmt.Errorf("notify: mime: %w", err)
		}
		ctype, body = `multipart/related; boundary="`+rel.Boundary()+`"; type="multipart/alternative"`, buf.Bytes()
	}
	if len(e.Attachments) > 0 {
		var buf bytes.Buffer
		mixed := multipart.NewWriter(&buf)
		if err := writePart(mixed, textproto.MIMEHeader{"Content-Type": {ctype}}, body); err != nil {
			return nil, err
		}
		for _, a := range e.Attachments {
			if err := writePart(mixed, textproto.MIMEHeader{
				"Content-Type":              {a.ContentType + `; name="` + a.Filename + `"`},
				"Content-Transfer-Encoding": {"base64"},
				"Content-Disposition":       {`attachment; filename="` + a.Filename + `"`},
			}, base64Lines(a.Data)); err != nil {
				return nil, err
			}
		}
		if err := mixed.Close(); err != nil {
			return nil, fmt.Errorf("notify: mime: %w", err)
		}
		ctype, body = `multipart/mixed; boundary="`+mixed.Boundary()+`"`, buf.Bytes()
	}

	h := []string{
		"From: " + from.String(),
		"To: " + to.String(),
		"Subject: " + mime.QEncoding.Encode("utf-8", e.Subject),
		"Date: " + e.Date.Format(time.RFC1123Z),
		"Message-ID: <" + e.MessageID + ">",
		"Auto-Submitted: auto-generated",
	}
	if e.Language != "" {
		h = append(h, "Content-Language: "+e.Language)
	}
	h = append(h, "MIME-Version: 1.0", "Content-Type: "+ctype)
	var out bytes.Buffer
	out.WriteString(strings.Join(h, "\r\n") + "\r\n\r\n")
	out.Write(body)
	return out.Bytes(), nil
}

var (
	langTag      = regexp.MustCompile(`^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$`)
	safeFilename = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$`)
)

// alternative writes the multipart/alternative body of text and HTML (both
// UTF-8, quoted-printable) and returns its content type.
func alternative(text, html string) (string, []byte, error) {
	var buf bytes.Buffer
	alt := multipart.NewWriter(&buf)
	for _, p := range []struct{ ctype, body string }{
		{"text/plain; charset=utf-8", text},
		{"text/html; charset=utf-8", html},
	} {
		var qp bytes.Buffer
		w := quotedprintable.NewWriter(&qp)
		if _, err := w.Write([]byte(crlf(p.body))); err != nil {
			return "", nil, fmt.Errorf("notify: mime: %w", err)
		}
		if err := w.Close(); err != nil {
			return "", nil, fmt.Errorf("notify: mime: %w", err)
		}
		if err := writePart(alt, textproto.MIMEHeader{
			"Content-Type":              {p.ctype},
			"Content-Transfer-Encoding": {"quoted-printable"},
		}, qp.Bytes()); err != nil {
			return "", nil, err
		}
	}
	if err := alt.Close(); err != nil {
		return "", nil, fmt.Errorf("notify: mime: %w", err)
	}
	return `multipart/alternative; boundary="` + alt.Boundary() + `"`, buf.Bytes(), nil
}

func writePart(w *multipart.Writer, h textproto.MIMEHeader, body []byte) error {
	pw, err := w.CreatePart(h)
	if err != nil {
		return fmt.Errorf("notify: mime: %w", err)
	}
	if _, err := pw.Write(body); err != nil {
		return fmt.Errorf("notify: mime: %w", err)
	}
	return nil
}

// base64Lines encodes data in base64 lines of 76 characters, CRLF ended.
func base64Lines(data []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(data)
	var b bytes.Buffer
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

// crlf turns every line end into CRLF.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}
