package notify

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"image"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"kluis/backend/codes"
	"kluis/backend/notify/mailread"
	"kluis/backend/notify/notifytest"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
	"kluis/controller/pickupcode"
)

var now0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

type nfix struct {
	pool  *pgxpool.Pool
	smtp  *notifytest.SMTPServer
	sms   *notifytest.SMSGateway
	slips string
	n     *Notifier
	keys  codes.Keys
	told  []string
}

func newNfix(t *testing.T) *nfix {
	t.Helper()
	st := storetest.New(t)
	f := &nfix{pool: st.Pool(), smtp: notifytest.NewSMTPServer(t, notifytest.SMTPOptions{}), sms: notifytest.NewSMSGateway(t),
		slips: filepath.Join(t.TempDir(), "slips")}
	_, err := f.pool.Exec(context.Background(), `INSERT INTO sites (id, name, address, created_at) VALUES ('kortrijk', 'Stadhuis Kortrijk', 'Grote Markt 54, 8500 Kortrijk', now());
		INSERT INTO devices (id, site_id, kind, name, directions, created_at) VALUES ('l1', 'kortrijk', 'locker', 'K-Noord',
			'{"nl": "In de inkomhal, links van de trap.", "de": "In der Eingangshalle, links von der Treppe."}', now());
		INSERT INTO compartments (device_id, number, board, channel, size, height_cm) SELECT 'l1', n, 0, n - 1, 'M', 90 FROM generate_series(7, 12) n;`)
	require.NoError(t, err)
	f.keys, err = codes.GenerateKeys()
	require.NoError(t, err)
	f.n, err = New(Options{DB: f.pool, Mail: &SMTP{Addr: f.smtp.Addr, AllowPlain: true}, SMS: &SMSGateway{URL: f.sms.URL, Token: "t"},
		Slips: &DirSlips{Dir: f.slips}, From: "Stad Kortrijk <kluis@kortrijk.be>", TrackBaseURL: "https://kluis.example/",
		Clock: func() time.Time { return now0 }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: prometheus.NewRegistry(),
		OnNotified: func(_ context.Context, id string) error { f.told = append(f.told, id); return nil }})
	require.NoError(t, err)
	return f
}

func (f *nfix) doc(t *testing.T, lang, email, mobile string) (store.Document, store.Compartment) {
	return f.docIn(t, "loaded", lang, email, mobile)
}

// deadline0 is the documents' deadline: midnight in Brussels at the end of
// Tuesday 1 December 2026, ten days and a half after now0.
var deadline0 = time.Date(2026, 12, 2, 0, 0, 0, 0, Brussels)

