package web

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// A date of birth typed as day, month and year: read as the date
// time.Parse(time.DateOnly) gives, or refused with the message that says
// what to correct and the fields to correct marked.
func TestParseBirthDate(t *testing.T) {
	now := time.Date(2026, 12, 6, 15, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		d, m, y string
		want    string
		problem dateProblem
	}{
		{"15", "6", "1988", "1988-06-15", dateProblem{}},
		{" 05 ", "06", "1988", "1988-06-05", dateProblem{}},
		{"29", "2", "2000", "2000-02-29", dateProblem{}},
		{"6", "12", "2026", "2026-12-06", dateProblem{}}, // today
		{"1", "1", "1900", "1900-01-01", dateProblem{}},
		{"", "", "", "", dateProblem{Key: birthMissing, Day: true, Month: true, Year: true}},
		{" ", "6", "1988", "", dateProblem{Key: "register.birth.missing_day", Day: true}},
		{"15", "", "1988", "", dateProblem{Key: "register.birth.missing_month", Month: true}},
		{"15", "6", "", "", dateProblem{Key: "register.birth.missing_year", Year: true}},
		{"", "", "1988", "", dateProblem{Key: "register.birth.missing_day_month", Day: true, Month: true}},
		{"", "6", "", "", dateProblem{Key: "register.birth.missing_day_year", Day: true, Year: true}},
		{"15", "", "", "", dateProblem{Key: "register.birth.missing_month_year", Month: true, Year: true}},
		{"31", "2", "1988", "", dateProblem{Key: birthNotReal, Day: true}},
		{"29", "2", "2001", "", dateProblem{Key: birthNotReal, Day: true}},
		{"31", "4", "1988", "", dateProblem{Key: birthNotReal, Day: true}},
		{"32", "1", "1988", "", dateProblem{Key: birthBadDay, Day: true}},
		{"0", "1", "1988", "", dateProblem{Key: birthBadDay, Day: true}},
		{"1x", "1", "1988", "", dateProblem{Key: birthBadDay, Day: true}},
		{"-1", "1", "1988", "", dateProblem{Key: birthBadDay, Day: true}},
		{"٣", "1", "1988", "", dateProblem{Key: birthBadDay, Day: true}}, // not an ASCII digit
		{"15", "13", "1988", "", dateProblem{Key: birthBadMonth, Month: true}},
		{"15", "jun", "1988", "", dateProblem{Key: birthBadMonth, Month: true}},
		{"15", "6", "88", "", dateProblem{Key: birthBadYear, Year: true}},
		{"15", "6", "19880", "", dateProblem{Key: birthBadYear, Year: true}},
		{"15", "6", "+988", "", dateProblem{Key: birthBadYear, Year: true}},
		{"1988", "6", "15", "", dateProblem{Key: birthInvalid, Day: true, Year: true}}, // typed the wrong way round
		{"40", "13", "1988", "", dateProblem{Key: birthInvalid, Day: true, Month: true}},
		{"31", "12", "1899", "", dateProblem{Key: birthTooOld, Year: true}},
		{"7", "12", "2026", "", dateProblem{Key: birthFuture, Day: true, Month: true, Year: true}},
		{"1", "1", "2030", "", dateProblem{Key: birthFuture, Day: true, Month: true, Year: true}},
	} {
		name := c.d + "-" + c.m + "-" + c.y
		got, p := parseBirthDate(dateInput{Day: c.d, Month: c.m, Year: c.y}, now)
		if c.want != "" {
			want, err := time.Parse(time.DateOnly, c.want)
			assert.NoError(t, err)
			assert.Nil(t, p, name)
			assert.Equal(t, want, got, name)
			continue
		}
		if assert.NotNil(t, p, name) {
			assert.Equal(t, c.problem, *p, name)
		}
		assert.True(t, got.IsZero(), name)
	}
	// The error summary links to the first field to correct.
	assert.Equal(t, "holder_birth_date", dateProblem{Day: true, Year: true}.Anchor("holder_birth_date"))
	assert.Equal(t, "holder_birth_date-month", dateProblem{Month: true, Year: true}.Anchor("holder_birth_date"))
	assert.Equal(t, "holder_birth_date-year", dateProblem{Year: true}.Anchor("holder_birth_date"))
	assert.Equal(t, "holder_birth_date", dateProblem{}.Anchor("holder_birth_date"))
}

// At 00:30 in Brussels (23:30 UTC the day before) today's date there is a
// date of birth, not one in the future: the day is now's, in now's
// location (the console passes its time zone's); the next day is refused.
func TestBirthDateTodayAfterMidnightInBrussels(t *testing.T) {
	brussels, err := time.LoadLocation("Europe/Brussels")
	assert.NoError(t, err)
	now := time.Date(2026, 12, 6, 23, 30, 0, 0, time.UTC).In(brussels)
	got, p := parseBirthDate(dateInput{Day: "7", Month: "12", Year: "2026"}, now)
	assert.Nil(t, p)
	assert.Equal(t, time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), got)
	_, p = parseBirthDate(dateInput{Day: "8", Month: "12", Year: "2026"}, now)
	if assert.NotNil(t, p) {
		assert.Equal(t, birthFuture, p.Key)
	}
}
