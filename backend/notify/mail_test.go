package notify

import (
	"bytes"
	"context"
	"encoding/base64"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	zxqr "github.com/makiuchi-d/gozxing/qrcode"
	"github.com/stretchr/testify/require"

	"kluis/backend/codes"
	"kluis/backend/notify/notifytest"
	"kluis/controller/pickupcode"
)

// parsedMail is what a mail program would see.
type parsedMail struct {
	header mail.Header
	// structure is the MIME tree, e.g. "multipart/mixed(multipart/related(multipart/alternative(text/plain,text/html),image/png),text/calendar)".
	structure string
	text      string
	html      string
	inline    map[string][]byte // by Content-ID without brackets
	attached  map[string][]byte // by file name
	types     map[string]string // Content-Type of each inline part and attachment, by its key
}

func parseMail(t *testing.T, raw []byte) parsedMail {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	require.NoError(t, err)
	out := parsedMail{header: m.Header, inline: map[string][]byte{}, attached: map[string][]byte{}, types: map[string]string{}}
	out.structure = walkMIME(t, textproto.MIMEHeader(m.Header), m.Body, &out, 0)
	return out
}

func walkMIME(t *testing.T, h textproto.MIMEHeader, body io.Reader, out *parsedMail, depth int) string {
	t.Helper()
	require.Less(t, depth, 5, "MIME nesting")
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	require.NoError(t, err)
	if strings.HasPrefix(mt, "multipart/") {
		r := multipart.NewReader(body, params["boundary"])
		var kids []string
		for {
			p, err := r.NextPart()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			kids = append(kids, walkMIME(t, p.Header, p, out, depth+1))
		}
		return mt + "(" + strings.Join(kids, ",") + ")"
	}
	// multipart.Part decodes quoted-printable itself (and drops that header).
	switch {
	case strings.HasPrefix(mt, "text/plain") || mt == "text/html":
		b, err := io.ReadAll(body)
		require.NoError(t, err)
		if mt == "text/html" {
			out.html = string(b)
		} else {
			out.text = string(b)
		}
	default:
		require.Equal(t, "base64", h.Get("Content-Transfer-Encoding"))
		data, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, body))
		require.NoError(t, err)
		disp, dp, err := mime.ParseMediaType(h.Get("Content-Disposition"))
		require.NoError(t, err)
		if disp == "inline" {
			id := strings.Trim(h.Get("Content-Id"), "<>")
			out.inline[id], out.types[id] = data, h.Get("Content-Type")
		} else {
			require.Equal(t, "attachment", disp)
			out.attached[dp["filename"]], out.types[dp["filename"]] = data, h.Get("Content-Type")
		}
	}
	return mt
}

func decodeQR(t *testing.T, pngData []byte) string {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(pngData))
	require.NoError(t, err)
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	require.NoError(t, err)
	// The image is a pure barcode (rendered, not photographed): say so,
	// and fall back to the general detector.
	res, err := zxqr.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]interface{}{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err != nil {
		res, err = zxqr.NewQRCodeReader().Decode(bmp, nil)
	}
	require.NoError(t, err)
	return res.GetText()
}

func readyEmail(t *testing.T, token string) Email {
	t.Helper()
	q, err := QRCode(token)
	require.NoError(t, err)
	d := sampleData()
	d.QRWidth = q.DisplayWidth()
	r, err := Render("fr", MsgReady, d)
	require.NoError(t, err)
	ics, err := Calendar("fr", d, "u@kluis")
	require.NoError(t, err)
	return Email{From: "Stad Kortrijk <kluis@kortrijk.be>", To: "ann@example.org", Subject: r.Subject, Text: r.Text, HTML: r.HTML, Language: "fr",
		Inline:      []Inline{{ContentID: "qr@kluis", ContentType: "image/png", Filename: r.QRFilename, Data: q.PNG}},
		Attachments: []Attachment{{ContentType: "text/calendar; charset=utf-8; method=PUBLISH", Filename: r.CalendarFilename, Data: ics}},
		Date:        time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), MessageID: "m1@kluis"}
}