func (f *nfix) docIn(t *testing.T, state, lang, email, mobile string) (store.Document, store.Compartment) {
	t.Helper()
	var c store.Compartment
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT id, number, board, channel FROM compartments c WHERE device_id = 'l1'
		AND NOT EXISTS (SELECT 1 FROM documents d WHERE d.compartment_id = c.id AND d.state IN ('reserved', 'loaded', 'notified', 'expired'))
		ORDER BY number LIMIT 1`).Scan(&c.ID, &c.Number, &c.Board, &c.Channel))
	c.DeviceID = "l1"
	deadline := deadline0
	d := store.Document{Kind: store.EID, FirstName: "Ann", LastName: "Peeters", Language: lang, Email: email, Mobile: mobile,
		SiteID: "kortrijk", DeviceID: "l1", CompartmentID: c.ID, Deadline: &deadline}
	require.NoError(t, f.pool.QueryRow(context.Background(), `INSERT INTO documents (kind, holder_first_name, holder_last_name, language, email, mobile,
		site_id, state, device_id, compartment_id, deadline, closed_at, created_at, updated_at)
		VALUES ('eid', 'Ann', 'Peeters', $1, $2, $3, 'kortrijk', $6, 'l1', $4, $5,
		CASE WHEN $6::text IN ('collected', 'retrieved', 'cancelled') THEN now() END, now(), now()) RETURNING id::text`,
		lang, email, mobile, c.ID, deadline, state).Scan(&d.ID))
	return d, c
}

func (f *nfix) creds(t *testing.T) codes.Credentials {
	t.Helper()
	tok, err := pickupcode.SignToken(f.keys.Signing, pickupcode.Claims{CodeID: "BBBBBBBBBBBBBBBBBBBBBB", DeviceID: "l1", Expires: now0.Add(240 * time.Hour).Unix()})
	require.NoError(t, err)
	return codes.Credentials{CodeID: "BBBBBBBBBBBBBBBBBBBBBB", QRToken: tok, PIN: "987654321", NeedsDOB: true, ExpiresAt: now0.Add(240 * time.Hour)}
}

func TestNotifyReadyByEmailAndSMS(t *testing.T) {
	t.Parallel()
	f := newNfix(t)
	d, c := f.doc(t, "de", "ann@example.org", "+32470123456")
	cr := f.creds(t)
	require.NoError(t, f.n.Notify(context.Background(), service.Notification{Kind: service.NotifyLoaded, Document: d, Compartment: c, Secret: cr}))

	msgs := f.smtp.Messages()
	require.Len(t, msgs, 1)
	pm := parseMail(t, msgs[0].Data)
	require.Contains(t, pm.text, "987 654 321")
	require.Contains(t, pm.text, "Abholschrank K-Noord, Fach 7")
	require.Contains(t, pm.text, "In der Eingangshalle, links von der Treppe.", "the device's directions in German")
	require.Contains(t, pm.text, "Sie haben Zeit bis einschließlich Dienstag, 1. Dezember (bis Mitternacht).")
	require.Contains(t, pm.text, "https://kluis.example/t/")
	require.Contains(t, pm.attached, "abholen.ics")
	got := decodeQR(t, pm.inline["qr@kluis"])
	_, err := pickupcode.VerifyToken(f.keys.Public(), got, "l1", now0)
	require.NoError(t, err)

	sms := f.sms.Received()
	require.Len(t, sms, 1)
	require.Equal(t, "+32470123456", sms[0].To)
	require.Contains(t, sms[0].Text, "987 654 321")
	require.Contains(t, sms[0].Text, "bis einschließlich Dienstag, 1. Dezember (bis Mitternacht)")
	n, ucs2 := SMSSegments(sms[0].Text)
	require.False(t, ucs2)
	require.LessOrEqual(t, n, 2)
	require.Equal(t, []string{d.ID}, f.told)

	hist, err := History(context.Background(), f.pool, d.ID)
	require.NoError(t, err)
	require.Len(t, hist, 2)
	require.Equal(t, "email", hist[0].Channel)
	require.Equal(t, "sent", hist[0].Status)
	require.Equal(t, "sms", hist[1].Channel)
	require.Equal(t, 1.0, testutil.ToFloat64(f.n.sent.WithLabelValues("email", "sent")))

	// The track link in the mail opens the page, in German, first name only.
	i := strings.Index(pm.text, "https://kluis.example/t/")
	tid := pm.text[i+len("https://kluis.example/t/") : i+len("https://kluis.example/t/")+22]
	require.True(t, ValidTrackingID(tid))
	mux := http.NewServeMux()
	mux.Handle("GET /t/{trackingID}", &TrackHandler{DB: f.pool})
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/t/"+tid, nil))
	require.Equal(t, 200, rec.Code)
	page := rec.Body.String()
	require.Contains(t, page, "Guten Tag Ann")
	require.NotContains(t, page, "Peeters")
	require.NotContains(t, page, "987")
	require.Contains(t, page, "Fach 7")
	require.Contains(t, page, `href="?lang=fr"`)
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/t/"+tid+"?lang=fr", nil))
	require.Contains(t, rec.Body.String(), "Votre document est prêt")
	require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))

	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/t/AAAAAAAAAAAAAAAAAAAAAA", nil))
	require.Equal(t, 404, rec.Code)
	require.Contains(t, rec.Body.String(), "1777")

	// The same document keeps its tracking id; a purge forgets it.
	tid2, err := TrackingID(context.Background(), f.pool, d.ID, now0)
	require.NoError(t, err)
	require.Equal(t, tid, tid2)
	require.NoError(t, pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		return f.n.PurgeDocuments(context.Background(), tx, []string{d.ID})
	}))
	_, err = LookupTrack(context.Background(), f.pool, tid)
	require.ErrorIs(t, err, ErrNotFound)
}

func TestNotifyWithoutChannelsWritesSlip(t *testing.T) {
	t.Parallel()
	f := newNfix(t)
	d, c := f.doc(t, "nl", "", "")
	cr := f.creds(t)
	require.NoError(t, f.n.Notify(context.Background(), service.Notification{Kind: service.NotifyLoaded, Document: d, Compartment: c, Secret: cr}))
	require.Empty(t, f.smtp.Messages())
	require.Empty(t, f.sms.Received())
	html, err := os.ReadFile(filepath.Join(f.slips, d.ID+".html"))
	require.NoError(t, err)
	require.Contains(t, string(html), "Afhaalbewijs")
	require.Contains(t, string(html), "987 654 321")
	require.Contains(t, string(html), "size: A6")
	require.Contains(t, string(html), `src="data:image/png;base64,`)
	hist, err := History(context.Background(), f.pool, d.ID)
	require.NoError(t, err)
	require.Len(t, hist, 1)
	require.Equal(t, Record{Kind: "loaded", Channel: "slip", Status: "needed", At: hist[0].At}, hist[0])
	require.Equal(t, []string{d.ID}, f.told)
}

