package web

import (
	"context"
	"html/template"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"kluis/backend/alarms"
	"kluis/backend/auth"
	"kluis/backend/lifecycle"
	"kluis/backend/notify"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/controller/engine"
	"kluis/controller/kiosk/screen"
	"kluis/controller/wire"
	"kluis/hardware"
)

var placeholder = regexp.MustCompile(`\{[a-z]+\}`)

// Every key exists in the four languages, none is empty, and each has the
// same placeholders everywhere; the date layouts are Go layouts.
func TestCatalogueComplete(t *testing.T) {
	require.Equal(t, []string{"nl", "fr", "en", "de"}, Languages)
	ref := catalogue["en"]
	for _, lang := range Languages {
		c, ok := catalogue[lang]
		require.True(t, ok, lang)
		assert.Len(t, c, len(ref), "%s has another number of keys than en", lang)
		for k, v := range c {
			en, ok := ref[k]
			if !assert.True(t, ok, "%s has %q, en does not", lang, k) {
				continue
			}
			assert.NotEmpty(t, strings.TrimSpace(v), "%s %s is empty", lang, k)
			assert.Equal(t, sortedMatches(en), sortedMatches(v), "%s %s: placeholders differ from en", lang, k)
		}
		for k := range ref {
			_, ok := c[k]
			assert.True(t, ok, "%s lacks %q", lang, k)
		}
		for _, k := range []string{"fmt.clock", "fmt.datetime", "fmt.date"} {
			ts := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
			parsed, err := time.Parse(c[k], ts.Format(c[k]))
			require.NoError(t, err, "%s %s", lang, k)
			assert.Equal(t, ts.Format(c[k]), parsed.Format(c[k]))
		}
	}
	// The names of every kind, state, alarm and action a page can show.
	var keys []string
	for _, k := range store.DocumentKinds() {
		keys = append(keys, "kind."+string(k), "register.invalid.kind")
	}
	for _, s := range lifecycle.States() {
		keys = append(keys, "state."+string(s))
	}
	for _, a := range lifecycle.Actions() {
		keys = append(keys, "history."+string(a))
	}
	keys = append(keys, "history.register")
	for _, a := range wire.AlarmKinds() {
		keys = append(keys, "alarm."+string(a))
	}
	for _, k := range wire.EventKinds() {
		keys = append(keys, "timeline.device."+string(k))
	}
	for _, r := range auth.Roles() {
		keys = append(keys, "role."+string(r))
	}
	for _, s := range []string{"free", "reserved", "loaded", "expired", "out_of_service"} {
		keys = append(keys, "map.state."+s, "map.short."+s)
	}
	for _, f := range registerFields {
		keys = append(keys, "register.invalid."+f)
	}
	for _, k := range birthMissingKeys {
		keys = append(keys, k)
	}
	keys = append(keys, birthMissing, birthBadDay, birthBadMonth, birthBadYear, birthNotReal, birthTooOld, birthFuture, birthInvalid,
		"register.birth.hint", "register.birth.day", "register.birth.month", "register.birth.year")
	for k := range notices {
		keys = append(keys, k)
	}
	for _, l := range Languages {
		keys = append(keys, "language."+l)
	}
	for _, k := range []string{service.NotifyLoaded, service.NotifyReissued, service.NotifyReminder, service.NotifyCollected, service.NotifyExpired} {
		keys = append(keys, "undelivered.kind."+k)
	}
	for _, c := range []string{"email", "sms", "slip"} {
		keys = append(keys, "channel."+c)
	}
	for _, s := range []string{"sent", "failed", "needed"} {
		keys = append(keys, "notification."+s)
	}
	for _, k := range keys {
		_, ok := ref[k]
		assert.True(t, ok, "the catalogue lacks %q", k)
	}
}

func sortedMatches(s string) []string {
	m := placeholder.FindAllString(s, -1)
	sort.Strings(m)
	return m
}

var action = regexp.MustCompile(`(?s)\{\{.*?\}\}`)

// The templates hold no words: what is left of every text and every
// attribute people read (aria-label, title, alt, placeholder, label) once
// the template actions are taken out has no letter.
func TestTemplatesHoldNoWords(t *testing.T) {
	files, err := fs.Glob(assets, "assets/*.html")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		b, err := fs.ReadFile(assets, f)
		require.NoError(t, err)
		src := action.ReplaceAllString(string(b), "")
		z := html.NewTokenizer(strings.NewReader(src))
		for {
			tt := z.Next()
			if tt == html.ErrorToken {
				break
			}
			tok := z.Token()
			switch tt {
			case html.TextToken:
				assert.False(t, hasLetter(tok.Data), "%s: words in the template: %q", f, strings.TrimSpace(tok.Data))
			case html.StartTagToken, html.SelfClosingTagToken:
				for _, a := range tok.Attr {
					switch a.Key {
					case "aria-label", "title", "alt", "placeholder", "label", "data-lost", "data-ended", "data-shown":
						assert.False(t, hasLetter(a.Val), "%s: words in %s=%q", f, a.Key, a.Val)
					}
				}
			}
		}
	}
}