func TestEmailOverSMTPAndDrop(t *testing.T) {
	keys, err := codes.GenerateKeys()
	require.NoError(t, err)
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	token, err := pickupcode.SignToken(keys.Signing, pickupcode.Claims{CodeID: "AAAAAAAAAAAAAAAAAAAAAA", DeviceID: "l1", Expires: now.Add(time.Hour).Unix()})
	require.NoError(t, err)
	raw, err := BuildEmail(readyEmail(t, token))
	require.NoError(t, err)

	srv := notifytest.NewSMTPServer(t, notifytest.SMTPOptions{StartTLS: true})
	sender := &SMTP{Addr: srv.Addr, Username: "kluis", Password: "pw", TLS: srv.ClientTLS()}
	require.NoError(t, sender.SendMail(context.Background(), "kluis@kortrijk.be", []string{"ann@example.org"}, raw))
	msgs := srv.Messages()
	require.Len(t, msgs, 1)
	require.True(t, msgs[0].TLS, "STARTTLS was used")
	require.Equal(t, "kluis", msgs[0].User)
	require.Equal(t, []string{"ann@example.org"}, msgs[0].To)
	require.Equal(t, raw, msgs[0].Data, "the server got exactly the built bytes")

	dir := t.TempDir()
	drop := &Drop{Dir: filepath.Join(dir, "out")}
	require.NoError(t, drop.SendMail(context.Background(), "kluis@kortrijk.be", []string{"ann@example.org"}, raw))
	files, err := filepath.Glob(filepath.Join(dir, "out", "*.eml"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	eml, err := os.ReadFile(files[0])
	require.NoError(t, err)
	require.Equal(t, raw, eml, "the drop writes the same bytes")
	st, err := os.Stat(files[0])
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	require.Contains(t, string(eml), "Content-Transfer-Encoding: quoted-printable\r\n")
	require.NotRegexp(t, `[^\r]\n`, string(eml), "CRLF line ends only")
	for _, line := range strings.Split(string(eml), "\r\n") {
		require.LessOrEqual(t, len(line), 998, "SMTP line limit")
	}
	pm := parseMail(t, eml)
	require.Equal(t, "multipart/mixed(multipart/related(multipart/alternative(text/plain,text/html),image/png),text/calendar)", pm.structure)
	require.Equal(t, "fr", pm.header.Get("Content-Language"))
	require.Equal(t, "auto-generated", pm.header.Get("Auto-Submitted"))
	subj, err := new(mime.WordDecoder).DecodeHeader(pm.header.Get("Subject"))
	require.NoError(t, err)
	require.Equal(t, "Votre document est prêt\u00a0: eID", subj)
	require.Contains(t, pm.text, "123 456 789")
	require.Contains(t, pm.text, "Vous avez jusqu'au mardi 15 décembre inclus (jusqu'à minuit).")
	require.Contains(t, pm.html, `src="cid:qr@kluis"`)
	png, ok := pm.inline["qr@kluis"]
	require.True(t, ok)
	require.Equal(t, `image/png; name="code-qr.png"`, pm.types["qr@kluis"])
	got := decodeQR(t, png)
	require.Equal(t, token, got)
	claims, err := pickupcode.VerifyToken(keys.Public(), got, "l1", now)
	require.NoError(t, err)
	require.Equal(t, "AAAAAAAAAAAAAAAAAAAAAA", claims.CodeID)
	ics, ok := pm.attached["retrait.ics"]
	require.True(t, ok, "the calendar entry is attached")
	require.Equal(t, `text/calendar; charset=utf-8; method=PUBLISH; name="retrait.ics"`, pm.types["retrait.ics"])
	parseICS(t, ics)

	// Without attachments or inline parts the wrappers are left out.
	raw, err = BuildEmail(Email{From: "a@b.c", To: "d@e.f", Subject: "s", Text: "t", HTML: "<p>t</p>"})
	require.NoError(t, err)
	require.Equal(t, "multipart/alternative(text/plain,text/html)", parseMail(t, raw).structure)
}

func TestSMTPRefusesPlainUnlessAllowed(t *testing.T) {
	srv := notifytest.NewSMTPServer(t, notifytest.SMTPOptions{})
	raw, err := BuildEmail(Email{From: "a@b.c", To: "d@e.f", Subject: "s", Text: "t", HTML: "<p>t</p>"})
	require.NoError(t, err)
	err = (&SMTP{Addr: srv.Addr}).SendMail(context.Background(), "a@b.c", []string{"d@e.f"}, raw)
	require.ErrorIs(t, err, ErrNoTLS)
	require.Empty(t, srv.Messages())
	require.NoError(t, (&SMTP{Addr: srv.Addr, AllowPlain: true}).SendMail(context.Background(), "a@b.c", []string{"d@e.f"}, raw))
	require.Len(t, srv.Messages(), 1)
	// Dot-stuffing survives: a line starting with "." arrives intact.
	raw2, err := BuildEmail(Email{From: "a@b.c", To: "d@e.f", Subject: "s", Text: ".hidden\n.", HTML: "x"})
	require.NoError(t, err)
	require.NoError(t, (&SMTP{Addr: srv.Addr, AllowPlain: true}).SendMail(context.Background(), "a@b.c", []string{"d@e.f"}, raw2))
	require.Equal(t, raw2, srv.Messages()[1].Data)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.Error(t, (&SMTP{Addr: srv.Addr, AllowPlain: true}).SendMail(ctx, "a@b.c", []string{"d@e.f"}, raw))
}

func TestBuildEmailRefusesBadInput(t *testing.T) {
	good := Email{From: "a@b.c", To: "d@e.f", Subject: "s", Text: "t", HTML: "h"}
	for i, mut := range []func(e *Email){
		func(e *Email) { e.From = "nope" },
		func(e *Email) { e.To = "" },
		func(e *Email) { e.Subject = "a\r\nBcc: x@y.z" },
		func(e *Email) { e.Inline = []Inline{{ContentID: "a>b", ContentType: "image/png"}} },
		func(e *Email) { e.Attachments = []Attachment{{ContentType: "text/calendar", Filename: "a\"b.ics"}} },
		func(e *Email) {
			e.Attachments = []Attachment{{ContentType: "text/calendar\r\nBcc: x@y.z", Filename: "a.ics"}}
		},
		func(e *Email) { e.Language = "nl\r\nBcc: x@y.z" },
	} {
		e := good
		mut(&e)
		_, err := BuildEmail(e)
		require.ErrorIs(t, err, ErrInvalid, "case %d", i)
	}
	_, err := QRPNG("")
	require.ErrorIs(t, err, ErrInvalid)
}

func TestSMSGateway(t *testing.T) {
	gw := notifytest.NewSMSGateway(t)
	s := &SMSGateway{URL: gw.URL, Token: "tok-123"}
	require.NoError(t, s.SendSMS(context.Background(), "+32470000000", "PIN 123 456 789"))
	got := gw.Received()
	require.Len(t, got, 1)
	require.Equal(t, "+32470000000", got[0].To)
	require.Equal(t, "PIN 123 456 789", got[0].Text)
	require.Equal(t, "Bearer tok-123", got[0].Auth)

	gw.SetStatus(http.StatusInternalServerError)
	err := s.SendSMS(context.Background(), "+32470000000", "PIN 123 456 789")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "123 456 789")
	require.NotContains(t, err.Error(), "tok-123")
	require.ErrorIs(t, s.SendSMS(context.Background(), "", "x"), ErrInvalid)
}