func TestNotifyFailuresAndOtherKinds(t *testing.T) {
	t.Parallel()
	f := newNfix(t)
	d, c := f.doc(t, "en", "ann@example.org", "+32470123456")
	f.sms.SetStatus(http.StatusBadGateway)
	require.NoError(t, f.n.Notify(context.Background(), service.Notification{Kind: service.NotifyCollected, Document: d, Compartment: c}),
		"the e-mail went out; a failed SMS alone is no failure")
	hist, err := History(context.Background(), f.pool, d.ID)
	require.NoError(t, err)
	require.Len(t, hist, 2)
	require.Equal(t, "failed", hist[1].Status)
	require.NotContains(t, hist[1].Error, "collected")
	require.Empty(t, f.told, "a receipt does not mark the document notified")
	pm := parseMail(t, f.smtp.Messages()[0].Data)
	require.Contains(t, pm.text, "You have collected your electronic identity card (eID). That was on Saturday 21 November at 11:00.")
	require.Empty(t, pm.inline, "only the ready message carries a QR")
	require.Empty(t, pm.attached, "no calendar entry once collected")

	d2, _ := f.docIn(t, "retrieved", "en", "", "+32470123456")
	err = f.n.Notify(context.Background(), service.Notification{Kind: service.NotifyExpired, Document: d2, Compartment: c})
	require.ErrorIs(t, err, ErrNotDelivered)
	require.NotContains(t, err.Error(), "32470123456")

	err = f.n.Notify(context.Background(), service.Notification{Kind: service.NotifyLoaded, Document: d, Compartment: c})
	require.ErrorIs(t, err, ErrInvalid, "ready without credentials")
	err = f.n.Notify(context.Background(), service.Notification{Kind: "bogus", Document: d})
	require.ErrorIs(t, err, ErrInvalid)
	_, err = New(Options{})
	require.ErrorIs(t, err, ErrInvalid)
}

func TestRedact(t *testing.T) {
	got := redact(`550 5.1.1 <ann.peeters@example.org>: unknown; sms to +32 470 12 34 56 failed (code 502)`)
	require.NotContains(t, got, "ann.peeters")
	require.NotContains(t, got, "470 12 34")
	require.Contains(t, got, "550 5.1.1")
	require.Contains(t, got, "code 502")
}

func TestSlipRender(t *testing.T) {
	for _, lang := range Languages {
		page, err := Slip(SlipData{Language: lang, FirstName: "<b>Ann</b>", DocumentKind: "passport", SiteName: "S", SiteAddress: "A",
			DeviceName: "K1", Directions: "Links van de trap", Compartment: 3, Deadline: deadline0, PIN: "123456789", QRToken: "K1.x.y",
			Paper: "A4", Now: now0})
		require.NoError(t, err)
		s := string(page)
		require.Contains(t, s, "123 456 789")
		require.Contains(t, s, "size: A4")
		require.Contains(t, s, `lang="`+lang+`"`)
		require.Contains(t, s, DocName(lang, "passport"))
		require.Contains(t, s, "Links van de trap")
		require.Contains(t, s, html.EscapeString(FormatDeadline(lang, deadline0, now0)))
		require.NotContains(t, s, "<b>Ann</b>")
		require.Contains(t, s, `src="data:image/png;base64,`)
	}
	_, err := Slip(SlipData{PIN: "1", QRToken: ""})
	require.ErrorIs(t, err, ErrInvalid)
}

