package config

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxDisplayName is the most characters kiosk.display_name may have.
const MaxDisplayName = 60

// validDisplayName checks kiosk.display_name: text people read on the
// screen, so no control, bidirectional-control or invisible format
// characters, not blank, at most MaxDisplayName characters.
func validDisplayName(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("must be valid UTF-8")
	}
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("must not be blank")
	}
	if n := utf8.RuneCountInString(s); n > MaxDisplayName {
		return fmt.Errorf("has %d characters, at most %d", n, MaxDisplayName)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("has the control or invisible character %U", r)
		}
	}
	return nil
}

// Weekdays are the keys of kiosk.counter_hours, Monday first.
var Weekdays = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

// Span is one opening of the counter: From to To, in minutes after
// midnight (To at most 24:00).
type Span struct{ From, To int }

// String is the span on the 24 h clock, "08:30-12:30".
func (s Span) String() string { return clock(s.From) + "-" + clock(s.To) }

func clock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

// OpeningHours returns kiosk.counter_hours by weekday, Monday first (nil
// when none are configured; a closed day has no spans), or an error
// naming the field.
func (k Kiosk) OpeningHours() ([][]Span, error) {
	if len(k.CounterHours) == 0 {
		return nil, nil
	}
	week := make([][]Span, len(Weekdays))
	idx := map[string]int{}
	for i, d := range Weekdays {
		idx[d] = i
	}
	for day, spans := range k.CounterHours {
		i, ok := idx[day]
		if !ok {
			return nil, bad("kiosk.counter_hours", "%q is not a day: use %s", day, strings.Join(Weekdays, ", "))
		}
		if len(spans) > 4 {
			return nil, bad("kiosk.counter_hours."+day, "%d spans, at most 4", len(spans))
		}
		for j, t := range spans {
			field := fmt.Sprintf("kiosk.counter_hours.%s[%d]", day, j)
			sp, err := parseSpan(t)
			if err != nil {
				return nil, bad(field, "%q %v", t, err)
			}
			if j > 0 && sp.From < week[i][j-1].To {
				return nil, bad(field, "%q must start after %s", t, week[i][j-1])
			}
			week[i] = append(week[i], sp)
		}
	}
	return week, nil
}

// parseSpan reads "HH:MM-HH:MM" (24 h clock; the end after the start, at
// most 24:00).
func parseSpan(t string) (Span, error) {
	from, to, ok := strings.Cut(strings.TrimSpace(t), "-")
	if !ok {
		return Span{}, fmt.Errorf("must be HH:MM-HH:MM")
	}
	f, err1 := parseClock(strings.TrimSpace(from))
	e, err2 := parseClock(strings.TrimSpace(to))
	switch {
	case err1 != nil || err2 != nil:
		return Span{}, fmt.Errorf("must be HH:MM-HH:MM on the 24 h clock")
	case e <= f:
		return Span{}, fmt.Errorf("must end after it starts")
	}
	return Span{From: f, To: e}, nil
}

func parseClock(s string) (int, error) {
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("not HH:MM")
	}
	for _, i := range []int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("not HH:MM")
		}
	}
	h, m := int(s[0]-'0')*10+int(s[1]-'0'), int(s[3]-'0')*10+int(s[4]-'0')
	if m > 59 || h > 24 || (h == 24 && m != 0) {
		return 0, fmt.Errorf("not a time of day")
	}
	return h*60 + m, nil
}

// MaxClosedDates is the most dates kiosk.counter_closed may list.
const MaxClosedDates = 366

// ClosedDates returns kiosk.counter_closed, the dates the counter is
// closed on although its weekly hours say open (public holidays), as
// calendar days (midnight UTC), sorted; nil when none are configured; or
// an error naming the field: a date not written YYYY-MM-DD, a date listed
// twice, more than MaxClosedDates, or closed dates without
// kiosk.counter_hours (the screen says when the counter opens again).
func (k Kiosk) ClosedDates() ([]time.Time, error) {
	if len(k.CounterClosed) == 0 {
		return nil, nil
	}
	if len(k.CounterHours) == 0 {
		return nil, bad("kiosk.counter_closed", "needs kiosk.counter_hours: the screen says when the counter opens again")
	}
	if n := len(k.CounterClosed); n > MaxClosedDates {
		return nil, bad("kiosk.counter_closed", "%d dates, at most %d", n, MaxClosedDates)
	}
	seen := map[time.Time]int{}
	out := make([]time.Time, 0, len(k.CounterClosed))
	for i, s := range k.CounterClosed {
		field := fmt.Sprintf("kiosk.counter_closed[%d]", i)
		d, err := time.Parse(time.DateOnly, strings.TrimSpace(s))
		if err != nil {
			return nil, bad(field, "%q must be a date written YYYY-MM-DD, e.g. 2026-12-25", s)
		}
		if j, dup := seen[d]; dup {
			return nil, bad(field, "%s is listed twice (also kiosk.counter_closed[%d])", d.Format(time.DateOnly), j)
		}
		seen[d] = i
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out, nil
}
