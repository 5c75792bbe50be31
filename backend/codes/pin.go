package codes

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"
)

// DateLayout is the layout of dates of birth in attempts ("1990-02-28").
const DateLayout = "2006-01-02"

// NormalizePIN removes spaces, dots and dashes a citizen may type and
// checks that exactly digits digits remain.
func NormalizePIN(pin string, digits int) (string, error) {
	if len(pin) > 64 {
		return "", fmt.Errorf("codes: PIN too long: %w", ErrWrongCode)
	}
	var b strings.Builder
	for _, r := range pin {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '.' || r == '-':
		default:
			return "", fmt.Errorf("codes: PIN has a character that is not a digit: %w", ErrWrongCode)
		}
	}
	if b.Len() != digits {
		return "", fmt.Errorf("codes: PIN has %d digits, want %d: %w", b.Len(), digits, ErrWrongCode)
	}
	return b.String(), nil
}

// FormatPIN groups a PIN in threes for reading ("123 456 789").
func FormatPIN(pin string) string {
	var b strings.Builder
	for i, r := range pin {
		if i > 0 && (len(pin)-i)%3 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// GeneratePIN draws a uniform digits-long PIN from r (crypto/rand.Reader
// when nil).
func GeneratePIN(r io.Reader, digits int) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	max := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(digits)), nil)
	n, err := rand.Int(r, max)
	if err != nil {
		return "", fmt.Errorf("codes: generate PIN: %w", err)
	}
	return fmt.Sprintf("%0*s", digits, n.String()), nil
}

// PINDigest is HMAC-SHA256(key, deviceID ":" pin), the only form in which a
// PIN is stored.
func PINDigest(key []byte, deviceID, pin string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(deviceID))
	m.Write([]byte{':'})
	m.Write([]byte(pin))
	return m.Sum(nil)
}

// dobDigest binds a date of birth to one code: HMAC-SHA256(key, "dob:" id ":" date).
func dobDigest(key, codeID []byte, date string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("dob:"))
	m.Write(codeID)
	m.Write([]byte{':'})
	m.Write([]byte(date))
	return m.Sum(nil)
}

// ParseBirthDate checks a "YYYY-MM-DD" date of birth and returns it in
// canonical form.
func ParseBirthDate(s string) (string, error) {
	t, err := time.Parse(DateLayout, strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("codes: date of birth %q is not YYYY-MM-DD: %w", s, ErrInvalid)
	}
	return t.Format(DateLayout), nil
}
