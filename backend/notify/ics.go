package notify

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// CalendarUID is the calendar entry's UID for a document: stable, so that a
// calendar program updates the one entry when the reminder brings it again,
// and not the document id itself. host names the issuer ("kluis" when empty).
func CalendarUID(documentID, host string) string {
	if host == "" {
		host = "kluis"
	}
	sum := sha256.Sum256([]byte("kluis-calendar\x00" + documentID))
	return "pickup-" + hex.EncodeToString(sum[:16]) + "@" + host
}

// hostOf returns the host of a URL ("" when it has none).
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// Calendar writes the iCalendar file (RFC 5545) that goes with the ready
// and reminder messages: one VEVENT for the last day of the pickup period
// with a VALARM the day before. A deadline at midnight (the usual case) is
// an all-day event on the last day, its reminder at 09:00 the day before; a
// deadline at another time is a one-hour event ending at the deadline, its
// reminder a day before. uid identifies the entry (see CalendarUID); d.Now
// is the DTSTAMP. Lines end in CRLF and are folded at 75 octets.
func Calendar(lang string, d MessageData, uid string) ([]byte, error) {
	return calendar(catalogue, lang, d, uid)
}

func calendar(c cat, lang string, d MessageData, uid string) ([]byte, error) {
	if d.Deadline.IsZero() || uid == "" || strings.ContainsAny(uid, "\r\n") {
		return nil, fmt.Errorf("notify: calendar needs a deadline and a UID: %w", ErrInvalid)
	}
	t := newTr(c, lang, d.Location, d.Now)
	v := baseVars(t, d, "where.")
	desc := []string{t.s("mail.until", &v), t.s("mail.after", nil), ""}
	desc = append(desc, t.s("mail.where_title", nil))
	desc = append(desc, nonEmpty(d.SiteName, d.SiteAddress, v.Place, d.Directions)...)
	desc = append(desc, "", t.s("mail.bring_title", nil), t.s("next.bring", nil), "")
	if d.TrackURL != "" {
		desc = append(desc, t.s("mail.track_title", nil), d.TrackURL, "")
	}
	desc = append(desc, t.s("mail.help", nil))

	var w icsWriter
	w.line("BEGIN:VCALENDAR")
	w.line("VERSION:2.0")
	w.line("PRODID:-//Kluis//Kluis notify//EN")
	w.line("CALSCALE:GREGORIAN")
	w.line("METHOD:PUBLISH")
	w.line("BEGIN:VEVENT")
	w.line("UID:" + uid)
	w.line("DTSTAMP:" + icsUTC(t.now))
	w.line("SEQUENCE:0")
	dl := d.Deadline.In(t.loc)
	trigger := "-P1D"
	if atMidnight(dl) {
		last := lastDay(dl)
		w.line("DTSTART;VALUE=DATE:" + last.Format("20060102"))
		w.line("DTEND;VALUE=DATE:" + dl.Format("20060102"))
		trigger = "-PT15H" // 09:00 the day before the all-day event
	} else {
		w.line("DTSTART:" + icsUTC(dl.Add(-time.Hour)))
		w.line("DTEND:" + icsUTC(dl))
	}
	w.line("SUMMARY;LANGUAGE=" + t.lang + ":" + icsText(t.s("ics.summary", &v)))
	if loc := strings.Join(nonEmpty(d.SiteName, d.SiteAddress), ", "); loc != "" {
		w.line("LOCATION;LANGUAGE=" + t.lang + ":" + icsText(loc))
	}
	w.line("DESCRIPTION;LANGUAGE=" + t.lang + ":" + icsText(strings.Join(desc, "\n")))
	if u, err := url.Parse(d.TrackURL); err == nil && (u.Scheme == "https" || u.Scheme == "http") && !strings.ContainsAny(d.TrackURL, "\r\n\" ") {
		w.line("URL:" + d.TrackURL)
	}
	w.line("STATUS:CONFIRMED")
	w.line("TRANSP:TRANSPARENT")
	w.line("BEGIN:VALARM")
	w.line("ACTION:DISPLAY")
	w.line("DESCRIPTION;LANGUAGE=" + t.lang + ":" + icsText(t.s("ics.alarm", &v)))
	w.line("TRIGGER:" + trigger)
	w.line("END:VALARM")
	w.line("END:VEVENT")
	w.line("END:VCALENDAR")
	if t.err != nil {
		return nil, t.err
	}
	return []byte(w.b.String()), nil
}

func icsUTC(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// icsText escapes a TEXT value (RFC 5545 3.3.11): backslash, semicolon,
// comma and line breaks; other control characters are dropped.
func icsText(s string) string {
	var b strings.Builder
	for _, r := range strings.ReplaceAll(s, "\r\n", "\n") {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == ';':
			b.WriteString(`\;`)
		case r == ',':
			b.WriteString(`\,`)
		case r == '\n':
			b.WriteString(`\n`)
		case r < 0x20 || r == 0x7f:
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// icsWriter writes content lines folded at 75 octets (RFC 5545 3.1): a
// longer line continues on the next after CRLF and one space, never
// splitting a UTF-8 character.
type icsWriter struct{ b strings.Builder }

func (w *icsWriter) line(s string) {
	limit := 75
	for len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		w.b.WriteString(s[:cut] + "\r\n ")
		s = s[cut:]
		limit = 74 // the leading space counts
	}
	w.b.WriteString(s + "\r\n")
}