func hasLetter(s string) bool {
	for _, r := range s {
		if unicode.IsLetter(r) {
			return true
		}
	}
	return false
}

var jsString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)

// The script holds no words either: no string in it is a phrase or a text
// of the catalogue (what it shows comes from data-* attributes).
func TestScriptHoldsNoWords(t *testing.T) {
	b, err := fs.ReadFile(assets, "assets/static/console.js")
	require.NoError(t, err)
	var code strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "//") {
			code.WriteString(line + "\n")
		}
	}
	values := map[string]bool{}
	for _, c := range catalogue {
		for _, v := range c {
			values[v] = true
		}
	}
	phrase := regexp.MustCompile(`\pL\s+\pL`)
	lits := jsString.FindAllString(code.String(), -1)
	require.NotEmpty(t, lits)
	for _, lit := range lits {
		s := lit[1 : len(lit)-1]
		if s == "use strict" {
			continue
		}
		assert.False(t, phrase.MatchString(s), "a phrase in console.js: %s", lit)
		assert.False(t, values[s], "a catalogue text in console.js: %s", lit)
	}
}

// marker is the text of a key in the marker catalogue.
func marker(k string) string { return "⟪" + k + "⟫" }

const datum = "⟨d⟩"

// markers are what may show besides catalogue texts: data, the device ids
// of the fixtures, placeholders the script fills in, compartment sizes, and
// the raw name of an audit action the catalogue does not know.
var markers = regexp.MustCompile(`⟪[a-z0-9_.]+⟫|⟨d⟩|\b[ak]1\b|\{[a-z]+\}|\b[SML]\b|something\.new`)

// Every page, rendered with a catalogue whose texts are markers and data
// that is a marker too, shows nothing else a person reads: every word on
// every page comes from the catalogue. The same pages in the four real
// languages miss no key.
func TestPagesShowOnlyCatalogueWords(t *testing.T) {
	real := catalogue
	t.Cleanup(func() { catalogue = real })
	mk := map[string]map[string]string{}
	for _, l := range Languages {
		mk[l] = map[string]string{}
		for k, v := range real[l] {
			// The placeholders stay, so that what Go code fills in shows.
			mk[l][k] = marker(k) + strings.Join(placeholder.FindAllString(v, -1), " ")
			if strings.HasPrefix(k, "fmt.") {
				mk[l][k] = v
			}
		}
	}
	for _, run := range []struct {
		name string
		cat  map[string]map[string]string
	}{{"markers", mk}, {"real", real}} {
		catalogue = run.cat
		for _, lang := range Languages {
			for name, html := range renderAll(t, lang) {
				require.NotContains(t, html, "⟦", "%s %s: a key missing from the catalogue", lang, name)
				if run.name != "markers" {
					continue
				}
				// A pickup deadline is worded by notify's catalogue, shared
				// with the citizen's messages (TestDeadlineAsCitizensReadIt).
				until := notify.FormatDeadlineIn(lang, fixtureDeadline, fixtureNow, brussels(t))
				for _, text := range visibleTexts(t, html) {
					rest := markers.ReplaceAllString(strings.ReplaceAll(text, until, ""), "")
					assert.False(t, hasLetter(rest), "%s page %s: words outside the catalogue: %q (in %q)", lang, name, rest, text)
				}
			}
		}
	}
}

// visibleTexts are the texts and readable attributes of a page.
func visibleTexts(t *testing.T, page string) []string {
	z := html.NewTokenizer(strings.NewReader(page))
	var out []string
	skip := 0
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return out
		}
		tok := z.Token()
		switch tt {
		case html.StartTagToken:
			if tok.Data == "script" || tok.Data == "style" {
				skip++
			}
		case html.EndTagToken:
			if tok.Data == "script" || tok.Data == "style" {
				skip--
			}
		case html.TextToken:
			if skip == 0 && strings.TrimSpace(tok.Data) != "" {
				out = append(out, tok.Data)
			}
		}
		for _, a := range tok.Attr {
			switch a.Key {
			case "aria-label", "title", "alt", "placeholder", "label", "data-lost", "data-ended", "data-shown", "data-label":
				out = append(out, a.Val)
			}
		}
	}
}

// The fixtures' clock and a pickup deadline at midnight in Brussels: the
// end of Thursday 5 March.
var (
	fixtureNow      = time.Date(2026, 3, 4, 9, 30, 0, 0, time.UTC)
	fixtureDeadline = time.Date(2026, 3, 5, 23, 0, 0, 0, time.UTC)
)

func brussels(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Brussels")
	require.NoError(t, err)
	return loc
}

