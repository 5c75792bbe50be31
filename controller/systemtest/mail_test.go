package systemtest

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

// pickupMail is what a citizen reads in a notification from the .eml drop.
type pickupMail struct {
	File, To, Text string
	// QR is the decoded content of the inline QR image ("" when none).
	QR string
	// PIN is the PIN from the text, digits only ("" when none).
	PIN string
}

// readMails parses every .eml file in dir, oldest first.
func readMails(dir string) ([]pickupMail, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
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
		raw, err := os.ReadFile(filepath.Join(dir, n))
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

func parseMail(raw []byte) (pickupMail, error) {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return pickupMail{}, err
	}
	out := pickupMail{To: m.Header.Get("To")}
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
	if mm := pinRE.FindStringSubmatch(out.Text); mm != nil {
		out.PIN = strings.ReplaceAll(mm[1], " ", "")
	}
	return out, nil
}

var pinRE = regexp.MustCompile(`(?i)(?:PIN|pincode)\s*:\s*([0-9][0-9 ]{2,20}[0-9])`)

func walkPart(ctype, cte string, body io.Reader, out *pickupMail, pngs *[][]byte, depth int) error {
	if depth > 4 {
		return errors.New("MIME nesting too deep")
	}
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") {
		r := multipart.NewReader(body, params["boundary"])
		for i := 0; i < 20; i++ {
			p, err := r.NextPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
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
		return err
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

// decodeQRPNG decodes the QR code of a PNG image, also resampled to a few
// sizes (a module size that is not a whole number of pixels can defeat
// gozxing's estimate, as a camera at another distance would not).
func decodeQRPNG(b []byte) (string, error) {
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return "", err
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
			return "", err
		}
		res, err := zxqr.NewQRCodeReader().Decode(bmp, hints)
		if err == nil {
			return res.GetText(), nil
		}
		if first == nil {
			first = err
		}
	}
	return "", first
}

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
