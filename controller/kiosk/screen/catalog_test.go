package screen

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"kluis/controller/config"
	"kluis/controller/engine"
	"kluis/controller/wire"
	"kluis/hardware"
)

var placeholderRE = regexp.MustCompile(`\{[a-z]\}`)

// sameInEveryLanguage are the texts that are rightly the same in two
// languages: each language's own name (the switch shows them in their
// own language) and technical words.
var sameInEveryLanguage = map[string]bool{
	"lang.nl": true, "lang.fr": true, "lang.en": true, "lang.de": true,
	"lang.short.nl": true, "lang.short.fr": true, "lang.short.en": true, "lang.short.de": true,
	"tech.col.test":  true, // Test
	"tech.col.alarm": true, // Alarm (nl, en, de)
	"hours.line":     true, // "{a}: {b}" (fr with a no-break space)
}

func TestCatalogEveryTextInEveryLanguage(t *testing.T) {
	c, err := NewCatalog()
	require.NoError(t, err)
	langs := Langs()
	require.Equal(t, []string{"nl", "fr", "en", "de"}, langs)
	for _, k := range c.Keys() {
		var ph []string
		for i, l := range langs {
			txt, err := c.Text(k, l)
			require.NoError(t, err, "%s in %s", k, l)
			require.NotEmpty(t, strings.TrimSpace(txt), "%s in %s", k, l)
			require.Equal(t, strings.TrimSpace(txt), txt, "%s in %s: spaces around", k, l)
			got := placeholderRE.FindAllString(txt, -1)
			sort.Strings(got)
			if i == 0 {
				ph = got
			}
			require.Equal(t, ph, got, "%s: the placeholders differ between nl and %s", k, l)
			for _, other := range langs[:i] {
				o, _ := c.Text(k, other)
				if o == txt && !sameInEveryLanguage[k] && !strings.HasPrefix(k, "state.") {
					t.Errorf("%s is the same in %s and %s (%q): a text not translated?", k, other, l, txt)
				}
			}
		}
	}
	// No fallback: an unknown key or language is an error.
	_, err = c.Text("no.such.key", "en")
	require.ErrorIs(t, err, ErrMissing)
	_, err = c.Text("help", "es")
	require.ErrorIs(t, err, ErrMissing)
	// A text missing in one language is an error, not another language.
	c.texts["help"] = []string{"Hulp", "", "Help", "Hilfe"}
	_, err = c.Text("help", "fr")
	require.ErrorIs(t, err, ErrMissing)
}

// compartmentBreak is a compartment's word and its number apart by a
// plain space: a line may break between them ("casier" / "5.").
var compartmentBreak = regexp.MustCompile(`(?i)\b(vak|casier|compartment|fach) \{n\}`)

// TestCitizenCompartmentNumberStaysWithItsWord: in every text of the
// kiosk screen that names a compartment (the engine's messages: the open
// door, the document left behind, the staff's loading; the door left
// open, the drawing's caption and label), a no-break space joins the
// word and the number, in nl, fr, en and de (the technician's "tech."
// texts aside).
func TestCitizenCompartmentNumberStaysWithItsWord(t *testing.T) {
	c, err := NewCatalog()
	require.NoError(t, err)
	n := 0
	for _, l := range Langs() {
		for _, st := range []string{engine.StateOpen, engine.StateNotCollected} {
			txt, _ := engine.MessageText(st, l)
			require.Contains(t, txt, "\u00a0{n}", "%s in %s", st, l)
			require.NotRegexp(t, compartmentBreak, txt, "%s in %s", st, l)
			n++
		}
		for _, k := range c.Keys() {
			if strings.HasPrefix(k, "tech.") {
				continue // the technician's screens
			}
			txt, _ := c.Text(k, l)
			require.NotRegexp(t, compartmentBreak, txt, "%s in %s", k, l)
			if strings.Contains(txt, "\u00a0{n}") {
				n++
			}
		}
	}
	require.GreaterOrEqual(t, n, 4*5, "the compartment's texts found")
}

// numberRE is a number in a text: {n}, {m} or digits.
var numberRE = regexp.MustCompile(`\{[nm]\}|\d+`)