// A deadline at midnight shows as the citizen's e-mail and SMS word it, the
// end of the day before, in each language; never as "06-03-2026 00:00",
// which a clerk reads as the 6th. Both the document page and the lists.
func TestDeadlineAsCitizensReadIt(t *testing.T) {
	want := map[string]string{
		"nl": "tot en met donderdag 5 maart (tot middernacht)",
		"fr": "jusqu'au jeudi 5 mars inclus (jusqu'à minuit)",
		"en": "until midnight on Thursday 5 March",
		"de": "bis einschließlich Donnerstag, 5. März (bis Mitternacht)",
	}
	for _, lang := range Languages {
		require.Equal(t, want[lang], notify.FormatDeadlineIn(lang, fixtureDeadline, fixtureNow, brussels(t)), lang)
		pages := renderAll(t, lang)
		for _, name := range []string{"document-notified", "documents"} {
			texts := strings.Join(visibleTexts(t, pages[name]), "\n")
			assert.Contains(t, texts, want[lang], "%s %s", lang, name)
			assert.NotContains(t, texts, "00:00", "%s %s", lang, name)
			assert.NotContains(t, texts, "06-03-2026", "%s %s", lang, name)
		}
		assert.Contains(t, pages["document-notified"], `datetime="2026-03-05T23:00:00Z"`, "machine-readable for the browser")
	}
}

// fixtureUndelivered: a ready message and a reminder given up, a receipt
// waiting for its next try (at 11:30 Brussels time, today for the fixtures).
var fixtureUndelivered = []notify.Undelivered{
	{DocumentID: "d1", Number: datum, FirstName: datum, LastName: datum, Kind: "loaded", GaveUp: true, Attempts: 12},
	{DocumentID: "d2", Number: datum, FirstName: datum, LastName: datum, Kind: "reminder", GaveUp: true, Attempts: 12},
	{DocumentID: "d3", Kind: "collected", Attempts: 2, NextAt: fixtureNow.Add(time.Hour)},
}

// The documents page lists the messages that did not reach their holder:
// what failed, whether it waits or was given up, and what staff do.
func TestDocumentsListUndelivered(t *testing.T) {
	want := map[string][]string{
		"en": {"Messages that did not arrive", "Ready for pickup, with the codes", "Given up (attempts: 12)",
			"The holder has no codes: hand over the pickup slip or make new codes.", "Reminder", "Call the holder if need be.",
			"Collection receipt", "Next try 11:30 (failed attempts: 2)", "Nothing: it is tried again by itself.", "(erased)"},
		"nl": {"Berichten die niet aankwamen", "Opgegeven (pogingen: 12)", "Nieuwe poging 11:30 (mislukte pogingen: 2)",
			"De houder heeft geen codes: geef het afhaalbewijs af of maak nieuwe codes."},
		"fr": {"Messages non arrivés", "Abandonné (essais\u00a0: 12)", "Nouvel essai 11:30 (essais échoués\u00a0: 2)"},
		"de": {"Nicht angekommene Nachrichten", "Aufgegeben (Versuche: 12)", "Neuer Versuch 11:30 (fehlgeschlagene Versuche: 2)"},
	}
	for _, lang := range Languages {
		page := renderAll(t, lang)["documents"]
		texts := strings.Join(visibleTexts(t, page), "\n")
		for _, w := range want[lang] {
			assert.Contains(t, texts, w, lang)
		}
		for _, id := range []string{"d1", "d2", "d3"} {
			assert.Contains(t, page, `href="/staff/documents/`+id+`"`, "%s: links to the document, where the slip and new codes are", lang)
		}
		assert.Equal(t, 2, strings.Count(page, "data-gave-up"), lang)
		assert.Less(t, strings.Index(page, `id="h-undelivered"`), strings.Index(page, `id="h-expired"`), "%s: first, since it asks for action", lang)
	}
}

// fixtureDocUndelivered: one document's ready message given up on SMS,
// its reminder waiting for a retry on e-mail and SMS.
var fixtureDocUndelivered = []notify.Undelivered{
	{DocumentID: "d1", Kind: "loaded", GaveUp: true, Attempts: 12, Channels: []string{"sms"}, LastError: datum},
	{DocumentID: "d1", Kind: "reminder", Attempts: 2, Channels: []string{"email", "sms"}, NextAt: fixtureNow.Add(time.Hour)},
}

