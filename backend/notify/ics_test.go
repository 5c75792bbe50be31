package notify

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// icsProp is one content line of a calendar, unfolded and unescaped.
type icsProp struct {
	Name   string
	Params map[string]string
	Value  string // TEXT values unescaped
}

// icsComponent is a BEGIN/END block.
type icsComponent struct {
	Name  string
	Props []icsProp
	Subs  []*icsComponent
}

func (c *icsComponent) get(name string) (icsProp, bool) {
	for _, p := range c.Props {
		if p.Name == name {
			return p, true
		}
	}
	return icsProp{}, false
}

var (
	icsLineRe  = regexp.MustCompile(`^([A-Z][A-Z0-9-]*)((?:;[A-Z][A-Z0-9-]*=(?:"[^"]*"|[^;:,"]*))*):(.*)$`)
	icsParamRe = regexp.MustCompile(`;([A-Z][A-Z0-9-]*)=("[^"]*"|[^;:,"]*)`)
	icsUTCRe   = regexp.MustCompile(`^\d{8}T\d{6}Z$`)
	icsDateRe  = regexp.MustCompile(`^\d{8}$`)
)

// textProps have TEXT values (RFC 5545 3.3.11).
var textProps = map[string]bool{"SUMMARY": true, "DESCRIPTION": true, "LOCATION": true}

// parseICS is a strict reader of what RFC 5545 asks of a writer: CRLF
// line ends only, physical lines of at most 75 octets, valid UTF-8 in
// every physical line (folding never splits a character), continuation
// lines starting with one space, well-formed content lines, balanced
// BEGIN/END, escaped TEXT values, and the required properties.
func parseICS(t *testing.T, raw []byte) *icsComponent {
	t.Helper()
	s := string(raw)
	require.True(t, strings.HasSuffix(s, "\r\n"), "ends with CRLF")
	physical := strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n")
	var logical []string
	for i, l := range physical {
		require.NotContains(t, l, "\n", "line %d: a bare LF", i+1)
		require.NotContains(t, l, "\r", "line %d: a bare CR", i+1)
		require.LessOrEqual(t, len(l), 75, "line %d is %d octets: %q", i+1, len(l), l)
		require.True(t, utf8.ValidString(l), "line %d splits a UTF-8 character: %q", i+1, l)
		if strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") {
			require.NotEmpty(t, logical, "line %d continues nothing", i+1)
			logical[len(logical)-1] += l[1:]
			continue
		}
		logical = append(logical, l)
	}
	root := &icsComponent{}
	stack := []*icsComponent{root}
	for _, l := range logical {
		m := icsLineRe.FindStringSubmatch(l)
		require.NotNil(t, m, "not a content line: %q", l)
		p := icsProp{Name: m[1], Params: map[string]string{}, Value: m[3]}
		for _, pm := range icsParamRe.FindAllStringSubmatch(m[2], -1) {
			p.Params[pm[1]] = strings.Trim(pm[2], `"`)
		}
		top := stack[len(stack)-1]
		switch p.Name {
		case "BEGIN":
			c := &icsComponent{Name: p.Value}
			top.Subs = append(top.Subs, c)
			stack = append(stack, c)
			continue
		case "END":
			require.Equal(t, top.Name, p.Value, "END:%s closes %s", p.Value, top.Name)
			stack = stack[:len(stack)-1]
			continue
		}
		if textProps[p.Name] {
			p.Value = unescapeText(t, p.Value)
		}
		top.Props = append(top.Props, p)
	}
	require.Len(t, stack, 1, "unbalanced BEGIN/END")
	require.Len(t, root.Subs, 1)
	cal := root.Subs[0]
	require.Equal(t, "VCALENDAR", cal.Name)
	v, _ := cal.get("VERSION")
	require.Equal(t, "2.0", v.Value)
	_, ok := cal.get("PRODID")
	require.True(t, ok, "PRODID")
	require.Len(t, cal.Subs, 1)
	ev := cal.Subs[0]
	require.Equal(t, "VEVENT", ev.Name)
	for _, name := range []string{"UID", "DTSTAMP", "DTSTART", "SUMMARY"} {
		_, ok := ev.get(name)
		require.True(t, ok, "VEVENT needs %s", name)
	}
	stamp, _ := ev.get("DTSTAMP")
	require.Regexp(t, icsUTCRe, stamp.Value)
	require.Len(t, ev.Subs, 1)
	al := ev.Subs[0]
	require.Equal(t, "VALARM", al.Name)
	for _, name := range []string{"ACTION", "TRIGGER", "DESCRIPTION"} {
		_, ok := al.get(name)
		require.True(t, ok, "VALARM needs %s", name)
	}
	return cal
}

