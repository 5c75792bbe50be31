package screen

import (
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"kluis/controller/config"
)

// hoursLines are the counter's opening hours (kiosk.counter_hours) in
// lang as the help screens show them: one line per run of days with the
// same hours, "Maandag tot en met vrijdag: 08:30 tot 12:30 en 13:30 tot
// 16:00", "Zaterdag en zondag: gesloten"; nil without hours.
func hoursLines(c *Catalog, week [][]config.Span, lang string) ([]string, error) {
	if week == nil {
		return nil, nil
	}
	text := func(key string, ab ...string) (string, error) {
		t, err := c.Text(key, lang)
		if len(ab) == 2 {
			t = strings.NewReplacer("{a}", ab[0], "{b}", ab[1]).Replace(t)
		}
		return t, err
	}
	// and joins parts: "a", "a en b", "a, b en c".
	and := func(parts []string) (string, error) {
		if len(parts) == 1 {
			return parts[0], nil
		}
		return text("hours.and", strings.Join(parts[:len(parts)-1], ", "), parts[len(parts)-1])
	}
	var lines []string
	for i := 0; i < len(week); {
		j := i
		for j+1 < len(week) && slices.Equal(week[j+1], week[i]) {
			j++
		}
		first, err := text("day." + config.Weekdays[i])
		if err != nil {
			return nil, err
		}
		last, err := text("day." + config.Weekdays[j])
		if err != nil {
			return nil, err
		}
		days := first
		switch {
		case j == i+1:
			days, err = text("hours.and", first, last)
		case j > i+1:
			days, err = text("hours.days", first, last)
		}
		if err != nil {
			return nil, err
		}
		var spans []string
		for _, sp := range week[i] {
			from, to, _ := strings.Cut(sp.String(), "-")
			t, err := text("hours.span", from, to)
			if err != nil {
				return nil, err
			}
			spans = append(spans, t)
		}
		open, err := text("hours.closed")
		if err != nil {
			return nil, err
		}
		if len(spans) > 0 {
			if open, err = and(spans); err != nil {
				return nil, err
			}
		}
		line, err := text("hours.line", days, open)
		if err != nil {
			return nil, err
		}
		r, n := utf8.DecodeRuneInString(line)
		lines = append(lines, string(unicode.ToUpper(r))+line[n:])
		i = j + 1
	}
	return lines, nil
}

// closedNote is what the help screens say of the counter's closed dates
// (kiosk.counter_closed) at now, in now's location (the device's local
// time), in lang: the closed dates from today to the counter's next
// opening on which its weekly hours would have it open (today only while
// some of today's hours are still ahead), then that opening, "Het loket
// is gesloten op 25-12. Het is weer open op maandag 28-12 vanaf 08:30.";
// "" when no closed date comes first (the weekly hours say it all) or the
// counter is open now. Dates are written as UntilText writes them (nl
// "25-12", fr and en "25/12", de "25.12."). fresh is when the note may
// change: the next of today's opening and closing times still ahead, or
// midnight.
func closedNote(c *Catalog, week [][]config.Span, closed []time.Time, lang string, now time.Time) (note string, fresh time.Time, err error) {
	y, m, d := now.Date()
	loc := now.Location()
	fresh = time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	if week == nil || len(closed) == 0 {
		return "", fresh, nil
	}
	mins := now.Hour()*60 + now.Minute()
	spansOn := func(day time.Time) []config.Span { return week[(int(day.Weekday())+6)%7] }
	for _, sp := range spansOn(now) {
		for _, b := range []int{sp.From, sp.To} {
			if t := time.Date(y, m, d, 0, b, 0, 0, loc); b > mins && t.Before(fresh) {
				fresh = t
			}
		}
	}
	shut := map[string]bool{}
	for _, c := range closed {
		shut[c.Format(time.DateOnly)] = true
	}
	var skipped []time.Time
	var next time.Time
	// A year and a week ahead at most: every closed date is within it.
	for k := 0; k <= 372 && next.IsZero(); k++ {
		day := time.Date(y, m, d+k, 0, 0, 0, 0, loc)
		spans := spansOn(day)
		if shut[day.Format(time.DateOnly)] {
			if len(spans) > 0 && (k > 0 || spans[len(spans)-1].To > mins) {
				skipped = append(skipped, day)
			}
			continue
		}
		for _, sp := range spans {
			if k == 0 && sp.From <= mins && mins < sp.To {
				return "", fresh, nil // open now
			}
			if k > 0 || sp.From > mins {
				next = time.Date(y, m, d+k, 0, sp.From, 0, 0, loc)
				break
			}
		}
	}
	if len(skipped) == 0 {
		return "", fresh, nil
	}
	text := func(key string, ab ...string) (string, error) {
		t, err := c.Text(key, lang)
		if len(ab) == 2 {
			t = strings.NewReplacer("{a}", ab[0], "{b}", ab[1]).Replace(t)
		}
		return t, err
	}
	date := func(t time.Time) string {
		switch lang {
		case "nl":
			return t.Format("02-01")
		case "de":
			return t.Format("02.01.")
		}
		return t.Format("02/01")
	}
	dates := make([]string, len(skipped))
	for i, s := range skipped {
		dates[i] = date(s)
	}
	key, list := "closed.on.one", dates[0]
	if len(dates) > 1 {
		key = "closed.on.many"
		if list, err = text("hours.and", strings.Join(dates[:len(dates)-1], ", "), dates[len(dates)-1]); err != nil {
			return "", fresh, err
		}
	}
	if note, err = text(key, list, ""); err != nil {
		return "", fresh, err
	}
	if next.IsZero() {
		return note, fresh, nil
	}
	dayName, err := text("day." + config.Weekdays[(int(next.Weekday())+6)%7])
	if err != nil {
		return "", fresh, err
	}
	sep := " "
	if lang == "de" {
		sep = ", "
	}
	again, err := text("closed.next", dayName+sep+date(next), next.Format("15:04"))
	if err != nil {
		return "", fresh, err
	}
	return note + " " + again, fresh, nil
}