// loneNumbers are the numbers of txt that a line may break away from
// their word: one beside a word by a plain space on one side ("Bord 1",
// "Fouten: 3", "Erreurs\u00a0: 3", "4 digits") and joined by a no-break
// space on neither.
func loneNumbers(txt string) []string {
	var lone []string
	for _, ix := range numberRE.FindAllStringIndex(txt, -1) {
		before, after := txt[:ix[0]], txt[ix[1]:]
		if strings.HasSuffix(before, "\u00a0") || strings.HasPrefix(after, "\u00a0") {
			continue
		}
		if strings.HasSuffix(before, " ") || strings.HasPrefix(after, " ") {
			lone = append(lone, txt[ix[0]:ix[1]])
		}
	}
	return lone
}

// TestEveryNumberStaysWithItsWord: in every text of the screen's
// catalogue (the citizen's too, and the engine's messages), in nl, fr, en
// and de, a no-break space joins a number and its word: "{n}\u00a0seconden",
// "1\u00a0minute", "dag\u00a003", so that the idle warning, the last-try
// warning, the lockout's retry time and the date's example never leave
// a number alone at a line's end on the small panel. It checks every key,
// the staff's and the technician's texts (staff., tech., pin.short,
// "Carte\u00a0{n}", "Fehler:\u00a0{n}") as much as the citizen's.
func TestEveryNumberStaysWithItsWord(t *testing.T) {
	c, err := NewCatalog()
	require.NoError(t, err)
	n := 0
	for _, l := range Langs() {
		for _, k := range c.Keys() {
			txt, err := c.Text(k, l)
			require.NoError(t, err)
			assert.Empty(t, loneNumbers(txt), "%s in %s: %q", k, l, txt)
			if len(numberRE.FindAllString(txt, -1)) > 0 {
				n++
			}
		}
	}
	require.GreaterOrEqual(t, n, 4*20, "the texts with a number found")
}

// TestTechFrenchColonHasItsSpace: on the automaton's test and diagnostics
// in French, every colon a person reads (the hatch's state, the errors,
// the waiting messages) has a no-break space before it; the hatch's line
// had its colon in the template, glued to "(Carte 1)".
func TestTechFrenchColonHasItsSpace(t *testing.T) {
	diag := engine.Diagnostics{Caps: hardware.Capabilities{DoorSensor: true},
		Boards: []wire.BoardHealth{{Address: 0, Online: true, Errors: 2}}, Backlog: 3}
	s := newTestScreen(t, config.KindAutomaton, &fakeSource{d: diag, sc: engine.Screen{State: engine.StateStaff, Staff: "Bo", StaffRole: wire.RoleTechnician}}, nil)
	code, body := get(t, s, "/screen/tech?lang=fr")
	require.Equal(t, http.StatusOK, code)
	doc, err := html.Parse(strings.NewReader(body))
	require.NoError(t, err)
	var text strings.Builder
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			text.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	txt := text.String()
	cat, err := NewCatalog()
	require.NoError(t, err)
	hatch, err := cat.Text("drawing.hatch", "fr")
	require.NoError(t, err)
	require.Contains(t, strings.ToLower(txt), strings.ToLower(hatch), "the hatch's line")
	require.GreaterOrEqual(t, strings.Count(txt, ":"), 3)
	rs := []rune(txt)
	for i, r := range rs {
		if r == ':' && (i == 0 || rs[i-1] != '\u00a0') {
			t.Errorf("a colon without its no-break space: %q", string(rs[max(0, i-25):min(len(rs), i+10)]))
		}
	}
}

// TestQRCodeDoesNotBreakAtItsHyphen: the scan box's words on the start
// screen ("Halten Sie den QR-Code aus Ihrer E-Mail ...") join "QR" and
// "Code", "E" and "Mail" by a non-breaking hyphen (U+2011, in DejaVu
// Sans, the screen's font): in the box at 800x480 with large text the
// German line broke after "QR-", then after "E-".
func TestQRCodeDoesNotBreakAtItsHyphen(t *testing.T) {
	c, err := NewCatalog()
	require.NoError(t, err)
	for _, l := range []string{"nl", "de"} {
		txt, err := c.Text("start.scan", l)
		require.NoError(t, err)
		require.NotContains(t, strings.ToLower(txt), "qr-code", l)
		require.Contains(t, strings.ToLower(txt), "qr\u2011code", l)
	}
	for _, l := range Langs() {
		txt, err := c.Text("start.scan", l)
		require.NoError(t, err)
		require.NotContains(t, strings.ToLower(txt), "e-mail", l)
		require.Contains(t, strings.ToLower(txt), "e\u2011mail", l)
	}
}

