package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/makiuchi-d/gozxing"
	zxqr "github.com/makiuchi-d/gozxing/qrcode"
)

// pickupMail is what a citizen reads in a notification from the .eml drop.
type pickupMail struct {
	File    string
	To      string
	Subject string
	Text    string
	// QR is the decoded content of the inline QR image ("" when none).
	QR string
	// PIN is the PIN from the text, digits only ("" when none).
	PIN string
}

// maxMailParts bounds the MIME walk.
const maxMailParts = 20

// parseMail reads a notification: headers, the plain text, the inline PNG
// decoded as a QR code, and the PIN named in the text.
func parseMail(raw []byte) (pickupMail, error) {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return pickupMail{}, fmt.Errorf("mail: %w", err)
	}
	out := pickupMail{To: m.Header.Get("To")}
	dec := new(mime.WordDecoder)
	if s, err := dec.DecodeHeader(m.Header.Get("Subject")); err == nil {
		out.Subject = s
	} else {
		out.Subject = m.Header.Get("Subject")
	}
	if a, err := mail.ParseAddress(out.To); err == nil {
		out.To = a.Address
	}
	var pngs [][]byte
	if err := walkPart(m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), m.Body, &out, &pngs, 0); err != nil {
		return out, err
	}
	for _, p := range pngs {
		if s, err := decodeQRPNG(p); err == nil {
			out.QR = s
			break
		}
	}
	out.PIN = pinFromText(out.Text)
	return out, nil
}

func walkPart(ctype, cte string, body io.Reader, out *pickupMail, pngs *[][]byte, depth int) error {
	if depth > 4 {
		return errors.New("mail: MIME nesting too deep")
	}
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") {
		r := multipart.NewReader(body, params["boundary"])
		for i := 0; i < maxMailParts; i++ {
			p, err := r.NextPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("mail: %w", err)
			}
			// multipart.Part decodes quoted-printable itself and drops the header.
			if err := walkPart(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, out, pngs, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body)
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	}
	data, err := io.ReadAll(io.LimitReader(body, 4<<20))
	if err != nil {
		return fmt.Errorf("mail: read %s part: %w", mt, err)
	}
	switch mt {
	case "text/plain":
		if out.Text == "" {
			out.Text = string(data)
		}
	case "image/png":
		*pngs = append(*pngs, data)
	}
	return nil
}

// decodeQRPNG reads the QR code of an e-mail's inline PNG with a standard
// decoder: as a pure barcode first (the image is rendered, not
// photographed), then with the general detector.
func decodeQRPNG(b []byte) (string, error) {
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return "", fmt.Errorf("qr png: %w", err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", fmt.Errorf("qr bitmap: %w", err)
	}
	res, err := zxqr.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]interface{}{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err != nil {
		res, err = zxqr.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]interface{}{gozxing.DecodeHintType_TRY_HARDER: true})
	}
	if err != nil {
		return "", fmt.Errorf("qr decode: %w", err)
	}
	return res.GetText(), nil
}

// pinRE finds the PIN in the ready message of any language ("PIN: 123 456",
// "pincode: 123 456", "code PIN : 123 456").
var pinRE = regexp.MustCompile(`(?i)(?:PIN|pincode)\s*:\s*([0-9][0-9 ]{2,20}[0-9])`)

func pinFromText(s string) string {
	m := pinRE.FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return strings.ReplaceAll(m[1], " ", "")
}

// mailbox reads the .eml drop directory.
type mailbox struct{ dir string }

// all returns every message in the drop, oldest first (file names start
// with the time).
func (b mailbox) all() ([]pickupMail, error) {
	ents, err := os.ReadDir(b.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".eml") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []pickupMail
	for _, n := range names {
		raw, err := os.ReadFile(filepath.Join(b.dir, n))
		if err != nil {
			return nil, err
		}
		m, err := parseMail(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		m.File = n
		out = append(out, m)
	}
	return out, nil
}