// A document's page shows its own messages that did not reach the holder:
// the channel, the attempts, the last error and what to do; a given-up
// ready message of a document that left its compartment asks nothing.
func TestDocumentUndelivered(t *testing.T) {
	want := map[string][]string{
		"en": {"Messages to this holder that did not arrive", "Ready for pickup, with the codes", "text message",
			"Given up (attempts: 12)",
			"The holder has no codes: hand over the pickup slip or make new codes.", "Reminder", "e-mail, text message",
			"Next try 11:30 (failed attempts: 2)", "no error text", "Nothing: it is tried again by itself."},
		"nl": {"Berichten aan deze houder die niet aankwamen", "Kanaal", "Laatste fout", "sms", "Opgegeven (pogingen: 12)", "geen foutmelding"},
		"fr": {"Messages non arrivés à ce titulaire", "Canal", "Dernière erreur", "Abandonné (essais\u00a0: 12)", "aucun message d'erreur"},
		"de": {"Nicht angekommene Nachrichten an diesen Inhaber", "Kanal", "Letzter Fehler", "Aufgegeben (Versuche: 12)", "keine Fehlermeldung"},
	}
	left := map[string]string{"en": "Nothing any more: the document is no longer in the device.",
		"nl": "Niets meer: het document is niet meer in het toestel.", "fr": "Plus rien\u00a0: le document n'est plus dans l'appareil.",
		"de": "Nichts mehr: Das Dokument ist nicht mehr im Gerät."}
	for _, lang := range Languages {
		pages := renderAll(t, lang)
		page := pages["document-notified"]
		texts := strings.Join(visibleTexts(t, page), "\n")
		for _, w := range want[lang] {
			assert.Contains(t, texts, w, lang)
		}
		assert.Equal(t, 1, strings.Count(page, "data-gave-up"), lang)
		assert.Contains(t, page, `<code>`+datum+`</code>`, "%s: the last error, as stored (made safe by notify)", lang)
		assert.Less(t, strings.Index(page, `id="h-undelivered"`), strings.Index(page, `id="h-details"`), "%s: on top, since it asks for action", lang)
		assert.Contains(t, strings.Join(visibleTexts(t, pages["document-expired"]), "\n"), left[lang], lang)
		assert.NotContains(t, pages["document-registered"], `id="h-undelivered"`, "%s: nothing failed, no section", lang)
	}
}

