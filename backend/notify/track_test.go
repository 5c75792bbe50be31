package notify

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"kluis/backend/codes"
	"kluis/backend/notify/notifytest"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
	"kluis/controller/pickupcode"
)

// journeyFix is the real chain behind the track page: the service moves a
// document through its life, backend/codes issues codes, this package
// notifies and serves the page.
type journeyFix struct {
	clock *storetest.Clock
	st    *store.Store
	svc   *service.Service
	n     *Notifier
	smtp  *notifytest.SMTPServer
	sms   *notifytest.SMSGateway
	page  http.Handler
}

// t0 is Monday 23 March 2026, 10:00 in Brussels.
var t0 = time.Date(2026, 3, 23, 9, 0, 0, 0, time.UTC)

func newJourney(t *testing.T) *journeyFix {
	t.Helper()
	ctx := context.Background()
	f := &journeyFix{clock: storetest.NewClock(t0), smtp: notifytest.NewSMTPServer(t, notifytest.SMTPOptions{}), sms: notifytest.NewSMSGateway(t)}
	f.st = storetest.NewWithOptions(t, store.Options{Clock: f.clock.Now})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	keys, err := codes.GenerateKeys()
	require.NoError(t, err)
	cs, err := codes.New(codes.Options{Pool: f.st.Pool(), Keys: keys, Clock: f.clock.Now, Logger: quiet,
		Argon: pickupcode.ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1}})
	require.NoError(t, err)
	f.n, err = New(Options{DB: f.st.Pool(), Mail: &SMTP{Addr: f.smtp.Addr, AllowPlain: true}, SMS: &SMSGateway{URL: f.sms.URL},
		From: "Stad Kortrijk <kluis@kortrijk.be>", TrackBaseURL: "https://kluis.kortrijk.be", Clock: f.clock.Now, Logger: quiet,
		OnNotified: func(ctx context.Context, id string) error {
			_, err := f.svc.MarkNotified(ctx, "system", id)
			return err
		}})
	require.NoError(t, err)
	f.svc, err = service.New(service.Options{Store: f.st, Clock: f.clock.Now, Logger: quiet, Codes: codes.Issuer{Service: cs},
		Notifier: f.n, Purger: f.n, PickupDays: map[store.DocumentKind]int{store.Passport: 10}})
	require.NoError(t, err)
	_, err = f.svc.CreateSite(ctx, "user:admin", store.NewSite{ID: "kortrijk", Name: "Stadhuis Kortrijk", Address: "Grote Markt 54, 8500 Kortrijk"})
	require.NoError(t, err)
	_, err = f.svc.CreateDevice(ctx, "user:admin", store.NewDevice{ID: "l1", SiteID: "kortrijk", Kind: store.Locker, Name: "K-Noord",
		Directions:   map[string]string{"nl": "In de inkomhal, links van de trap.", "en": "In the entrance hall, left of the stairs."},
		Compartments: []store.NewCompartment{{Size: store.SizeM, HeightCM: 100}, {Channel: 1, Size: store.SizeM, HeightCM: 60}}})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("GET /t/{trackingID}", &TrackHandler{DB: f.st.Pool(), Clock: f.clock.Now, Logger: quiet})
	f.page = mux
	return f
}

// register puts a passport on the way for Lotte Claes.
func (f *journeyFix) register(t *testing.T, lang, email, mobile string) store.Document {
	t.Helper()
	doc, err := f.svc.RegisterDocument(context.Background(), "user:counter", store.NewDocument{Kind: store.Passport, Number: "EP123456",
		FirstName: "Lotte", LastName: "Claes", BirthDate: new(time.Date(1985, 6, 1, 0, 0, 0, 0, time.UTC)), Language: lang,
		Email: email, Mobile: mobile, SiteID: "kortrijk"})
	require.NoError(t, err)
	return doc
}

func (f *journeyFix) get(t *testing.T, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	f.page.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}

type pageStep struct {
	class, text, detail, when, datetime string
	current                             bool
}

var (
	stepsRe = regexp.MustCompile(`(?s)<ol class="steps">(.*?)</ol>`)
	liRe    = regexp.MustCompile(`(?s)<li class="([^"]*)"([^>]*)>(.*?)</li>`)
	pRe     = func(class string) *regexp.Regexp { return regexp.MustCompile(`(?s)<p class="` + class + `">(.*?)</p>`) }
	tagRe   = regexp.MustCompile(`<[^>]*>`)
	dtRe    = regexp.MustCompile(`datetime="([^"]*)"`)
)

