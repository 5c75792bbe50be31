package codes

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"math/big"
	"strings"
)

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