// renderAll renders every page and live fragment with data of every kind,
// as an admin (who sees every button).
func renderAll(t *testing.T, lang string) map[string]string {
	t.Helper()
	pages, err := parsePages()
	require.NoError(t, err)
	now, loc := fixtureNow, brussels(t)
	rules := map[string][]auth.Role{}
	for _, a := range Actions() {
		rules[a.Name] = []auth.Role{auth.RoleAdmin}
	}
	w := &Web{pages: pages, rules: rules, o: Options{Location: loc, Clock: func() time.Time { return now }}}
	// Holders of short staff PINs: more than the admins' notice names.
	w.shortPINs = func(context.Context, int) (int, []auth.User, error) {
		return 25, []auth.User{{ID: 7, Username: datum}, {ID: 8, Username: datum}}, nil
	}
	out := map[string]string{}
	do := func(name, path, page string, main any, loggedIn bool) {
		r := httptest.NewRequest("GET", path, nil)
		// A notice as a redirect leaves it for the page (redirect).
		if k := r.URL.Query().Get("notice"); k != "" {
			r.AddCookie(&http.Cookie{Name: noticeCookie, Value: url.Values{"key": {k}, "path": {r.URL.Path}}.Encode()})
		}
		q := &req{w: w, r: r, lang: lang, t: w.tr(lang), loggedIn: loggedIn,
			sess: auth.WebSession{CSRF: "csrf", User: auth.User{ID: 1, Username: datum, Role: auth.RoleAdmin, KioskPINShort: true}}}
		rec := httptest.NewRecorder()
		w.render(rec, q, 200, page, datum, main)
		require.Equal(t, 200, rec.Code, name)
		out[name] = rec.Body.String()
	}
	at := now.Add(-time.Hour)
	dl := fixtureDeadline
	doc := store.Document{ID: "d1", Kind: store.Passport, Number: datum, FirstName: datum, LastName: datum, BirthDate: &at,
		Language: "fr", Email: datum, State: lifecycle.Notified, DeviceID: "k1", CompartmentID: 1, Deadline: &dl, WantsLow: true}
	rows := []docRow{{Document: doc, Device: datum, Comp: 3}}
	do("login", "/staff/login?notice=notice.logged_out", "login", loginData{Username: datum, Error: datum, Ended: true, Next: "/staff/x", Token: "t"}, false)
	do("documents", "/staff/documents?q=x", "documents", documentsData{Query: datum, Searched: true, Results: rows, Total: 1, Soon: rows,
		Expired: rows, Reserved: rows, SoonDays: 2, Undelivered: fixtureUndelivered}, true)
	do("documents-empty", "/staff/documents", "documents", documentsData{SoonDays: 2}, true)
	dev := store.Device{ID: "k1", SiteID: "s", Kind: store.Locker, Name: datum}
	oos := dev
	oos.OutOfService = &store.DeviceOutOfService{Since: at, Reason: datum}
	rd := registerData{Form: registerForm{Kind: "eid", Contact: "none", Language: "nl", SiteID: "s"}, Errors: map[string]string{},
		Kinds: store.DocumentKinds(), Sites: []siteOption{{Site: store.Site{ID: "s", Name: datum}, Devices: []deviceOption{{Device: dev}, {Device: oos}, {Device: dev, Problems: datum}}}}, LowMax: 120}
	for _, f := range registerFields {
		rd.Errors[f] = datum
		rd.Summary = append(rd.Summary, fieldMessage{Field: f, Text: datum})
	}
	do("register", "/staff/documents/new", "register", rd, true)
	comp := store.Compartment{ID: 1, Number: 3}
	for _, st := range []lifecycle.State{lifecycle.Registered, lifecycle.Notified, lifecycle.Expired} {
		d := doc
		d.State = st
		dd := documentData{Doc: d, Site: store.Site{Name: datum}, Device: &dev, Comp: &comp,
			Devices: []deviceOption{{Device: dev}, {Device: oos}, {Device: dev, Problems: datum}}, Unfit: datum, ReserveRefused: datum, ReserveDevice: "k1",
			Timeline: []step{{At: at, Text: datum, Who: datum, Detail: datum}}, CanReserve: true, CanUnres: true, CanCancel: true,
			CanRenotify: true, CanReissue: true, CanSlip: true}
		if st == lifecycle.Notified {
			dd.Undelivered = fixtureDocUndelivered
		}
		if st == lifecycle.Expired {
			dd = documentData{Doc: d, Site: store.Site{Name: datum}, SlipOnly: true, Undelivered: fixtureDocUndelivered[:1]}
		}
		do("document-"+string(st), "/staff/documents/d1", "document", dd, true)
	}
	for _, paper := range []string{"a4", "80mm"} {
		do("slip-"+paper, "/staff/documents/d1/slip", "slip", slipData{Doc: "d1", Lang: "fr", Paper: paper, Body: template.HTML("<p>" + datum + "</p>"), Back: "/staff/documents/d1"}, true)
	}
	board := 0
	boardAlarm := alarm{Kind: wire.AlarmBoardUnreachable, Board: &board, At: at}
	hs := []health{
		{Device: dev, Known: true, Online: true, Since: at, Software: datum, LastHeartbeat: &at, Late: true, HasHeartbeat: true,
			Boards: []boardHealth{{BoardHealth: wire.BoardHealth{Address: 0, Online: true, Firmware: datum, Errors: 2}, Alarm: &boardAlarm, AlarmNotCleared: true},
				{BoardHealth: wire.BoardHealth{Address: 1}, Alarm: &boardAlarm}}, BoardErrors: 2, BoardsOffline: 1,
			DoorsOpen: 1, Backlog: 3, UpSince: &at, Firmware: datum,
			Alarms: []alarm{{Compartment: 4, Kind: wire.AlarmDoorLeftOpen, At: at}, {Kind: wire.AlarmBoardUnreachable, Board: &board, At: at},
				{Kind: wire.AlarmJournalDamaged, At: at},
				{ID: "e9", Device: "k1", Kind: wire.AlarmForcedDoor, Compartment: 2, At: at, Ack: &alarms.Ack{By: datum, At: at, Note: datum}}}},
		{Device: oos, Known: true, Since: at},
		{Device: store.Device{ID: "a1", Kind: store.Automaton, Name: "a1"}},
		{Device: dev, Known: true, Since: at}, // offline, in service
	}
	do("devices", "/staff/devices", "devices", devicesData{Rows: hs, Sites: map[string]string{"s": datum}, Show: "all"}, true)
	do("devices-empty", "/staff/devices", "devices", devicesData{Show: "alarms"}, true)
	var comps []compView
	for i, s := range []string{"free", "reserved", "loaded", "expired", "out_of_service"} {
		c := compView{Compartment: store.Compartment{ID: int64(i + 1), Number: i + 1, Size: store.SizeM, HeightCM: 40 * (i + 1),
			State: store.CompartmentState(s)}, Shown: s, Low: i < 3}
		if s != "free" && s != "out_of_service" {
			c.DocID, c.DocState = "d1", lifecycle.Loaded
		}
		if i == 3 {
			c.DoorOpen, c.Alarms, c.AlarmsAcked = true, []wire.AlarmKind{wire.AlarmDoorLeftOpen, wire.AlarmForcedDoor}, []bool{false, true}
		}
		comps = append(comps, c)
	}
	var events []event
	actions := []string{"compartment.remote_open", "compartment.out_of_service", "compartment.in_service", "device.create", "device.update",
		"device.out_of_service", "device.in_service", "device.pin_locked", "device.pin_unlocked", "device.mqtt_password_set",
		"kiosk.login", "kiosk.login_failed", "kiosk.login_refused", "kiosk.denied", "kiosk.test_open", "kiosk.retrieve", "code.used", "code.denied",
		"code.device_revoked", "code.locked", "alarm.acknowledged", "something.new"}
	for _, k := range wire.EventKinds() {
		actions = append(actions, "device."+string(k))
	}
	for i, a := range actions {
		events = append(events, event{Seq: int64(i), At: at, Action: a, Actor: []string{"system", "device:k1", datum}[i%3], Compartment: 2,
			Alarm: string(wire.AlarmForcedDoor), Reason: datum, Result: []string{"opened", "failed"}[i%2], Document: "d1", IsAlarm: a == "device.alarm"})
		if a == "alarm.acknowledged" {
			events[len(events)-1].Note = datum
		}
	}
	layout, err := store.ResolveLayout(&store.Layout{Columns: 3, Rows: 3, Screen: &store.Place{Column: 2, Row: 1, Height: 2}}, []int{1, 2, 3, 4, 5})
	require.NoError(t, err)
	d := detail{health: hs[0], Site: store.Site{Name: datum}, Comps: comps, Layout: layout, Timeline: events, LowMax: 120}
	d.Doors = []hardware.ChannelState{{Addr: hardware.Address{Channel: 3}, DoorOpen: true}}
	dv := deviceView{detail: d, Highlight: 2, LiveURL: liveURL("k1", 2, true)}
	dv.Map = drawMap(w.tr(lang), d, 2)
	do("device", "/staff/devices/k1?c=2", "device", dv, true)
	do("device-acked", "/staff/devices/k1?notice=notice.alarm_acked", "device", dv, true)
	do("device-already-acked", "/staff/devices/k1?notice=notice.alarm_already_acked", "device", dv, true)
	open := alarm{ID: "e1", Device: "k1", Kind: wire.AlarmDoorLeftOpen, Compartment: 4, At: at}
	do("ack", "/staff/devices/k1/alarms/e1/ack", "ack", ackData{Device: dev, Alarm: open, Note: datum, Error: datum, Action: "/x", Back: "/y"}, true)
	do("ack-done", "/staff/devices/k1/alarms/e9/ack", "ack", ackData{Device: dev, Alarm: hs[0].Alarms[3], Action: "/x", Back: "/y"}, true)
	// A device registered with its compartments that never connected.
	var free []compView
	for _, c := range comps {
		free = append(free, compView{Compartment: c.Compartment, Shown: "free", Low: c.Low})
		free[len(free)-1].State = store.CompartmentFree
	}
	empty := deviceView{detail: detail{health: hs[2], Site: store.Site{Name: datum}, Comps: free, Layout: layout}}
	empty.Map = drawMap(w.tr(lang), empty.detail, 0)
	do("device-never", "/staff/devices/a1", "device", empty, true)
	for _, confirm := range []bool{false, true} {
		do("open", "/staff/devices/k1/compartments/3/open", "open", actionData{Device: dev, Comp: comp, Reason: datum, Error: datum,
			Confirm: confirm, Kind: "open", Action: "/x", Back: "/y"}, true)
	}
	for _, kind := range []string{"comp_service", "device_service"} {
		for _, o := range []bool{true, false} {
			do("service-"+kind, "/x", "service", actionData{Device: oos, Comp: comp, Out: o, Reason: datum, Error: datum, Kind: kind, Action: "/x", Back: "/y"}, true)
		}
	}
	pinErrs := map[string]string{"current_password": datum, "kiosk_pin": datum, "kiosk_pin_again": datum}
	do("kioskpin-own", "/staff/account/kiosk-pin?notice=notice.kiosk_pin_set", "kioskpin",
		kioskPINData{Own: true, Username: datum, Action: "/x", Errors: pinErrs, Min: 8, Max: 12}, true)
	do("kioskpin-user", "/staff/users/7/kiosk-pin", "kioskpin", kioskPINData{Username: datum, Action: "/x", Errors: pinErrs, Min: 8, Max: 12}, true)
	do("kioskpin-clean", "/staff/users/7/kiosk-pin", "kioskpin", kioskPINData{Username: datum, Action: "/x", Min: 8, Max: 12}, true)
	do("error", "/staff/nope", "error", errorData{Message: datum, Status: 404}, true)
	// The live fragments, as the streams send them.
	q := &req{w: w, r: httptest.NewRequest("GET", "/", nil), lang: lang, t: w.tr(lang), loggedIn: true,
		sess: auth.WebSession{User: auth.User{Role: auth.RoleAdmin}}}
	for _, name := range []string{"fleet-rows", "fleet-summary"} {
		s, err := w.fragment(q, "devices", name, devicesData{Rows: hs, Sites: map[string]string{"s": datum}})
		require.NoError(t, err)
		out["live-"+name] = "<div>" + s + "</div>"
	}
	for _, name := range []string{"device-status", "device-map", "device-comps", "device-boards", "device-timeline"} {
		s, err := w.fragment(q, "device", name, dv)
		require.NoError(t, err)
		out["live-"+name] = "<div>" + s + "</div>"
	}
	return out
}