func TestCatalogHasEveryStateAlarmAndViewText(t *testing.T) {
	c, err := NewCatalog()
	require.NoError(t, err)
	keys := map[string]bool{}
	for _, k := range c.Keys() {
		keys[k] = true
	}
	for _, st := range engine.States() {
		require.True(t, keys["state."+st], "engine state %s", st)
	}
	for _, a := range wire.AlarmKinds() {
		require.True(t, keys[alarmKey(a)], "alarm %s", a)
	}
	for _, v := range views {
		for _, k := range []string{v.Title, v.Next, v.ActLabel, v.Hatch} {
			if k != "" {
				require.True(t, keys[k], "%s: %s", v.State, k)
			}
		}
	}
	// Every engine state but idle, staff and need_birth_date (the start,
	// staff menu and date-of-birth screens) has its own section.
	have := map[string]bool{engine.StateIdle: true, engine.StateStaff: true, engine.StateNeedBirthDate: true}
	for _, st := range Views() {
		have[st] = true
	}
	for _, st := range engine.States() {
		require.True(t, have[st], "no screen for state %s", st)
	}
}

// TestCatalogOneCopyOfEachText: the screen does not copy the engine's
// messages (one catalogue): no screen text is an engine message.
func TestCatalogOneCopyOfEachText(t *testing.T) {
	c, err := NewCatalog()
	require.NoError(t, err)
	for _, l := range Langs() {
		engineTexts := map[string]string{}
		for _, st := range engine.States() {
			txt, _ := engine.MessageText(st, l)
			engineTexts[strings.ToLower(strings.TrimRight(txt, ".!"))] = st
		}
		for k := range uiTexts {
			txt, _ := c.Text(k, l)
			if st, dup := engineTexts[strings.ToLower(strings.TrimRight(txt, ".!"))]; dup {
				t.Errorf("%s (%s) copies the engine's message of %s: %q", k, l, st, txt)
			}
		}
	}
}

// fakeSource is a screen to show and diagnostics to report.
type fakeSource struct {
	sc engine.Screen
	d  engine.Diagnostics
}

func (f *fakeSource) Screen() engine.Screen                          { return f.sc }
func (f *fakeSource) Diagnostics(context.Context) engine.Diagnostics { return f.d }

func testConfig(t *testing.T, kind string) *config.Config {
	y := "device_id: d1\nsite: s\nkind: " + kind + "\nmqtt: {url: tcp://127.0.0.1:1883}\nhardware: {driver: simfile, simfile: /dev/null}\n"
	if kind == config.KindAutomaton {
		y += "compartments:\n  - {number: 1, board: 0, slot: 0}\n  - {number: 2, board: 0, slot: 1}\n"
	} else {
		y += "compartments:\n  - {number: 1, board: 0, channel: 0}\n  - {number: 2, board: 0, channel: 1}\n  - {number: 3, board: 0, channel: 2}\n"
		y += "layout: {columns: 2, rows: 2, screen: {column: 2, row: 2}}\n"
	}
	c, err := config.Parse([]byte(y), config.ParseOptions{AllowTestDrivers: true})
	require.NoError(t, err)
	return c
}

// markerCatalog has every text as §key§ (with the placeholders of the
// real text), so that a rendered page shows where its texts come from.
func markerCatalog(t *testing.T) *Catalog {
	real, err := NewCatalog()
	require.NoError(t, err)
	m := &Catalog{texts: map[string][]string{}}
	for _, k := range real.Keys() {
		for _, l := range Langs() {
			txt, _ := real.Text(k, l)
			m.texts[k] = append(m.texts[k], "§"+k+"§"+strings.Join(placeholderRE.FindAllString(txt, -1), ""))
		}
	}
	return m
}

var markerRE = regexp.MustCompile(`§[a-z0-9_.]+§`)

// leftover is what remains of s once the catalogue's markers are gone;
// digits, spaces and punctuation are not words.
func leftover(s string) string {
	s = placeholderRE.ReplaceAllString(markerRE.ReplaceAllString(s, ""), "")
	return strings.TrimFunc(s, func(r rune) bool {
		return r == ' ' || r == '\n' || r == '\t' || r == '-' || r == ':' || r == '(' || r == ')' || r == '.' ||
			r == ',' || r == '/' || (r >= '0' && r <= '9') || r == '\u2193' // the arrow under the scan area
	})
}