func unescapeText(t *testing.T, s string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			require.Less(t, i+1, len(s), "a lone backslash ends %q", s)
			i++
			switch s[i] {
			case '\\', ';', ',':
				b.WriteByte(s[i])
			case 'n', 'N':
				b.WriteByte('\n')
			default:
				t.Fatalf("unknown escape \\%c in %q", s[i], s)
			}
		case ';', ',':
			t.Fatalf("unescaped %c in TEXT value %q", c, s)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func TestCalendarAllDayLastDayWithReminder(t *testing.T) {
	for _, lang := range Languages {
		d := sampleData()
		raw, err := Calendar(lang, d, CalendarUID("4b1c9e8e-0000-4000-8000-000000000001", "kluis.kortrijk.be"))
		require.NoError(t, err)
		cal := parseICS(t, raw)
		ev := cal.Subs[0]
		uid, _ := ev.get("UID")
		require.Equal(t, CalendarUID("4b1c9e8e-0000-4000-8000-000000000001", "kluis.kortrijk.be"), uid.Value)
		require.NotContains(t, uid.Value, "4b1c9e8e", "the UID does not show the document id")
		start, _ := ev.get("DTSTART")
		end, _ := ev.get("DTEND")
		require.Equal(t, "DATE", start.Params["VALUE"])
		require.Equal(t, "20261215", start.Value, "the last day: Tuesday 15 December (deadline Wednesday 00:00)")
		require.Equal(t, "20261216", end.Value)
		stamp, _ := ev.get("DTSTAMP")
		require.Equal(t, "20261204T170000Z", stamp.Value)
		sum, _ := ev.get("SUMMARY")
		require.Equal(t, lang, sum.Params["LANGUAGE"])
		require.Contains(t, sum.Value, "eID")
		loc, _ := ev.get("LOCATION")
		require.Equal(t, "Stadhuis Kortrijk, Grote Markt 54, 8500 Kortrijk", loc.Value, "commas escaped and read back")
		desc, _ := ev.get("DESCRIPTION")
		require.Contains(t, desc.Value, FormatDeadline(lang, d.Deadline, d.Now))
		require.Contains(t, desc.Value, d.Directions)
		require.Contains(t, desc.Value, "\n", "line breaks kept")
		require.Contains(t, desc.Value, "1777")
		require.NotContains(t, desc.Value, "123 456 789", "the calendar never holds the PIN")
		require.NotContains(t, string(raw), "123456789")
		url, _ := ev.get("URL")
		require.Equal(t, d.TrackURL, url.Value)
		al := ev.Subs[0]
		tr, _ := al.get("TRIGGER")
		require.Equal(t, "-PT15H", tr.Value, "09:00 the day before the all-day event")
		act, _ := al.get("ACTION")
		require.Equal(t, "DISPLAY", act.Value)
	}
}

func TestCalendarTimedDeadline(t *testing.T) {
	d := sampleData()
	d.Deadline = brussels(2026, 12, 16, 14, 30)
	raw, err := Calendar("en", d, "u@kluis")
	require.NoError(t, err)
	ev := parseICS(t, raw).Subs[0]
	start, _ := ev.get("DTSTART")
	end, _ := ev.get("DTEND")
	require.Equal(t, "20261216T123000Z", start.Value)
	require.Equal(t, "20261216T133000Z", end.Value, "ends at the deadline (14:30 in Brussels)")
	tr, _ := ev.Subs[0].get("TRIGGER")
	require.Equal(t, "-P1D", tr.Value)

	_, err = Calendar("en", MessageData{}, "u@kluis")
	require.ErrorIs(t, err, ErrInvalid)
	_, err = Calendar("en", d, "u\r\nX-EVIL:1")
	require.ErrorIs(t, err, ErrInvalid)
}

// Folding at 75 octets never splits a character, and every character
// that needs it is escaped, whatever the data.
func TestCalendarFoldingAndEscaping(t *testing.T) {
	d := sampleData()
	d.SiteName = `Stadhuis; "Kortrijk", hal\west`
	d.Directions = strings.Repeat("Één één, Straße; ", 28) // 500 characters, many of two octets
	for shift := 0; shift < 4; shift++ {
		d.Sender = strings.Repeat("x", shift)
		d.FirstName = strings.Repeat("é", shift)
		raw, err := Calendar("fr", d, "u@kluis")
		require.NoError(t, err)
		ev := parseICS(t, raw).Subs[0]
		desc, _ := ev.get("DESCRIPTION")
		require.Contains(t, desc.Value, strings.TrimSpace(d.Directions), "read back exactly")
		loc, _ := ev.get("LOCATION")
		require.Equal(t, d.SiteName+", "+d.SiteAddress, loc.Value)
		folded := 0
		for _, l := range strings.Split(string(raw), "\r\n") {
			if strings.HasPrefix(l, " ") {
				folded++
			}
		}
		require.Greater(t, folded, 5, "long values are folded")
	}
	// The writer itself: 75 octets per line, the space counted.
	var w icsWriter
	w.line(strings.Repeat("a", 74) + "é" + strings.Repeat("b", 200))
	for i, l := range strings.Split(strings.TrimSuffix(w.b.String(), "\r\n"), "\r\n") {
		require.LessOrEqual(t, len(l), 75, fmt.Sprintf("line %d", i))
		require.True(t, utf8.ValidString(l))
	}
	require.Equal(t, strings.Repeat("a", 74)+"é"+strings.Repeat("b", 200), strings.ReplaceAll(strings.TrimSuffix(w.b.String(), "\r\n"), "\r\n ", ""))
}