// The catalogue test above reads the files this one checks exist.
func TestAssetsExist(t *testing.T) {
	for _, f := range []string{"console.css", "console.js", "print-a4.css", "print-80mm.css"} {
		_, err := fs.Stat(assets, "assets/static/"+f)
		assert.NoError(t, err, f)
	}
	_, err := os.Stat("assets/layout.html")
	assert.NoError(t, err)
}

// TestBoardsCountedFromOneForPeople: boards are 0 on the wire and 1 for
// people, as on the kiosk's technician screen ("Board 1"), so a technician
// at the device and one at the console name the same board: the board
// table and a board's alarm say board 1 for address 0, in every language.
func TestBoardsCountedFromOneForPeople(t *testing.T) {
	for _, lang := range []string{"nl", "fr", "en", "de"} {
		pages := renderAll(t, lang)
		label := template.HTMLEscapeString(Text(lang, "board.address"))
		for i, want := range []string{"1", "2"} { // the fixture's boards 0 and 1
			assert.Contains(t, pages["device"], `<th scope="row" data-label="`+label+`">`+want+`</th>`, "%s board %d", lang, i)
		}
		assert.NotContains(t, pages["device"], `<th scope="row" data-label="`+label+`">0</th>`, lang)
		alarm := Text(lang, "alarm.at_board", "alarm", Text(lang, "alarm."+string(wire.AlarmBoardUnreachable)), "n", 1)
		assert.Contains(t, pages["devices"], template.HTMLEscapeString(alarm), lang)
	}
}

