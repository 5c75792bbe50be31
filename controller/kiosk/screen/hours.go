package screen

import (
	"slices"
	"strings"
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