// readable are the attributes a person reads (or hears).
var readable = map[string]bool{"aria-label": true, "title": true, "alt": true, "placeholder": true, "value": false,
	"data-tpl": true, "data-tpl-aria": true}

// checkNoHardCodedText fails t for every visible text or readable
// attribute of page that does not come from the catalogue.
func checkNoHardCodedText(t *testing.T, name, page string) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	require.NoError(t, err)
	var walk func(n *html.Node, inSVG bool)
	walk = func(n *html.Node, inSVG bool) {
		if n.Type == html.ElementNode {
			if n.Data == "script" || n.Data == "style" {
				return
			}
			if n.Data == "svg" {
				inSVG = true
			}
			for _, a := range n.Attr {
				if readable[a.Key] {
					if rest := leftover(a.Val); rest != "" {
						t.Errorf("%s: <%s %s=%q>: %q is not from the catalogue", name, n.Data, a.Key, a.Val, rest)
					}
				}
			}
		}
		if n.Type == html.TextNode && (!inSVG || (n.Parent != nil && n.Parent.Data == "text")) {
			if rest := leftover(n.Data); rest != "" {
				t.Errorf("%s: text %q in <%s> is not from the catalogue", name, rest, n.Parent.Data)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, inSVG)
		}
	}
	walk(doc, false)
}

