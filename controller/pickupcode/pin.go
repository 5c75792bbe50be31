package pickupcode

import (
	"fmt"
	"strings"
	"time"
)

// DateLayout is the layout of dates of birth in attempts ("1990-02-28").
const DateLayout = "2006-01-02"

// NormalizePIN removes spaces, dots and dashes a citizen may type and
// checks that exactly digits digits remain (ErrWrongCode otherwise).
func NormalizePIN(pin string, digits int) (string, error) {
	if len(pin) > 64 {
		return "", fmt.Errorf("pickupcode: PIN too long: %w", ErrWrongCode)
	}
	var b strings.Builder
	for _, r := range pin {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '.' || r == '-':
		default:
			return "", fmt.Errorf("pickupcode: PIN has a character that is not a digit: %w", ErrWrongCode)
		}
	}
	if b.Len() != digits {
		return "", fmt.Errorf("pickupcode: PIN has %d digits, want %d: %w", b.Len(), digits, ErrWrongCode)
	}
	return b.String(), nil
}

// ParseBirthDate checks a "YYYY-MM-DD" date of birth and returns it in
// canonical form (ErrInvalid otherwise). The error does not quote s: a
// date of birth is personal data, and errors reach logs.
func ParseBirthDate(s string) (string, error) {
	t, err := time.Parse(DateLayout, strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("pickupcode: date of birth is not YYYY-MM-DD: %w", ErrInvalid)
	}
	return t.Format(DateLayout), nil
}
