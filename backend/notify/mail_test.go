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
)

// parsedMail is what a mail program would see.
type parsedMail struct {
	header mail.Header
	text   string
	html   string
	inline map[string][]byte // by Content-ID without brackets
}

func parseMail(t *testing.T, raw []byte) parsedMail {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	require.NoError(t, err)
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/related", mt)
	out := parsedMail{header: m.Header, inline: map[string][]byte{}}
	rel := multipart.NewReader(m.Body, params["boundary"])
	for i := 0; i < 10; i++ {
		p, err := rel.NextPart()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		pt, pp, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		require.NoError(t, err)
		switch {
		case pt == "multipart/alternative":
			alt := multipart.NewReader(p, pp["boundary"])
			for j := 0; j < 10; j++ {
				ap, err := alt.NextPart()
				if err == io.EOF {
					break
				}
				require.NoError(t, err)
				// multipart.Part decodes quoted-printable itself (and drops that header).
				body, err := io.ReadAll(ap)
				require.NoError(t, err)
				at, _, _ := mime.ParseMediaType(ap.Header.Get("Content-Type"))
				if at == "text/plain" {
					out.text = string(body)
				} else {
					out.html = string(body)
				}
			}
		default:
			require.Equal(t, "base64", p.Header.Get("Content-Transfer-Encoding"))
			data, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, p))
			require.NoError(t, err)
			out.inline[strings.Trim(p.Header.Get("Content-Id"), "<>")] = data
		}
	}
	return out
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
	r, err := Render("fr", MsgReady, sampleData("fr"), "qr@kluis")
	require.NoError(t, err)
	qr, err := QRPNG(token)
	require.NoError(t, err)
	return Email{From: "Stad Kortrijk <kluis@kortrijk.be>", To: "ann@example.org", Subject: r.Subject, Text: r.Text, HTML: r.HTML,
		Inline: []Inline{{ContentID: "qr@kluis", ContentType: "image/png", Filename: "qr.png", Data: qr}},
		Date:   time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), MessageID: "m1@kluis"}
}

func TestEmailOverSMTPAndDrop(t *testing.T) {
	keys, err := codes.GenerateKeys()
	require.NoError(t, err)
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	token, err := codes.SignToken(keys.Signing, codes.Claims{CodeID: "AAAAAAAAAAAAAAAAAAAAAA", DeviceID: "l1", Expires: now.Add(time.Hour).Unix()})
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
	for _, line := range strings.Split(string(eml), "\r\n") {
		require.LessOrEqual(t, len(line), 998, "SMTP line limit")
	}
	pm := parseMail(t, eml)
	subj, err := new(mime.WordDecoder).DecodeHeader(pm.header.Get("Subject"))
	require.NoError(t, err)
	require.Equal(t, "Votre document vous attend dans le casier", subj)
	require.Contains(t, pm.text, "123 456 789")
	require.Contains(t, pm.text, "Jusqu'au 4 décembre 2026 à 18h00")
	require.Contains(t, pm.html, `src="cid:qr@kluis"`)
	png, ok := pm.inline["qr@kluis"]
	require.True(t, ok)
	got := decodeQR(t, png)
	require.Equal(t, token, got)
	claims, err := codes.VerifyToken(keys.Public(), got, "l1", now)
	require.NoError(t, err)
	require.Equal(t, "AAAAAAAAAAAAAAAAAAAAAA", claims.CodeID)
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