func newTestScreen(t *testing.T, kind string, src *fakeSource, cat *Catalog) *Screen {
	s, err := New(Options{Source: src, Config: testConfig(t, kind), Catalog: cat,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	return s
}

func get(t *testing.T, s *Screen, path string) (int, string) {
	mux := http.NewServeMux()
	s.Register(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// TestNoHardCodedText renders every screen of both kinds of device (and
// the technician's diagnostics) with a catalogue of markers: every text a
// person reads must be a marker. The script holds no text either.
func TestNoHardCodedText(t *testing.T) {
	t.Parallel() // CPU alone, nothing shared: beside the browser tests' waits
	cat := markerCatalog(t)
	now := time.Now()
	two := 2
	diag := engine.Diagnostics{Caps: hardware.Capabilities{DoorSensor: true, ItemSensor: true},
		Boards: []wire.BoardHealth{{Address: 0, Online: true}, {Address: 1, Online: false, Errors: 3}},
		Doors:  []hardware.ChannelState{{Addr: hardware.Address{Channel: 0}, DoorOpen: true, ItemPresent: true}},
		Alarms: []engine.AlarmNote{{Alarm: wire.AlarmForcedDoor, Compartment: 1, At: now}, {Alarm: wire.AlarmBoardUnreachable, Board: &two, At: now},
			{Alarm: wire.AlarmDoorLeftOpen, Compartment: 3, At: now, Cleared: &now}},
	}
	for _, kind := range []string{config.KindLocker, config.KindAutomaton} {
		src := &fakeSource{d: diag}
		s := newTestScreen(t, kind, src, cat)
		for _, st := range engine.States() {
			for _, staff := range []string{"", "§staff_name§"} { // a name is data, not text
				src.sc = engine.Screen{State: st, Compartment: 2, Lang: "en", Staff: staff, Seq: 3, At: now, RetryAfterS: 120}
				code, body := get(t, s, "/?lang=fr&large=1")
				require.Equal(t, http.StatusOK, code, body)
				checkNoHardCodedText(t, kind+"/"+st, body)
			}
		}
		src.sc = engine.Screen{State: engine.StateStaff, Lang: "en", Staff: "§staff_name§", StaffRole: wire.RoleTechnician, Seq: 4, At: now}
		code, body := get(t, s, "/screen/tech?lang=de")
		require.Equal(t, http.StatusOK, code, body)
		require.Contains(t, body, "§alarm.forced_door§")
		// An alarm the device cleared says so (only that one).
		require.Equal(t, 1, strings.Count(body, "§tech.cleared§"), "one cleared alarm")
		checkNoHardCodedText(t, kind+"/tech", body)
	}

	js, err := assets.ReadFile("assets/screen.js")
	require.NoError(t, err)
	// A sentence is two words with a space between; the script's strings
	// are selectors, names and paths.
	sentence := regexp.MustCompile(`[A-Za-z]{2,}\s+[A-Za-z]{2,}`)
	for _, lit := range regexp.MustCompile(`"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'`).FindAllString(stripComments(string(js)), -1) {
		if sentence.MatchString(lit) && lit != `"use strict"` {
			t.Errorf("screen.js: %s looks like text for people: it belongs in the catalogue", lit)
		}
		for _, r := range lit {
			if r > 0x7f && r != '\u2022' { // the bullet that masks a staff PIN
				t.Errorf("screen.js: %s has a non-ASCII character", lit)
			}
		}
	}
}

// stripComments drops // comments (the script's explanations).
func stripComments(js string) string {
	var b strings.Builder
	for _, line := range strings.Split(js, "\n") {
		if i := strings.Index(line, "// "); i >= 0 && !strings.Contains(line[:i], `"`) {
			line = line[:i]
		}
		if strings.HasPrefix(strings.TrimSpace(line), "//") {
			continue
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

func TestPageShowsTheEngineStateInTheChosenLanguage(t *testing.T) {
	src := &fakeSource{}
	s := newTestScreen(t, config.KindLocker, src, nil)
	cat, err := NewCatalog()
	require.NoError(t, err)
	for _, st := range engine.States() {
		src.sc = engine.Screen{State: st, Compartment: 3, Lang: "nl", Seq: 9, At: time.Now()}
		code, body := get(t, s, "/?lang=de")
		require.Equal(t, http.StatusOK, code)
		require.Contains(t, body, `<html lang="de"`)
		id := firstView(src.sc, time.Now(), time.Minute)
		require.Regexp(t, `<section id="`+id+`" [^>]*aria-labelledby="h-[a-z_-]+">`, body, "%s shown", st)
		all := regexp.MustCompile(`<section [^>]*>`).FindAllString(body, -1)
		hidden := regexp.MustCompile(`<section [^>]* hidden>`).FindAllString(body, -1)
		require.Equal(t, 1, len(all)-len(hidden), "%s: one section shown", st)
		msg, _ := cat.Text("state."+st, "de")
		if strings.HasPrefix(id, "s-") {
			// No lock's end ({t}) on this screen: said as nothing.
			require.Contains(t, body, html.EscapeString(strings.ReplaceAll(fill(msg, 3, 10, ""), " {t}", "")), st)
		}
	}
	// An unknown language is the default one; the page is never cached
	// by a proxy and allows no inline script.
	src.sc = engine.Screen{State: engine.StateIdle, Seq: 1}
	mux := http.NewServeMux()
	s.Register(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?lang=xx", nil))
	require.Contains(t, rec.Body.String(), `<html lang="nl"`)
	require.Contains(t, rec.Header().Get("Content-Security-Policy"), "script-src 'self'")
	require.Equal(t, s.Build(), rec.Header().Get("X-Kluis-Build"))
	require.Len(t, s.Build(), 16)

	code, body := get(t, s, "/screen/static/screen.css")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, ".keypad")
	code, _ = get(t, s, "/screen/static/nothing.js")
	require.Equal(t, http.StatusNotFound, code)
	code, _ = get(t, s, "/elsewhere")
	require.Equal(t, http.StatusNotFound, code)
}

func TestLockedOutSaysWhenToTryAgain(t *testing.T) {
	now := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	src := &fakeSource{}
	s, err := New(Options{Source: src, Config: testConfig(t, config.KindLocker), Clock: func() time.Time { return now }})
	require.NoError(t, err)
	for _, tc := range []struct {
		retry int
		want  string
	}{{901, "in 15\u00a0minutes"}, {61, "in 1\u00a0minute"}, {5, "in 1\u00a0minute"}, {3601, "in 60\u00a0minutes"}} {
		src.sc = engine.Screen{State: engine.StateLockedOut, Seq: 2, At: now, RetryAfterS: tc.retry}
		_, body := get(t, s, "/?lang=en")
		doc, err := html.Parse(strings.NewReader(body))
		require.NoError(t, err)
		require.Contains(t, visibleText(doc, "s-locked_out"), tc.want, "retry after %d s", tc.retry)
		require.Contains(t, body, fmt.Sprintf(`data-retry-until="%d"`, now.Add(time.Duration(tc.retry)*time.Second).UnixMilli()))
	}
}

// visibleText is the text of the element with id, without hidden
// elements.
func visibleText(doc *html.Node, id string) string {
	var b strings.Builder
	var find func(n *html.Node) *html.Node
	find = func(n *html.Node) *html.Node {
		for _, a := range n.Attr {
			if a.Key == "id" && a.Val == id {
				return n
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if f := find(c); f != nil {
				return f
			}
		}
		return nil
	}
	var text func(n *html.Node)
	text = func(n *html.Node) {
		for _, a := range n.Attr {
			if a.Key == "hidden" {
				return
			}
		}
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			text(c)
		}
	}
	if n := find(doc); n != nil {
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			text(c)
		}
	}
	return b.String()
}

func TestDoorLeftOpenScreen(t *testing.T) {
	now := time.Now()
	for _, st := range []string{engine.StateOpen, engine.StateLoading, engine.StateRetrieving, engine.StateTestOpen} {
		sc := engine.Screen{State: st, Compartment: 4, At: now.Add(-2 * time.Minute)}
		require.Equal(t, "s-left_open", firstView(sc, now, time.Minute), st)
		require.Equal(t, "s-"+st, firstView(sc, now, 3*time.Minute), st)
	}
	sc := engine.Screen{State: engine.StateNotCollected, Compartment: 4, At: now.Add(-time.Hour)}
	require.Equal(t, "s-not_collected", firstView(sc, now, time.Minute), "only a door being used")

	src := &fakeSource{sc: engine.Screen{State: engine.StateOpen, Compartment: 2, At: now.Add(-3 * time.Minute), Seq: 4}}
	s := newTestScreen(t, config.KindLocker, src, nil)
	_, body := get(t, s, "/?lang=en")
	require.Regexp(t, `<section id="s-left_open" [^>]*aria-labelledby="h-left_open">`, body)
	require.Contains(t, body, "Please close the door of compartment\u00a0<span data-fill=\"n\">2</span>.")
	require.Regexp(t, `<figure id="drawing" class="drawing">`, body, "the drawing shows which door")
}

// TestRoles: the staff menu offers each role what it may do (counter
// staff load and retrieve, technicians the diagnostics, admins both,
// everyone the lockout lift), and the diagnostics answer 403 to anyone
// but a technician or an admin logged in at the device.
func TestRoles(t *testing.T) {
	src := &fakeSource{}
	s := newTestScreen(t, config.KindLocker, src, markerCatalog(t))
	now := time.Now()
	for _, tc := range []struct {
		role        wire.StaffRole
		staff, tech bool
	}{
		{wire.RoleStaff, true, false},
		{"", true, false}, // a backend that names no role: counter staff
		{wire.RoleTechnician, false, true},
		{wire.RoleAdmin, true, true},
	} {
		src.sc = engine.Screen{State: engine.StateStaff, Lang: "en", Staff: "An", StaffRole: tc.role, Seq: 2, At: now}
		code, body := get(t, s, "/?lang=en")
		require.Equal(t, http.StatusOK, code, body)
		doc, err := html.Parse(strings.NewReader(body))
		require.NoError(t, err)
		shown := map[string]bool{}
		var walk func(n *html.Node)
		walk = func(n *html.Node) {
			if n.Type == html.ElementNode && n.Data == "button" {
				act, hidden, inMenu := "", false, false
				for _, a := range n.Attr {
					switch a.Key {
					case "data-act":
						act = a.Val
					case "hidden":
						hidden = true
					case "data-roles":
						inMenu = true
					}
				}
				if inMenu || act == "unlock" {
					shown[act] = !hidden
				}
			}
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				walk(c)
			}
		}
		walk(doc)
		want := map[string]bool{"load": tc.staff, "retrieve": tc.staff, "tech": tc.tech, "unlock": true}
		require.Equal(t, want, shown, "role %q", tc.role)

		code, _ = get(t, s, "/screen/tech?lang=en")
		if tc.tech {
			require.Equal(t, http.StatusOK, code, "role %q", tc.role)
		} else {
			require.Equal(t, http.StatusForbidden, code, "role %q", tc.role)
		}
	}
	src.sc = engine.Screen{State: engine.StateIdle, Lang: "en", Seq: 3, At: now}
	code, _ := get(t, s, "/screen/tech")
	require.Equal(t, http.StatusForbidden, code, "nobody logged in")
}

// The screens of a locked staff login (the 15-minute lock, the daily cap)
// say so in nl, fr, en and de, each its own text and neither the plain
// refusal, under a title of their own, with when the lock ends in the
// device's local time.
func TestStaffLockScreensInEveryLanguage(t *testing.T) {
	src := &fakeSource{}
	s := newTestScreen(t, config.KindLocker, src, nil)
	cat, err := NewCatalog()
	require.NoError(t, err)
	want := map[string]map[string]string{
		engine.StateStaffLocked: {
			"nl": "Te veel mislukte aanmeldingen op dit toestel. Aanmelden is hier geblokkeerd {t}.",
			"en": "Too many failed logins on this machine. Login here is blocked {t}.",
		},
		engine.StateStaffLockedToday: {
			"fr": "Trop de connexions échouées sur cet appareil aujourd'hui. La connexion est bloquée ici {t}. D'ici là, utilisez la console du personnel ou appelez le service desk.",
			"de": "Zu viele fehlgeschlagene Anmeldungen an diesem Gerät heute. Die Anmeldung ist hier {t} gesperrt. Nutzen Sie bis dahin die Personalkonsole oder rufen Sie den Servicedesk an.",
		},
	}
	until := time.Now().Add(20 * time.Hour).Truncate(time.Second)
	for _, st := range []string{engine.StateStaffLocked, engine.StateStaffLockedToday} {
		for _, l := range Langs() {
			msg, err := cat.Text("state."+st, l)
			require.NoError(t, err, "%s in %s", st, l)
			if w, ok := want[st][l]; ok {
				require.Equal(t, w, msg, "%s in %s", st, l)
			}
			require.Contains(t, msg, "{t}", "%s in %s says when the lock ends", st, l)
			refused, _ := cat.Text("state."+engine.StateStaffDenied, l)
			require.NotEqual(t, refused, msg, "%s in %s", st, l)
			other := engine.StateStaffLocked
			if st == other {
				other = engine.StateStaffLockedToday
			}
			o, _ := cat.Text("state."+other, l)
			require.NotEqual(t, o, msg, "%s in %s", st, l)

			src.sc = engine.Screen{State: st, Lang: l, Seq: 1, At: time.Now(), Until: &until}
			code, body := get(t, s, "/?lang="+l)
			require.Equal(t, http.StatusOK, code)
			filled := strings.ReplaceAll(msg, "{t}", engine.UntilText(l, until, time.Now()))
			require.Contains(t, body, html.EscapeString(filled), "%s in %s", st, l)
			require.NotContains(t, body, "{t}", "%s in %s", st, l)
			title, _ := cat.Text("title.staff_locked", l)
			require.Contains(t, body, html.EscapeString(title), "%s in %s", st, l)
		}
	}
}

// TestFrenchPunctuationStaysWithItsWord: every French text of the screen
// (the engine's messages too) has a non-breaking space (U+00A0) before
// : ? ! and ;, never a plain one, where a line could break and start
// with "?" ("Aide" / "? Appelez le 1777.").
func TestFrenchPunctuationStaysWithItsWord(t *testing.T) {
	cat, err := NewCatalog()
	if err != nil {
		t.Fatal(err)
	}
	plain := regexp.MustCompile(` [:?!;]`)
	for _, k := range cat.Keys() {
		s, err := cat.Text(k, "fr")
		if err != nil {
			t.Fatal(err)
		}
		if plain.MatchString(s) {
			t.Errorf("fr %s: %q has a plain space before a punctuation mark", k, s)
		}
	}
}

// TestHelpNumberStaysWithItsWord: in every language, every text of the
// screen (the engine's messages too) that names the help line 1777 has a
// non-breaking space before it, never a plain one, so that "Appelez le"
// and "1777" cannot end up on two lines; German keeps "1777 an" together
// too.
func TestHelpNumberStaysWithItsWord(t *testing.T) {
	cat, err := NewCatalog()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range cat.Keys() {
		for _, l := range Langs() {
			s, err := cat.Text(k, l)
			if err != nil {
				t.Fatal(err)
			}
			n += strings.Count(s, "1777")
			if strings.Contains(s, " 1777") || strings.Contains(s, "1777 an") {
				t.Errorf("%s %s: %q has a plain space beside 1777", l, k, s)
			}
		}
	}
	if n == 0 {
		t.Fatal("no text names the help line")
	}
}
