package notify

import (
	"fmt"
	"strings"
	"text/template"
	"time"
	_ "time/tzdata" // Europe/Brussels without system tzdata
)

// vars are the placeholders catalogue texts may use. Every value is plain
// text; HTML escaping happens when a text is put in a page.
type vars struct {
	// FirstName of the holder.
	FirstName string
	// Doc and DocShort name the document ("elektronische identiteitskaart
	// (eID)", "eID").
	Doc, DocShort string
	// SiteName and SiteAddress say where the device stands.
	SiteName, SiteAddress string
	// DeviceName is the device's name on its front; Place is the where.*
	// or sms.* text for it.
	DeviceName, Place string
	// Compartment is the 1-based compartment number.
	Compartment int
	// Until is the deadline as people say it ("tot en met dinsdag 15
	// december (tot middernacht)").
	Until string
	// When is the time of the event (collection), e.g. "maandag 7 december om 21.14 uur".
	When string
	// PIN is the grouped PIN.
	PIN string
	// TrackURL is the citizen's track page; Sender signs the message.
	TrackURL, Sender string

	// Parts of a date or time, for the date.* texts.
	Weekday, Month string
	Day, Year      int
	Hour, Minute   string
	// Date and Time are a formatted day and clock time, for date.at and until.*.
	Date, Time string
}

// tr renders catalogue texts in one language. The first error (a broken
// template, which the catalogue tests rule out) sticks and is reported by
// err.
type tr struct {
	c    cat
	lang string
	loc  *time.Location
	now  time.Time
	err  error
	// clockLayout, when set, writes clock times with this Go layout
	// instead of the catalogue's date.time (the staff console's one clock
	// format: FormatDeadlineClock).
	clockLayout string
}

func newTr(c cat, lang string, loc *time.Location, now time.Time) *tr {
	if loc == nil {
		loc = Brussels
	}
	if now.IsZero() {
		now = time.Now()
	}
	return &tr{c: c, lang: c.language(lang), loc: loc, now: now}
}

// language returns lang when the catalogue has it, else the first language.
func (c cat) language(lang string) string {
	if _, ok := c[lang]; ok {
		return lang
	}
	return Languages[0]
}

// raw is the text of key in lang, falling back to the first language (the
// tests make sure no key is missing).
func (c cat) raw(lang, key string) string {
	if s, ok := c[lang][key]; ok {
		return s
	}
	return c[Languages[0]][key]
}

// s renders key with v (nil: no placeholders).
func (t *tr) s(key string, v *vars) string {
	src := t.c.raw(t.lang, key)
	if !strings.Contains(src, "{{") {
		return src
	}
	if v == nil {
		v = &vars{}
	}
	out, err := execText(src, v)
	if err != nil && t.err == nil {
		t.err = fmt.Errorf("notify: %s/%s: %w", t.lang, key, err)
	}
	return out
}

func execText(src string, v any) (string, error) {
	tm, err := template.New("m").Option("missingkey=error").Parse(src)
	if err != nil {
		return "", fmt.Errorf("template %q: %w", src, err)
	}
	var b strings.Builder
	if err := tm.Execute(&b, v); err != nil {
		return "", fmt.Errorf("template %q: %w", src, err)
	}
	return b.String(), nil
}

// day writes the date of t ("dinsdag 15 december"), with the year when it
// is not the current year.
func (t *tr) day(tm time.Time) string {
	tm = tm.In(t.loc)
	v := &vars{Weekday: t.s(fmt.Sprintf("weekday.%d", tm.Weekday()), nil), Day: tm.Day(),
		Month: t.s(fmt.Sprintf("month.%d", tm.Month()), nil), Year: tm.Year()}
	if tm.Year() != t.now.In(t.loc).Year() {
		return t.s("date.day_year", v)
	}
	return t.s("date.day", v)
}