// TestFleetMarksDevicesThatNeedAttention: on the fleet page a technician
// sees at a glance which device needs them: a row with an alarm has the
// red mark, a device in service that is offline, late or has a board
// offline the orange one; a device never connected or out of service on
// purpose has none.
func TestFleetMarksDevicesThatNeedAttention(t *testing.T) {
	at := fixtureNow
	dev := store.Device{ID: "k1"}
	oos := dev
	oos.OutOfService = &store.DeviceOutOfService{Since: at, Reason: "works"}
	for _, c := range []struct {
		name string
		h    health
		want bool
	}{
		{"online", health{Device: dev, Known: true, Online: true}, false},
		{"offline", health{Device: dev, Known: true}, true},
		{"late", health{Device: dev, Known: true, Online: true, Late: true}, true},
		{"board offline", health{Device: dev, Known: true, Online: true, BoardsOffline: 1}, true},
		{"never connected", health{Device: dev}, false},
		{"out of service, offline", health{Device: oos, Known: true}, false},
	} {
		assert.Equal(t, c.want, c.h.Unhandled(), c.name)
	}
	row := regexp.MustCompile(`<tr data-status="[^"]*" data-rank="\d+" data-text="(\w+) [^"]*"(?: class="([\w-]+)")?>`)
	for _, lang := range []string{"nl", "fr", "en", "de"} {
		var got []string
		for _, m := range row.FindAllStringSubmatch(renderAll(t, lang)["devices"], -1) {
			got = append(got, m[1]+" "+m[2])
		}
		// Needs attention first: k1 online, late, with alarms; k1
		// offline, in service; then by name a1 never connected and k1 out
		// of service.
		assert.Equal(t, []string{"k1 has-alarm", "k1 attention", "a1 ", "k1 "}, got, lang)
	}
}

// frenchPunct is a plain space before a French double punctuation mark:
// a line may break there and start with ":" or "?" ("redémarrages" /
// ": 1" in the fleet table). French puts a non-breaking space there.
var frenchPunct = regexp.MustCompile(` [:?!;]`)

// TestFrenchPunctuationStaysWithItsWord: every French text of the console
// has a non-breaking space (U+00A0) before : ? ! and ;, never a plain one.
func TestFrenchPunctuationStaysWithItsWord(t *testing.T) {
	for k, s := range catalogue["fr"] {
		assert.False(t, frenchPunct.MatchString(s), "fr %s: %q has a plain space before a punctuation mark", k, s)
	}
}

