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

// pinDigests are the digests a typed PIN may be stored under: the PIN key's
// and, during a rotation, the previous key's (Keys.PreviousPIN). Issue
// keeps a PIN unique on its device across both.
func (s *Service) pinDigests(deviceID, pin string) [][]byte {
	var out [][]byte
	for _, k := range s.keys.PINKeys() {
		out = append(out, PINDigest(k, deviceID, pin))
	}
	return out
}

// sameDOB reports whether date is the one stored for the code, under the
// PIN key or the previous one.
func (s *Service) sameDOB(stored, codeID []byte, date string) bool {
	ok := false
	for _, k := range s.keys.PINKeys() {
		ok = sameDigest(stored, dobDigest(k, codeID, date)) || ok
	}
	return ok
}