// The real message in each language, read back as a citizen's mail program
// would (package mailread, as the demo and the system tests do): the QR
// code in the inline PNG decodes to the issued token and verifies at the
// device, the PIN is the issued one, the image is big enough to scan from
// a phone, the deadline reads as people say it, and the calendar entry is
// attached.
func TestReadyMailEveryLanguage(t *testing.T) {
	t.Parallel()
	f := newNfix(t)
	subjects := map[string]string{"nl": "Uw eID ligt klaar om op te halen", "fr": "Votre document est prêt\u00a0: eID",
		"en": "Your eID is ready to collect", "de": "Ihr Dokument liegt zur Abholung bereit: eID"}
	for i, lang := range Languages {
		d, c := f.doc(t, lang, lang+"@example.org", "")
		cr := f.creds(t)
		require.NoError(t, f.n.Notify(context.Background(), service.Notification{Kind: service.NotifyLoaded, Document: d, Compartment: c, Secret: cr}))
		msgs := f.smtp.Messages()
		require.Len(t, msgs, i+1)
		m, err := mailread.Parse(msgs[i].Data)
		require.NoError(t, err, lang)
		require.Equal(t, lang+"@example.org", m.To)
		require.Equal(t, subjects[lang], m.Subject)
		require.Equal(t, cr.QRToken, m.QR, "%s: the QR code is the issued token", lang)
		_, err = pickupcode.VerifyToken(f.keys.Public(), m.QR, "l1", now0)
		require.NoError(t, err)
		require.Equal(t, cr.PIN, m.PIN, lang)
		require.Contains(t, m.Text, FormatDeadline(lang, deadline0, now0))
		require.Contains(t, m.Text, DirectionsIn(map[string]string{"nl": "In de inkomhal, links van de trap.",
			"de": "In der Eingangshalle, links von der Treppe."}, lang))
		require.Contains(t, m.HTML, `lang="`+lang+`"`)
		require.Contains(t, m.Calendar, "SUMMARY;LANGUAGE="+lang+":")

		pm := parseMail(t, msgs[i].Data)
		png := pm.inline["qr@kluis"]
		cfg, err := pngConfig(png)
		require.NoError(t, err)
		q, err := QRCode(cr.QRToken)
		require.NoError(t, err)
		require.Equal(t, q.Modules*QRPixelsPerModule, cfg.Width, "whole pixels per module")
		require.Equal(t, cfg.Width, cfg.Height)
		require.Contains(t, pm.html, fmt.Sprintf(`width="%d" height="%d"`, cfg.Width/2, cfg.Width/2), "shown at half size: sharp on phones")
		require.GreaterOrEqual(t, cfg.Width/2, 280, "about 5 cm on a phone screen")
		require.Equal(t, "multipart/mixed(multipart/related(multipart/alternative(text/plain,text/html),image/png),text/calendar)", pm.structure)
	}
}

func pngConfig(b []byte) (image.Config, error) { return png.DecodeConfig(bytes.NewReader(b)) }

// A document whose holder's data was erased (the retention purges) gets no
// message of any kind: no e-mail, SMS or nameless slip is built or sent,
// no attempt is recorded and no tracking link is made again; prepare
// refuses it (ErrPurged).
func TestNoMessageForAPurgedDocument(t *testing.T) {
	t.Parallel()
	f := newNfix(t)
	d, c := f.doc(t, "fr", "", "")
	now := now0
	_, err := f.pool.Exec(context.Background(), `UPDATE documents SET holder_first_name = NULL, holder_last_name = NULL,
		email = NULL, mobile = NULL, purged_at = $2 WHERE id = $1`, d.ID, now)
	require.NoError(t, err)
	d.FirstName, d.LastName, d.PurgedAt = "", "", &now
	for _, kind := range []string{service.NotifyLoaded, service.NotifyReissued, service.NotifyReminder, service.NotifyCollected,
		service.NotifyExpired} {
		note := service.Notification{Kind: kind, Document: d, Compartment: c, Secret: f.creds(t)}
		require.NoError(t, f.n.Notify(context.Background(), note), kind)
		_, err := f.n.prepare(context.Background(), f.pool, note)
		require.ErrorIs(t, err, ErrPurged, kind)
	}
	require.Empty(t, f.smtp.Messages())
	require.Empty(t, f.sms.Received())
	_, err = os.Stat(filepath.Join(f.slips, d.ID+".html"))
	require.ErrorIs(t, err, os.ErrNotExist, "no nameless slip")
	var recs, tracking int
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM notifications WHERE document_id = $1),
		(SELECT count(*) FROM notify_tracking WHERE document_id = $1)`, d.ID).Scan(&recs, &tracking))
	require.Zero(t, recs, "no attempt recorded")
	require.Zero(t, tracking, "no tracking link made again")
	require.Empty(t, f.told)
}

// A pickup slip carries the holder's first name: the retention purge of
// its document removes it with the rest (a document without a slip is no
// error), and leaves other documents' slips alone.
func TestPurgeRemovesTheSlip(t *testing.T) {
	t.Parallel()
	f := newNfix(t)
	d, c := f.doc(t, "nl", "", "")
	other, oc := f.doc(t, "fr", "", "")
	noSlip, _ := f.doc(t, "en", "ann@example.org", "")
	for _, x := range []struct {
		d store.Document
		c store.Compartment
	}{{d, c}, {other, oc}} {
		require.NoError(t, f.n.Notify(context.Background(), service.Notification{Kind: service.NotifyLoaded, Document: x.d,
			Compartment: x.c, Secret: f.creds(t)}))
	}
	slip := filepath.Join(f.slips, d.ID+".html")
	b, err := os.ReadFile(slip)
	require.NoError(t, err)
	require.Contains(t, string(b), "Ann", "the slip names the holder")

	require.NoError(t, pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		return f.n.PurgeDocuments(context.Background(), tx, []string{d.ID, noSlip.ID})
	}))
	_, err = os.Stat(slip)
	require.ErrorIs(t, err, os.ErrNotExist, "the purged document's slip is gone")
	_, err = os.Stat(filepath.Join(f.slips, other.ID+".html"))
	require.NoError(t, err, "another document's slip stays")
}
