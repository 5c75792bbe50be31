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

// Email is everything BuildEmail needs.
type Email struct {
	// From and To are addresses ("Stad Kortrijk <kluis@kortrijk.be>").
	From, To string
	// Subject is plain text (encoded as needed).
	Subject string
	// Text and HTML are the two alternatives.
	Text, HTML string
	// Inline parts, e.g. the QR code.
	Inline []Inline
	// Date of the message; zero: now.
	Date time.Time
	// MessageID without angle brackets; empty: random @kluis.
	MessageID string
}

// QRPixelsPerModule is the size of one QR module in the PNGs Kluis sends.
// A whole number of pixels per module keeps every module the same width:
// a fixed image size (go-qrcode's positive sizes) stretches some modules by
// a pixel, which standard decoders misread for some tokens.
const QRPixelsPerModule = 5

// QRPNG renders content as a QR code PNG (medium error correction,
// QRPixelsPerModule pixels per module, about 330 px for a token).
func QRPNG(content string) ([]byte, error) {
	if content == "" {
		return nil, fmt.Errorf("notify: empty QR content: %w", ErrInvalid)
	}
	png, err := qrcode.Encode(content, qrcode.Medium, -QRPixelsPerModule)
	if err != nil {
		return nil, fmt.Errorf("notify: QR code: %w", err)
	}
	return png, nil
}

// BuildEmail makes the MIME message: multipart/related holding a
// multipart/alternative (text/plain, text/html, both UTF-8 quoted-printable)
// and the inline parts (base64). CRLF line ends throughout.
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
	if e.Date.IsZero() {
		e.Date = time.Now()
	}
	if e.MessageID == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		e.MessageID = hex.EncodeToString(b[:]) + "@kluis"
	}
	var buf bytes.Buffer
	related := multipart.NewWriter(&buf)
	h := []string{
		"From: " + from.String(),
		"To: " + to.String(),
		"Subject: " + mime.QEncoding.Encode("utf-8", e.Subject),
		"Date: " + e.Date.Format(time.RFC1123Z),
		"Message-ID: <" + e.MessageID + ">",
		"MIME-Version: 1.0",
		`Content-Type: multipart/related; boundary="` + related.Boundary() + `"; type="multipart/alternative"`,
	}
	var out bytes.Buffer
	out.WriteString(strings.Join(h, "\r\n") + "\r\n\r\n")

	var altBuf bytes.Buffer
	alt := multipart.NewWriter(&altBuf)
	for _, p := range []struct{ ctype, body string }{
		{"text/plain; charset=utf-8", e.Text},
		{"text/html; charset=utf-8", e.HTML},
	} {
		w, err := alt.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {p.ctype},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, fmt.Errorf("notify: mime: %w", err)
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write([]byte(crlf(p.body))); err != nil {
			return nil, fmt.Errorf("notify: mime: %w", err)
		}
		if err := qp.Close(); err != nil {
			return nil, fmt.Errorf("notify: mime: %w", err)
		}
	}
	if err := alt.Close(); err != nil {
		return nil, fmt.Errorf("notify: mime: %w", err)
	}
	w, err := related.CreatePart(textproto.MIMEHeader{
		"Content-Type": {`multipart/alternative; boundary="` + alt.Boundary() + `"`},
	})
	if err != nil {
		return nil, fmt.Errorf("notify: mime: %w", err)
	}
	if _, err := w.Write(altBuf.Bytes()); err != nil {
		return nil, fmt.Errorf("notify: mime: %w", err)
	}
	for _, in := range e.Inline {
		if in.ContentID == "" || strings.ContainsAny(in.ContentID, "<>\r\n \"") || in.ContentType == "" {
			return nil, fmt.Errorf("notify: inline part %q: %w", in.ContentID, ErrInvalid)
		}
		name := in.Filename
		if name == "" || strings.ContainsAny(name, "\"\r\n") {
			name = "image"
		}
		w, err := related.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {in.ContentType + `; name="` + name + `"`},
			"Content-Transfer-Encoding": {"base64"},
			"Content-ID":                {"<" + in.ContentID + ">"},
			"Content-Disposition":       {`inline; filename="` + name + `"`},
		})
		if err != nil {
			return nil, fmt.Errorf("notify: mime: %w", err)
		}
		enc := base64.StdEncoding.EncodeToString(in.Data)
		for len(enc) > 76 {
			fmt.Fprintf(w, "%s\r\n", enc[:76])
			enc = enc[76:]
		}
		fmt.Fprintf(w, "%s\r\n", enc)
	}
	if err := related.Close(); err != nil {
		return nil, fmt.Errorf("notify: mime: %w", err)
	}
	out.Write(buf.Bytes())
	return out.Bytes(), nil
}

// crlf turns every line end into CRLF.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}
