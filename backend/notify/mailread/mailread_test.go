package mailread_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/notify"
	"kluis/backend/notify/mailread"
	"kluis/controller/pickupcode"
)

// readyMail builds a ready-for-pickup message exactly as the notifier does:
// text and HTML, the QR code inline, the calendar entry attached.
func readyMail(t *testing.T, lang, to, token, pin string) []byte {
	t.Helper()
	q, err := notify.QRCode(token)
	require.NoError(t, err)
	d := notify.MessageData{FirstName: "An", DocumentKind: "eid", SiteName: "Stadhuis", SiteAddress: "Grote Markt 54",
		DeviceName: "Hal A", Compartment: 4, Deadline: time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC), PIN: pin,
		TrackURL: "http://127.0.0.1/t/x", Sender: "Stad Kortrijk", QRContentID: "qr@kluis", QRWidth: q.DisplayWidth(),
		CalendarAttached: true, Now: time.Date(2026, 11, 21, 22, 0, 0, 0, time.UTC)}
	r, err := notify.Render(lang, notify.MsgReady, d)
	require.NoError(t, err)
	ics, err := notify.Calendar(lang, d, "u@kluis")
	require.NoError(t, err)
	raw, err := notify.BuildEmail(notify.Email{From: "Stad Kortrijk <kluis@kortrijk.be>", To: to, Subject: r.Subject,
		Text: r.Text, HTML: r.HTML, Language: lang,
		Inline:      []notify.Inline{{ContentID: "qr@kluis", ContentType: "image/png", Filename: r.QRFilename, Data: q.PNG}},
		Attachments: []notify.Attachment{{ContentType: "text/calendar; charset=utf-8; method=PUBLISH", Filename: r.CalendarFilename, Data: ics}},
		Date:        time.Date(2026, 11, 21, 22, 0, 0, 0, time.UTC), MessageID: "m1@kluis"})
	require.NoError(t, err)
	return raw
}

func TestParseQRAndPIN(t *testing.T) {
	const token = "K1.eyJ2IjoxLCJjaWQiOiJBQUFBQUFBQUFBQUFBQUFBQUFBQUFBIiwiZGV2IjoiaGFsbC1hIiwiZXhwIjoxODAwMDAwMDAwfQ.c2lnbmF0dXJl"
	for _, lang := range []string{"en", "nl", "fr", "de"} {
		t.Run(lang, func(t *testing.T) {
			m, err := mailread.Parse(readyMail(t, lang, "An Peeters <an.peeters@example.org>", token, "123 456"))
			require.NoError(t, err)
			require.Equal(t, "an.peeters@example.org", m.To)
			require.Equal(t, token, m.QR, "QR decoded from the inline PNG")
			require.Equal(t, "123456", m.PIN)
			require.Contains(t, m.Subject, "eID")
			require.Contains(t, m.Text, notify.FormatDeadline(lang, time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC), time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)))
			require.Contains(t, m.HTML, `src="cid:qr@kluis"`)
			require.Contains(t, m.Calendar, "BEGIN:VCALENDAR\r\n")
			require.Contains(t, m.Calendar, "DTSTART;VALUE=DATE:20261201\r\n")
			require.Empty(t, m.File)
		})
	}
}

// TestDecodeQRPNGManyTokens decodes QR images made exactly like the
// backend's (notify.QRPNG) of real tokens, including the ones that once
// defeated gozxing.
func TestDecodeQRPNGManyTokens(t *testing.T) {
	// A fixed key: the same tokens every run (deterministic test).
	signing := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	for _, i := range []int{0, 1, 2, 3, 133, 184, 255} {
		cid := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("code-id-%08d", i)))
		token, err := pickupcode.SignToken(signing, pickupcode.Claims{CodeID: cid, DeviceID: "kortrijk-hall-a", Expires: 1800000000 + int64(i)})
		require.NoError(t, err)
		png, err := notify.QRPNG(token)
		require.NoError(t, err)
		got, err := mailread.DecodeQRPNG(png)
		require.NoError(t, err, "token %d", i)
		require.Equal(t, token, got)
	}
	_, err := mailread.DecodeQRPNG([]byte("not a png"))
	require.Error(t, err)
}

func TestParseWithoutQR(t *testing.T) {
	raw := "From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\nContent-Type: text/plain\r\n\r\nno code here\r\n"
	m, err := mailread.Parse([]byte(raw))
	require.NoError(t, err)
	require.Empty(t, m.QR)
	require.Empty(t, m.PIN)
	require.Contains(t, m.Text, "no code here")

	_, err = mailread.Parse([]byte("not a mail"))
	require.Error(t, err)
}

func TestPIN(t *testing.T) {
	for text, want := range map[string]string{
		"Or type your PIN: 123 456 789. Then type your date of birth.": "123456789",
		"Of typ uw pincode: 12 34 56. Typ daarna":                      "123456",
		"Ou tapez votre code PIN : 654 321. Tapez":                     "654321",
		"Tapez alors votre code PIN :\n\n654 321 987\n":                "654321987",
		"Tapez alors votre code PIN\u00a0:\n\n654 321 987\n":           "654321987",
		"Dann tippen Sie Ihre PIN: 111 222 333\nTippen Sie danach":     "111222333",
		"Your QR code and your PIN no longer work.":                    "",
		"no code": "",
	} {
		require.Equal(t, want, mailread.PIN(text), text)
	}
}

func TestReadDirOrderAndSkip(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "20261121T220001.000000000Z-b.eml"), readyMail(t, "en", "b@example.org", "K1.b.c", "222 333"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "20261121T220000.000000000Z-a.eml"), readyMail(t, "en", "a@example.org", "K1.a.c", "111 222"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".tmp-123"), []byte("partial"), 0o600))
	ms, err := mailread.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, ms, 2)
	require.Equal(t, "20261121T220000.000000000Z-a.eml", ms[0].File)
	require.Equal(t, "a@example.org", ms[0].To)
	require.Equal(t, "111222", ms[0].PIN)
	require.Equal(t, "K1.b.c", ms[1].QR)

	ms, err = mailread.ReadDir(filepath.Join(dir, "absent"))
	require.NoError(t, err)
	require.Empty(t, ms)
}