// steps reads the timeline of a track page: an ordered list, one item per step.
func steps(t *testing.T, page string) []pageStep {
	t.Helper()
	m := stepsRe.FindStringSubmatch(page)
	require.NotNil(t, m, "no timeline in:\n%s", page)
	var out []pageStep
	for _, li := range liRe.FindAllStringSubmatch(m[1], -1) {
		s := pageStep{class: li[1], current: strings.Contains(li[2], `aria-current="step"`)}
		text := func(class string) string {
			if p := pRe(class).FindStringSubmatch(li[3]); p != nil {
				return strings.Join(strings.Fields(html.UnescapeString(tagRe.ReplaceAllString(p[1], " "))), " ")
			}
			return ""
		}
		s.text, s.detail, s.when = text("step"), text("detail"), text("when")
		if d := dtRe.FindStringSubmatch(li[3]); d != nil {
			s.datetime = html.UnescapeString(d[1])
		}
		out = append(out, s)
	}
	return out
}

func texts(ss []pageStep) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.text)
	}
	return out
}

// The page of a document's whole journey: registered, in the locker,
// told, reminded, collected, each with its date and time in the citizen's
// language, the last one marked as now, what to do next; nothing a
// stranger with the link should not see.
func TestTrackPageJourney(t *testing.T) {
	t.Parallel()
	f := newJourney(t)
	ctx := context.Background()
	doc := f.register(t, "en", "lotte@example.org", "")
	tid, err := TrackingID(ctx, f.st.Pool(), doc.ID, f.clock.Now())
	require.NoError(t, err)

	code, page := f.get(t, "/t/"+tid)
	require.Equal(t, 200, code)
	require.Contains(t, page, "Your passport has arrived. We are getting it ready.")
	require.Contains(t, page, "We will send you a message when your document is ready.")
	require.Equal(t, []string{"Registered at the counter Now"}, texts(steps(t, page)))

	f.clock.Add(2 * time.Hour)
	_, err = f.svc.Reserve(ctx, "user:counter", doc.ID, service.ReserveOptions{})
	require.NoError(t, err)
	f.clock.Add(15 * time.Minute)
	_, err = f.svc.Load(ctx, "user:counter", doc.ID) // the e-mail goes out; the document is notified
	require.NoError(t, err)
	_, page = f.get(t, "/t/"+tid)
	ss := steps(t, page)
	require.Equal(t, []string{"Registered at the counter", "Put in the pickup locker", "Message with your codes sent Now",
		"Last chance to collect To do"}, texts(ss))
	require.Equal(t, "Monday 23 March at 10:00", ss[0].when)
	require.Equal(t, "2026-03-23T10:00:00+01:00", ss[0].datetime)
	require.Equal(t, "Monday 23 March at 12:15", ss[1].when)
	require.Equal(t, "Locker K-Noord, compartment 1", ss[1].detail)
	require.True(t, ss[2].current)
	require.Contains(t, ss[3].class, "upcoming")
	require.Equal(t, "until midnight on Thursday 2 April", ss[3].when, "ten days: the end of the tenth day after loading")
	require.Equal(t, "2026-04-03T00:00:00+02:00", ss[3].datetime)
	require.Contains(t, page, "Your passport is ready to collect.")
	require.Contains(t, page, "Come and collect your document. You have until midnight on Thursday 2 April.")
	require.Contains(t, page, "In the entrance hall, left of the stairs.")
	require.Contains(t, page, "Grote Markt 54, 8500 Kortrijk")

	// The reminder, then the pickup.
	f.clock.Add(8 * 24 * time.Hour)
	_, err = f.svc.Renotify(ctx, "system", doc.ID)
	require.NoError(t, err)
	f.clock.Add(26*time.Hour + 3*time.Minute)
	_, err = f.svc.Collect(ctx, "device:l1", doc.ID)
	require.NoError(t, err)
	code, page = f.get(t, "/t/"+tid)
	require.Equal(t, 200, code)
	ss = steps(t, page)
	require.Equal(t, []string{"Registered at the counter", "Put in the pickup locker", "Message with your codes sent", "Reminder sent",
		"Document collected Now"}, texts(ss))
	require.Equal(t, "Tuesday 31 March at 13:15", ss[3].when, "summer time from 29 March")
	require.Equal(t, "Wednesday 1 April at 15:18", ss[4].when)
	require.True(t, ss[4].current)
	for _, s := range ss[:4] {
		require.False(t, s.current)
		require.Contains(t, s.class, "done")
	}
	require.Contains(t, page, "You have collected your passport.")
	require.Contains(t, page, "You do not need to do anything else.")
	require.Contains(t, page, "Was this not you? Call\u00a01777 at once.")
	require.NotContains(t, page, "Last chance to collect", "no deadline once collected")

	// Nothing for a stranger: no last name, document number, codes, who did
	// what, the document id, the contact address.
	pin, tok := lastPINAndToken(t, f)
	for _, secret := range []string{"Claes", "EP123456", doc.ID, "lotte@example.org", "user:counter", "device:l1", "system", pin, tok} {
		require.NotContains(t, page, secret)
	}

	// Each language: the same steps, in that language.
	for lang, want := range map[string][]string{
		"nl": {"Aangemeld aan de balie", "In de afhaalkluis gelegd", "Bericht met uw codes verstuurd", "Herinnering verstuurd", "Document opgehaald Nu"},
		"fr": {"Enregistré au guichet", "Déposé dans la consigne", "Message avec vos codes envoyé", "Rappel envoyé", "Document retiré Maintenant"},
		"de": {"Am Schalter registriert", "In den Abholschrank gelegt", "Nachricht mit Ihren Codes gesendet", "Erinnerung gesendet", "Dokument abgeholt Jetzt"},
	} {
		_, page := f.get(t, "/t/"+tid+"?lang="+lang)
		require.Contains(t, page, `<html lang="`+lang+`">`)
		ss := steps(t, page)
		require.Equal(t, want, texts(ss), lang)
		require.Equal(t, FormatTime(lang, t0, f.clock.Now()), ss[0].when)
	}
}

