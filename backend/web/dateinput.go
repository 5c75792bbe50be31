package web

import (
	"strconv"
	"strings"
	"time"
)

// dateInput is a date as typed in the three fields of the date pattern
// (day, month, year: the order of nl, fr, en and de alike), kept as typed
// so that a form sent back with an error shows it again.
type dateInput struct{ Day, Month, Year string }

// dateProblem says why a typed date was refused: Key is the catalogue key
// of the message, Day, Month and Year mark the fields to correct.
type dateProblem struct {
	Key              string
	Day, Month, Year bool
}

// Anchor is the id suffix of the first field to correct, for the error
// summary's link (the day field's id is the date's own, f-<field>).
func (p dateProblem) Anchor(field string) string {
	switch {
	case p.Day || !p.Month && !p.Year:
		return field
	case p.Month:
		return field + "-month"
	default:
		return field + "-year"
	}
}

// birthDateKeys are the messages of a refused date of birth.
const (
	birthMissing  = "register.birth.missing"
	birthBadDay   = "register.birth.bad_day"
	birthBadMonth = "register.birth.bad_month"
	birthBadYear  = "register.birth.bad_year"
	birthNotReal  = "register.birth.not_real"
	birthTooOld   = "register.birth.too_old"
	birthFuture   = "register.birth.future"
	// birthInvalid is for more than one field wrong at once.
	birthInvalid = "register.invalid.holder_birth_date"
)

// birthMissingKeys name the fields left empty (day, month, year as bits 4,
// 2, 1) when some are filled in.
var birthMissingKeys = map[int]string{
	4: "register.birth.missing_day", 2: "register.birth.missing_month", 1: "register.birth.missing_year",
	6: "register.birth.missing_day_month", 5: "register.birth.missing_day_year", 3: "register.birth.missing_month_year",
}

// parseBirthDate reads a date of birth typed as day, month and year: each
// a number (day 1-31, month 1-12, the year with 4 digits), together a
// date that exists, in 1900 or later and no later than now's calendar day
// in now's location (the bounds of store.NewDocument.Validate, which
// checks them again; the console passes now in its time zone). The date
// is at midnight UTC, as time.Parse(time.DateOnly) reads "yyyy-mm-dd".
func parseBirthDate(in dateInput, now time.Time) (time.Time, *dateProblem) {
	d, m, y := strings.TrimSpace(in.Day), strings.TrimSpace(in.Month), strings.TrimSpace(in.Year)
	empty := 0
	for i, s := range []string{d, m, y} {
		if s == "" {
			empty |= 4 >> i
		}
	}
	switch empty {
	case 0:
	case 7:
		return time.Time{}, &dateProblem{Key: birthMissing, Day: true, Month: true, Year: true}
	default:
		return time.Time{}, &dateProblem{Key: birthMissingKeys[empty], Day: empty&4 != 0, Month: empty&2 != 0, Year: empty&1 != 0}
	}
	day, dayOK := number(d, 2)
	month, monthOK := number(m, 2)
	year, yearOK := number(y, 4)
	p := dateProblem{Day: !dayOK || day < 1 || day > 31, Month: !monthOK || month < 1 || month > 12, Year: !yearOK || len(y) != 4}
	switch {
	case p.Day && !p.Month && !p.Year:
		p.Key = birthBadDay
	case p.Month && !p.Day && !p.Year:
		p.Key = birthBadMonth
	case p.Year && !p.Day && !p.Month:
		p.Key = birthBadYear
	case p.Day || p.Month || p.Year:
		p.Key = birthInvalid
	}
	if p.Key != "" {
		return time.Time{}, &p
	}
	t := time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
	if t.Day() != day { // 31-02 became 03-03
		return time.Time{}, &dateProblem{Key: birthNotReal, Day: true}
	}
	if year < 1900 {
		return time.Time{}, &dateProblem{Key: birthTooOld, Year: true}
	}
	if ny, nm, nd := now.Date(); t.After(time.Date(ny, nm, nd, 0, 0, 0, 0, time.UTC)) {
		return time.Time{}, &dateProblem{Key: birthFuture, Day: true, Month: true, Year: true}
	}
	return t, nil
}

// number reads s as a number of at most max ASCII digits (no sign).
func number(s string, max int) (int, bool) {
	if s == "" || len(s) > max {
		return 0, false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}
