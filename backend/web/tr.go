package web

import (
	"fmt"
	"strings"
	"time"

	"kluis/backend/notify"
)

// Languages are the console's languages; the first is the default
// (Kortrijk's staff read Dutch first).
var Languages = []string{"nl", "fr", "en", "de"}

// tr renders catalogue texts in one language.
type tr struct {
	lang string
	loc  *time.Location
	now  time.Time
	cat  map[string]string
}

func (w *Web) tr(lang string) *tr {
	c, ok := catalogue[lang]
	if !ok {
		lang, c = Languages[0], catalogue[Languages[0]]
	}
	return &tr{lang: lang, loc: w.o.Location, now: w.o.Clock(), cat: c}
}

// S is the text of key; a missing key (the tests rule it out) shows as
// ⟦key⟧ so that it cannot go unnoticed.
func (t *tr) S(key string) string {
	if s, ok := t.cat[key]; ok {
		return s
	}
	return "⟦" + key + "⟧"
}

// F is the text of key with its {name} placeholders filled from kv:
// name, value, name, value...
func (t *tr) F(key string, kv ...any) string {
	return fill(t.S(key), kv...)
}

func fill(s string, kv ...any) string {
	if len(kv) == 0 || !strings.Contains(s, "{") {
		return s
	}
	pairs := make([]string, 0, len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		pairs = append(pairs, "{"+fmt.Sprint(kv[i])+"}", fmt.Sprint(kv[i+1]))
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// Time is a moment as people read it in this language: the clock time
// today, the date and clock time otherwise ("" for a zero time); the clock
// time is written the same way in both (fmt.clock, the end of
// fmt.datetime: 24 hours, hours and minutes).
func (t *tr) Time(ts time.Time) string {
	if ts.IsZero() {
		return ""
	}
	ts = ts.In(t.loc)
	if y, m, d := ts.Date(); t.now.In(t.loc).Year() == y && t.now.In(t.loc).Month() == m && t.now.In(t.loc).Day() == d {
		return ts.Format(t.S("fmt.clock"))
	}
	return ts.Format(t.S("fmt.datetime"))
}

// TimeP is Time of a pointer ("" for nil).
func (t *tr) TimeP(ts *time.Time) string {
	if ts == nil {
		return ""
	}
	return t.Time(*ts)
}

// Deadline is a pickup deadline as the citizen's messages word it ("" for
// nil): one at midnight is the end of the day before ("tot en met dinsdag
// 15 december (tot middernacht)"), never "16-12-2026 00:00", which reads
// as the 16th. The words are notify's catalogue's, shared, not copied;
// the time of day of a deadline that is not at midnight is written as
// every other time of the console (fmt.clock: "tot dinsdag 15 december om
// 20:14", not the e-mail's "20.14 uur" beside "11:30" on the same page).
func (t *tr) Deadline(ts *time.Time) string {
	if ts == nil {
		return ""
	}
	return notify.FormatDeadlineClock(t.lang, *ts, t.now, t.loc, t.S("fmt.clock"))
}

// Date is a calendar day ("" for nil).
func (t *tr) Date(ts *time.Time) string {
	if ts == nil {
		return ""
	}
	return ts.UTC().Format(t.S("fmt.date"))
}

// ISO is the machine-readable form of a moment, for <time datetime>.
func (t *tr) ISO(ts time.Time) string {
	if ts.IsZero() {
		return ""
	}
	return ts.UTC().Format(time.RFC3339)
}

// Ago says how long ago ts was, roughly ("" for a zero time).
func (t *tr) Ago(ts time.Time) string {
	if ts.IsZero() {
		return ""
	}
	d := t.now.Sub(ts)
	switch {
	case d < 0:
		d = 0
		fallthrough
	case d < time.Minute:
		return t.F("ago.seconds", "n", int(d.Seconds()))
	case d < time.Hour:
		return t.F("ago.minutes", "n", int(d.Minutes()))
	case d < 48*time.Hour:
		return t.F("ago.hours", "n", int(d.Hours()))
	}
	return t.F("ago.days", "n", int(d.Hours()/24))
}

// Lang is the language code.
func (t *tr) Lang() string { return t.lang }

// Text is the catalogue's text of key in lang with its {name} placeholders
// filled from kv (name, value, ...); "" when the key does not exist. For
// tests and tools that check what the pages say.
func Text(lang, key string, kv ...any) string {
	s, ok := catalogue[lang][key]
	if !ok {
		return ""
	}
	return fill(s, kv...)
}