// clock writes the time of day of t ("21.14 uur").
func (t *tr) clock(tm time.Time) string {
	tm = tm.In(t.loc)
	if t.clockLayout != "" {
		return tm.Format(t.clockLayout)
	}
	return t.s("date.time", &vars{Hour: fmt.Sprintf("%02d", tm.Hour()), Minute: fmt.Sprintf("%02d", tm.Minute())})
}

// at writes a moment ("maandag 7 december om 21.14 uur").
func (t *tr) at(tm time.Time) string {
	return t.s("date.at", &vars{Date: t.day(tm), Time: t.clock(tm)})
}

// until writes a deadline as people say it. A deadline at midnight is the
// end of the day before: "tot en met dinsdag 15 december (tot middernacht)"
// for a deadline of Wednesday 16 December 00:00.
func (t *tr) until(deadline time.Time) string {
	d := deadline.In(t.loc)
	if atMidnight(d) {
		return t.s("until.midnight", &vars{Date: t.day(lastDay(d))})
	}
	return t.s("until.time", &vars{Date: t.day(d), Time: t.clock(d)})
}

// atMidnight reports whether t (in its location) is 00:00:00 sharp.
func atMidnight(t time.Time) bool {
	h, m, s := t.Clock()
	return h == 0 && m == 0 && s == 0 && t.Nanosecond() == 0
}

// lastDay is the day that ends at midnight d: noon of the day before, so
// that a daylight saving change cannot move it.
func lastDay(d time.Time) time.Time {
	y, m, day := d.Date()
	return time.Date(y, m, day-1, 12, 0, 0, 0, d.Location())
}

// doc returns the document's full and short names.
func (t *tr) doc(kind string) (full, short string) {
	if _, ok := t.c[t.lang]["doc."+kind]; !ok {
		return kind, kind
	}
	return t.s("doc."+kind, nil), t.s("docshort."+kind, nil)
}

// deviceKey is "locker" or "automaton" for the where.*, sms.* and step.* texts.
func deviceKey(kind string) string {
	if kind == "automaton" {
		return "automaton"
	}
	return "locker"
}

// Language returns lang when supported, else Dutch.
func Language(lang string) string { return catalogue.language(lang) }

// DocName is a document kind in a language ("passport" → "paspoort").
func DocName(lang, kind string) string {
	full, _ := newTr(catalogue, lang, nil, time.Time{}).doc(kind)
	return full
}

// T returns a catalogue text without placeholders in lang (Dutch when lang
// is not supported).
func T(lang, key string) string { return catalogue.raw(Language(lang), key) }

// Brussels is the default time zone of every time shown to citizens.
var Brussels = mustLoad("Europe/Brussels")

func mustLoad(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		return time.FixedZone("CET", 3600)
	}
	return l
}

// FormatTime writes t in Europe/Brussels the way the language says a
// moment, relative to now for the year: "maandag 7 december om 21.14 uur".
func FormatTime(lang string, t, now time.Time) string {
	return newTr(catalogue, lang, Brussels, now).at(t)
}

// FormatDeadline writes a deadline in Europe/Brussels as people say it,
// relative to now for the year: a deadline at midnight is the end of the
// day before ("tot en met dinsdag 15 december (tot middernacht)").
func FormatDeadline(lang string, deadline, now time.Time) string {
	return FormatDeadlineIn(lang, deadline, now, Brussels)
}

// FormatDeadlineIn is FormatDeadline in the time zone loc (nil: Brussels),
// for the staff console, which words a deadline as citizens read it.
func FormatDeadlineIn(lang string, deadline, now time.Time, loc *time.Location) string {
	return newTr(catalogue, lang, loc, now).until(deadline)
}

// FormatDeadlineClock is FormatDeadlineIn with the time of day (of a
// deadline that is not at midnight) written with the Go layout clock
// ("15:04"): the staff console words a deadline as citizens read it but
// writes every clock time of its pages in its own one format.
func FormatDeadlineClock(lang string, deadline, now time.Time, loc *time.Location, clock string) string {
	t := newTr(catalogue, lang, loc, now)
	t.clockLayout = clock
	return t.until(deadline)
}
