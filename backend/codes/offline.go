package codes

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"time"

	"golang.org/x/crypto/argon2"
)

// ArgonParams are the argon2id costs of offline PIN verifiers.
type ArgonParams struct {
	// Time is the number of passes.
	Time uint32 `json:"t"`
	// MemoryKiB is the memory in KiB.
	MemoryKiB uint32 `json:"m"`
	// Threads is the parallelism.
	Threads uint8 `json:"p"`
}

// DefaultArgonParams are the production costs: OWASP's argon2id minimum
// (19 MiB, 2 passes, 1 lane), roughly 0.1 s on a Raspberry Pi 4.
var DefaultArgonParams = ArgonParams{Time: 2, MemoryKiB: 19 * 1024, Threads: 1}

// String encodes the parameters as stored ("t=2,m=19456,p=1").
func (p ArgonParams) String() string {
	return fmt.Sprintf("t=%d,m=%d,p=%d", p.Time, p.MemoryKiB, p.Threads)
}

// ParseArgonParams decodes String's form.
func ParseArgonParams(s string) (ArgonParams, error) {
	var p ArgonParams
	if _, err := fmt.Sscanf(s, "t=%d,m=%d,p=%d", &p.Time, &p.MemoryKiB, &p.Threads); err != nil {
		return p, fmt.Errorf("codes: argon2 parameters %q: %w", s, ErrInvalid)
	}
	return p, p.validate()
}

func (p ArgonParams) validate() error {
	if p.Time < 1 || p.Time > 16 || p.MemoryKiB < 8 || p.MemoryKiB > 256*1024 || p.Threads < 1 || p.Threads > 8 {
		return fmt.Errorf("codes: argon2 parameters %s out of range: %w", p, ErrInvalid)
	}
	return nil
}

// offlineVerifier is argon2id(salt, "kluis-offline-v1:" device ":" pin [":" dob]).
func offlineVerifier(p ArgonParams, salt []byte, deviceID, pin, dob string) []byte {
	in := "kluis-offline-v1:" + deviceID + ":" + pin
	if dob != "" {
		in += ":" + dob
	}
	return argon2.IDKey([]byte(in), salt, p.Time, p.MemoryKiB, p.Threads, 32)
}

// OfflineEntry is what a device holds about one active code to verify a PIN
// without the backend. It holds no PIN and no key, only a slow verifier.
type OfflineEntry struct {
	// CodeID is the base64url code id (as in the QR token).
	CodeID string `json:"code_id"`
	// DocumentID is the document the code releases.
	DocumentID string `json:"document_id"`
	// ExpiresAt ends the code's validity.
	ExpiresAt time.Time `json:"expires_at"`
	// CompartmentID, CompartmentNumber, Board and Channel address the compartment.
	CompartmentID     int64 `json:"compartment_id"`
	CompartmentNumber int   `json:"compartment_number"`
	Board             int   `json:"board"`
	Channel           int   `json:"channel"`
	// NeedsDOB tells that the verifier includes the date of birth.
	NeedsDOB bool `json:"needs_dob"`
	// Salt is the device's verifier salt (base64url).
	Salt string `json:"salt"`
	// Params are the argon2id costs.
	Params ArgonParams `json:"params"`
	// Verifier is argon2id of the PIN (and date of birth), base64url.
	Verifier string `json:"verifier"`
}

// OfflineAttempt is a PIN entry on a device without backend.
type OfflineAttempt struct {
	// DeviceID is the device the PIN is typed on.
	DeviceID string
	// PIN as typed.
	PIN string
	// BirthDate as "YYYY-MM-DD" (always asked with a PIN).
	BirthDate string
}

// VerifyOffline finds the entry whose verifier matches the attempt at now.
// It computes at most two argon2id hashes (with and without the date of
// birth) whatever the number of entries. Errors: ErrSecondFactorRequired,
// ErrWrongCode, ErrExpired. The caller applies a [Limiter] before and
// records failures after, and marks the entry used itself.
func VerifyOffline(entries []OfflineEntry, a OfflineAttempt, now time.Time) (OfflineEntry, error) {
	pin, err := NormalizePIN(a.PIN, PINDigits)
	if err != nil {
		return OfflineEntry{}, err
	}
	if a.BirthDate == "" {
		return OfflineEntry{}, fmt.Errorf("codes: offline: %w", ErrSecondFactorRequired)
	}
	dob, err := ParseBirthDate(a.BirthDate)
	if err != nil {
		return OfflineEntry{}, fmt.Errorf("codes: offline: %w", ErrSecondFactorRequired)
	}
	type key struct {
		salt, params string
		dob          bool
	}
	cache := map[key][]byte{}
	for _, e := range entries {
		want, err := b64.DecodeString(e.Verifier)
		if err != nil {
			continue
		}
		k := key{e.Salt, e.Params.String(), e.NeedsDOB}
		got, ok := cache[k]
		if !ok {
			salt, err := b64.DecodeString(e.Salt)
			if err != nil || e.Params.validate() != nil {
				continue
			}
			d := ""
			if e.NeedsDOB {
				d = dob
			}
			got = offlineVerifier(e.Params, salt, a.DeviceID, pin, d)
			cache[k] = got
		}
		if subtle.ConstantTimeCompare(got, want) == 1 {
			if !now.Before(e.ExpiresAt) {
				return e, fmt.Errorf("codes: offline: %w", ErrExpired)
			}
			return e, nil
		}
	}
	return OfflineEntry{}, fmt.Errorf("codes: offline: %w", ErrWrongCode)
}

// encodeB64 is base64url without padding.
func encodeB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