// lastPINAndToken are the PIN and QR token of the last ready e-mail.
func lastPINAndToken(t *testing.T, f *journeyFix) (string, string) {
	t.Helper()
	for _, m := range f.smtp.Messages() {
		pm := parseMail(t, m.Data)
		if png, ok := pm.inline["qr@kluis"]; ok {
			pin := regexp.MustCompile(`PIN: ([0-9 ]+)`).FindStringSubmatch(pm.text)
			require.NotNil(t, pin)
			return strings.TrimSpace(pin[1]), decodeQR(t, png)
		}
	}
	t.Fatal("no ready e-mail")
	return "", ""
}

// Expired and taken back: the steps say so and the page says where to go.
func TestTrackPageBackToTheCounter(t *testing.T) {
	t.Parallel()
	f := newJourney(t)
	ctx := context.Background()
	doc := f.register(t, "nl", "", "+32470123456")
	_, err := f.svc.Reserve(ctx, "user:counter", doc.ID, service.ReserveOptions{})
	require.NoError(t, err)
	_, err = f.svc.Load(ctx, "user:counter", doc.ID)
	require.NoError(t, err)
	tid, err := TrackingID(ctx, f.st.Pool(), doc.ID, f.clock.Now())
	require.NoError(t, err)

	// A reminder that reached nobody is not shown as sent.
	f.sms.SetStatus(http.StatusBadGateway)
	f.clock.Add(9 * 24 * time.Hour)
	_, err = f.svc.Renotify(ctx, "system", doc.ID)
	require.NoError(t, err)
	f.sms.SetStatus(http.StatusAccepted)

	f.clock.Set(time.Date(2026, 4, 3, 0, 1, 0, 0, Brussels))
	n, err := f.svc.ExpireDue(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, page := f.get(t, "/t/"+tid)
	ss := steps(t, page)
	require.Equal(t, []string{"Aangemeld aan de balie", "In de afhaalkluis gelegd", "Bericht met uw codes verstuurd", "Termijn voorbij Nu"}, texts(ss))
	require.Equal(t, "vrijdag 3 april om 00.01 uur", ss[3].when)
	require.Contains(t, page, "De termijn is voorbij. Uw paspoort gaat terug naar de balie.")
	require.Contains(t, page, "Wij brengen het terug naar de balie. Haal het daar op tijdens de openingsuren.")

	f.clock.Add(9 * time.Hour)
	_, err = f.svc.Retrieve(ctx, "user:counter", doc.ID)
	require.NoError(t, err)
	_, page = f.get(t, "/t/"+tid)
	ss = steps(t, page)
	require.Equal(t, "Teruggebracht naar de balie Nu", ss[len(ss)-1].text)
	require.Equal(t, "Stadhuis Kortrijk", ss[len(ss)-1].detail)
	require.Contains(t, page, "Uw paspoort ligt aan de balie.")
	require.Contains(t, page, "Haal uw document op aan de balie, tijdens de openingsuren.")
	require.Contains(t, page, "Grote Markt 54, 8500 Kortrijk")
	next := regexp.MustCompile(`(?s)<section class="next".*?</section>`).FindString(page)
	require.Contains(t, next, "Stadhuis Kortrijk")
	require.NotContains(t, next, "K-Noord", "no locker to go to once it is back at the counter")
}

// Without the right tracking id there is one page, whatever was asked:
// the same status and bytes for a malformed, an unknown and a purged id.
func TestTrackPageUnknownLeaksNothing(t *testing.T) {
	t.Parallel()
	f := newJourney(t)
	ctx := context.Background()
	doc := f.register(t, "de", "lotte@example.org", "")
	tid, err := TrackingID(ctx, f.st.Pool(), doc.ID, f.clock.Now())
	require.NoError(t, err)
	code, page := f.get(t, "/t/"+tid)
	require.Equal(t, 200, code)
	require.Contains(t, page, "Guten Tag Lotte,")

	code, want := f.get(t, "/t/AAAAAAAAAAAAAAAAAAAAAA")
	require.Equal(t, 404, code)
	require.Contains(t, want, "Dit document vinden we niet.", "in Dutch: whose document it would be is not known")
	require.Contains(t, want, "1777")
	for _, id := range []string{"x", tid[:21], tid + "A", strings.ToLower(tid[:1]) + tid[1:] + "%00", "%ff", "..%2F..%2Fetc", doc.ID} {
		code, got := f.get(t, "/t/"+id)
		if strings.Contains(id, "%00") || id == "%ff" {
			require.Equal(t, 400, code, "a NUL or invalid UTF-8 is a bad request, known from the address alone: %s", id)
		} else {
			require.Equal(t, 404, code, id)
		}
		require.Equal(t, want, got, "the same page for %q", id)
	}
	code, fr := f.get(t, "/t/AAAAAAAAAAAAAAAAAAAAAA?lang=fr")
	require.Equal(t, 404, code)
	require.Contains(t, fr, "Nous ne trouvons pas ce document.")

	require.NoError(t, pgx.BeginFunc(ctx, f.st.Pool(), func(tx pgx.Tx) error {
		return f.n.PurgeDocuments(ctx, tx, []string{doc.ID})
	}))
	code, got := f.get(t, "/t/"+tid)
	require.Equal(t, 404, code)
	require.Equal(t, want, got, "a purged document is unknown")

	// A database failure: a page saying to try later, no error text.
	h := &TrackHandler{DB: failingDB{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	mux := http.NewServeMux()
	mux.Handle("GET /t/{trackingID}", h)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/t/"+tid+"?lang=en", nil))
	require.Equal(t, 503, rec.Code)
	require.Contains(t, rec.Body.String(), "This page does not work right now. Try again later or call\u00a01777 for free.")
	require.NotContains(t, rec.Body.String(), "connection refused")
	require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	require.Equal(t, "no-referrer", rec.Header().Get("Referrer-Policy"))
	require.Contains(t, rec.Header().Get("Content-Security-Policy"), "frame-ancestors 'none'")
}

// failingDB fails every query, as a database that went away.
type failingDB struct{}

var errGone = errors.New("dial tcp 127.0.0.1:5432: connection refused")

func (failingDB) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, errGone
}
func (failingDB) Query(context.Context, string, ...any) (pgx.Rows, error) { return nil, errGone }
func (failingDB) QueryRow(context.Context, string, ...any) pgx.Row        { return failingRow{} }

type failingRow struct{}

func (failingRow) Scan(...any) error { return errGone }

// The track page's CSP allows its one style element by hash, not any
// inline style ('unsafe-inline' before; found black-box): the hash is
// the one of the style the page is served with, in every state.
func TestTrackPageCSPAllowsOnlyItsOwnStyle(t *testing.T) {
	t.Parallel()
	f := newJourney(t)
	doc := f.register(t, "nl", "lotte@example.org", "")
	tid, err := TrackingID(context.Background(), f.st.Pool(), doc.ID, f.clock.Now())
	require.NoError(t, err)
	for _, path := range []string{"/t/" + tid, "/t/AAAAAAAAAAAAAAAAAAAAAA?lang=fr"} {
		rec := httptest.NewRecorder()
		f.page.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		csp := rec.Header().Get("Content-Security-Policy")
		require.NotContains(t, csp, "unsafe-inline", path)
		body := rec.Body.String()
		_, rest, ok := strings.Cut(body, "<style>")
		require.True(t, ok, path)
		css, _, ok := strings.Cut(rest, "</style>")
		require.True(t, ok, path)
		sum := sha256.Sum256([]byte(css))
		require.Contains(t, csp, "style-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'", path)
		require.Equal(t, 1, strings.Count(body, "<style"), "one style element")
		require.NotContains(t, body, " style=", "no style attribute: the hash would not allow it")
	}
}