// TestLateDeviceDoesNotReadOnline: a device whose heartbeat is overdue
// shows the late state, never "Online" beside it, on the fleet page and
// on its own page; a device without alarms says so with the word that
// agrees with "alarms" (French "aucune", not "aucun").
func TestLateDeviceDoesNotReadOnline(t *testing.T) {
	for _, lang := range []string{"nl", "fr", "en", "de"} {
		pages := renderAll(t, lang)
		status := template.HTMLEscapeString(Text(lang, "devices.col.status"))
		late := template.HTMLEscapeString(Text(lang, "status.late"))
		online := template.HTMLEscapeString(Text(lang, "status.online"))
		// The first row is k1: online, heartbeat late, alarms.
		cell := regexp.MustCompile(`<td data-label="` + regexp.QuoteMeta(status) + `" data-v="\d">(.*?)</td>`).FindStringSubmatch(pages["devices"])
		require.NotNil(t, cell, lang)
		assert.Contains(t, cell[1], late, "%s: fleet row", lang)
		assert.NotContains(t, cell[1], online, "%s: fleet row %q", lang, cell[1])
		dd := regexp.MustCompile(`<dt>` + regexp.QuoteMeta(status) + `</dt><dd>(.*?)</dd>`).FindStringSubmatch(pages["device"])
		require.NotNil(t, dd, lang)
		assert.Contains(t, dd[1], late, "%s: device page", lang)
		assert.NotContains(t, dd[1], online, "%s: device page %q", lang, dd[1])

		alarms := template.HTMLEscapeString(Text(lang, "devices.col.alarms"))
		none := regexp.MustCompile(`<td data-label="` + regexp.QuoteMeta(alarms) + `" data-v="0">([^<]*)</td>`).FindStringSubmatch(pages["devices"])
		require.NotNil(t, none, lang)
		assert.Equal(t, template.HTMLEscapeString(Text(lang, "none.alarms")), none[1], lang)
	}
	assert.Equal(t, "aucune", Text("fr", "none.alarms"))
	assert.Equal(t, "keine", Text("de", "none.alarms"))
}

// TestOneClockFormat: every time of day the console and the kiosk show is
// written one way per language, 24 hours, hours and minutes: a moment today, one on
// another day, and the time of a deadline that is not at midnight (which
// the citizen's e-mail writes "20.14 uur" or "20h14": on the documents
// page it stood beside "11:30:00").
func TestOneClockFormat(t *testing.T) {
	loc := brussels(t)
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, loc)
	w := &Web{o: Options{Location: loc, Clock: func() time.Time { return now }}}
	today := time.Date(2026, 12, 7, 20, 14, 5, 0, loc)
	other := time.Date(2026, 12, 9, 20, 14, 5, 0, loc)
	deadline := time.Date(2026, 12, 15, 20, 14, 0, 0, loc)
	for _, lang := range Languages {
		tr := w.tr(lang)
		assert.Equal(t, "20:14", tr.Time(today), lang)
		assert.True(t, strings.HasSuffix(tr.Time(other), " 20:14"), "%s: %q", lang, tr.Time(other))
		dl := tr.Deadline(&deadline)
		assert.Contains(t, dl, "20:14", lang)
		assert.NotContains(t, dl, "20.14", lang)
		assert.NotContains(t, dl, "20h14", lang)
		assert.NotContains(t, dl, "Uhr", lang)
		// The words are still the citizen's: the same sentence but for
		// the clock.
		assert.Equal(t, strings.Replace(notify.FormatDeadlineIn(lang, deadline, now, loc), notifyClock(lang), "20:14", 1), dl, lang)
		// The kiosk (a staff login locked until a time, engine.UntilText,
		// which holds its word for "until" since 4e611ee: "tot 20:14",
		// "jusqu'au 09/12 à 20:14") writes them as the console does, not
		// "20.14 uur" or "20 h 14"; a later day's day and month as the
		// console's date; the time joined to its word by a no-break space
		// (a line never ends on "om").
		kiosk := engine.UntilText(lang, today.UTC(), now)
		assert.True(t, strings.HasSuffix(kiosk, "\u00a020:14"), "%s: %q", lang, kiosk)
		kiosk = engine.UntilText(lang, other.UTC(), now)
		f := strings.Fields(kiosk)
		assert.True(t, len(f) >= 4 && strings.HasPrefix(tr.Time(other), f[len(f)-3]) && strings.HasSuffix(kiosk, "\u00a020:14"),
			"%s: the kiosk's %q beside the console's %q", lang, kiosk, tr.Time(other))
	}
}

// notifyClock is 20:14 as the citizen's messages write it.
func notifyClock(lang string) string {
	return map[string]string{"nl": "20.14 uur", "fr": "20h14", "en": "20:14", "de": "20:14 Uhr"}[lang]
}

// TestAlarmNamesAsOnTheKiosk: a technician reads an alarm by the same name
// on the console and on the kiosk's technician screen, in every language
// (the console said "Deur blijft open", the kiosk "Deur bleef open").
func TestAlarmNamesAsOnTheKiosk(t *testing.T) {
	kiosk, err := screen.NewCatalog()
	require.NoError(t, err)
	for _, a := range wire.AlarmKinds() {
		for _, lang := range Languages {
			k, err := kiosk.Text("alarm."+string(a), lang)
			require.NoError(t, err, "%s %s", a, lang)
			assert.Equal(t, k, Text(lang, "alarm."+string(a)), "%s in %s: the console's name, the kiosk's", a, lang)
		}
	}
}
