// Package mailread reads the e-mails that backend/notify writes, as a
// citizen's mail program would: the recipient, the subject, the plain text
// and HTML bodies, the token in the inline QR image, the PIN named in the
// text and the attached calendar entry. The demo (cmd/kluis-demo) and the
// system tests (controller/systemtest) use it on the .eml drop directory.
//
// The message is multipart/mixed (the .ics attachment) around
// multipart/related (the inline QR PNG) around multipart/alternative (text
// and HTML); each wrapper is left out when it has nothing to hold. Any
// nesting up to four levels is read.
package mailread

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/color"
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

// Mail is what a citizen reads in a notification.
type Mail struct {
	// File is the name of the .eml file in the drop ("" for Parse).
	File string
	// To is the recipient's bare address.
	To string
	// Subject is the decoded subject.
	Subject string
	// Text is the first text/plain part.
	Text string
	// HTML is the first text/html part.
	HTML string
	// Calendar is the first text/calendar part (the .ics attachment), "" when none.
	Calendar string
	// QR is the decoded content of the inline QR image ("" when none).
	QR string
	// PIN is the PIN from the text, digits only ("" when none).
	PIN string
}

// maxParts bounds the parts read from one multipart body.
const maxParts = 20

// maxDepth bounds the nesting of multipart bodies.
const maxDepth = 4

// Parse reads one message: headers, the plain text, the first inline PNG
// that decodes as a QR code, and the PIN named in the text.
func Parse(raw []byte) (Mail, error) {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Mail{}, fmt.Errorf("mail: %w", err)
	}
	out := Mail{To: m.Header.Get("To")}
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
		if s, err := DecodeQRPNG(p); err == nil {
			out.QR = s
			break
		}
	}
	out.PIN = PIN(out.Text)
	return out, nil
}

func walkPart(ctype, cte string, body io.Reader, out *Mail, pngs *[][]byte, depth int) error {
	if depth > maxDepth {
		return errors.New("mail: MIME nesting too deep")
	}
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") {
		r := multipart.NewReader(body, params["boundary"])
		for i := 0; i < maxParts; i++ {
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
	case "text/html":
		if out.HTML == "" {
			out.HTML = string(data)
		}
	case "text/calendar":
		if out.Calendar == "" {
			out.Calendar = string(data)
		}
	case "image/png":
		*pngs = append(*pngs, data)
	}
	return nil
}

// DecodeQRPNG reads the QR code of a PNG image with a standard decoder: as
// a pure barcode first (the image is rendered, not photographed), then with
// the general detector, also on the image resampled to a few sizes (a
// module size that is not a whole number of pixels can defeat gozxing's
// estimate, as a camera at another distance would not).
func DecodeQRPNG(b []byte) (string, error) {
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return "", fmt.Errorf("qr png: %w", err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", fmt.Errorf("qr bitmap: %w", err)
	}
	res, err := zxqr.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]interface{}{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err == nil {
		return res.GetText(), nil
	}
	hints := map[gozxing.DecodeHintType]interface{}{gozxing.DecodeHintType_TRY_HARDER: true}
	var first error
	for _, w := range []int{0, 300, 200, 400, 160, 244, 128, 192} {
		src := img
		if w > 0 {
			src = resample(img, w)
		}
		bmp, err := gozxing.NewBinaryBitmapFromImage(src)
		if err != nil {
			return "", fmt.Errorf("qr bitmap: %w", err)
		}
		res, err := zxqr.NewQRCodeReader().Decode(bmp, hints)
		if err == nil {
			return res.GetText(), nil
		}
		if first == nil {
			first = err
		}
	}
	return "", fmt.Errorf("qr decode: %w", first)
}

// resample scales img to a w×w grey image by nearest neighbour.
func resample(img image.Image, w int) image.Image {
	b := img.Bounds()
	dst := image.NewGray(image.Rect(0, 0, w, w))
	for y := 0; y < w; y++ {
		for x := 0; x < w; x++ {
			dst.Set(x, y, color.GrayModel.Convert(img.At(b.Min.X+x*b.Dx()/w, b.Min.Y+y*b.Dy()/w)))
		}
	}
	return dst
}

// pinRE finds the PIN in the ready message of any language ("PIN: 123 456",
// "pincode: 123 456", "code PIN\u00a0: 123 456": French puts a
// non-breaking space before the colon, which \s does not match).
var pinRE = regexp.MustCompile(`(?i)(?:PIN|pincode)[\s\x{00a0}]*:\s*([0-9][0-9 ]{2,20}[0-9])`)

// PIN returns the PIN named in a ready message's text, digits only, or ""
// when the text names none.
func PIN(text string) string {
	m := pinRE.FindStringSubmatch(text)
	if m == nil {
		return ""
	}
	return strings.ReplaceAll(m[1], " ", "")
}

// ReadDir parses every .eml file in dir (the notifier's drop), oldest first
// (file names start with the time), with File set to the file's name.
// Other files (such as partial writes) are skipped; a missing dir holds no
// messages.
func ReadDir(dir string) ([]Mail, error) {
	ents, err := os.ReadDir(dir)
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
	var out []Mail
	for _, n := range names {
		raw, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		m, err := Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		m.File = n
		out = append(out, m)
	}
	return out, nil
}
