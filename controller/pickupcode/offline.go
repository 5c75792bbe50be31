package pickupcode

import (
	"crypto/subtle"
	"fmt"
	"strings"
	"sync"
	"time"
)

// OfflineVerifier is the argon2id verifier a device checks a PIN with
// without the backend: argon2id(salt, "kluis-offline-v1:" device ":" pin
// [":" dob]), 32 bytes. dob is empty when the document kind does not need
// the date of birth.
func OfflineVerifier(p ArgonParams, salt []byte, deviceID, pin, dob string) []byte {
	in := "kluis-offline-v1:" + deviceID + ":" + pin
	if dob != "" {
		in += ":" + dob
	}
	return p.key([]byte(in), salt, 32)
}

// pinHashScheme starts the offline cache's PIN hash string.
const pinHashScheme = "argon2id"

// FormatPINHash packs an offline verifier into the offline cache's wire form
// "argon2id$t=..,m=..,p=..$<salt>$<verifier>" (salt and verifier base64url,
// as [OfflineEntry] holds them).
func FormatPINHash(p ArgonParams, salt, verifier string) string {
	return pinHashScheme + "$" + p.String() + "$" + salt + "$" + verifier
}

// ParsePINHash unpacks FormatPINHash's form (ErrInvalid when it is not one).
func ParsePINHash(s string) (p ArgonParams, salt, verifier string, err error) {
	parts := strings.Split(s, "$")
	if len(parts) != 4 || parts[0] != pinHashScheme || parts[2] == "" || parts[3] == "" {
		return ArgonParams{}, "", "", fmt.Errorf("pickupcode: not an offline PIN hash: %w", ErrInvalid)
	}
	if p, err = ParseArgonParams(parts[1]); err != nil {
		return ArgonParams{}, "", "", err
	}
	return p, parts[2], parts[3], nil
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

// PINHash is the entry's verifier in the offline cache's wire form.
func (e OfflineEntry) PINHash() string { return FormatPINHash(e.Params, e.Salt, e.Verifier) }

// OfflineAttempt is a PIN entry on a device without backend.
type OfflineAttempt struct {
	// DeviceID is the device the PIN is typed on.
	DeviceID string
	// PIN as typed.
	PIN string
	// BirthDate as "YYYY-MM-DD" (always asked with a PIN).
	BirthDate string
}

// PINTagBytes is the length of a [OfflineCheck.PINTag]: 16 bits, so that a
// tag stored on a device narrows a PIN down to about 15,000 candidates only.
const PINTagBytes = 2

// OfflineCheck is the outcome of [CheckOffline].
type OfflineCheck struct {
	// Entry is the entry the attempt matched (valid or expired).
	Entry OfflineEntry
	// PINTag is a short tag of the PIN alone (the first PINTagBytes of
	// its verifier without the date of birth under the entries' salt,
	// base64url), empty when no entry has usable material. Two attempts
	// with one PIN have the same tag; a device journals the tags of its
	// failed attempts to count the wrong dates of birth typed with the
	// PIN of a code (docs/security.md, "Offline verification"). It is
	// short on purpose: it must identify a PIN among the few typed at a
	// device, not reveal it to whoever reads the journal.
	PINTag string
}

// VerifyOffline finds the entry whose verifier matches the attempt at now
// (see [CheckOffline]).
func VerifyOffline(entries []OfflineEntry, a OfflineAttempt, now time.Time) (OfflineEntry, error) {
	c, err := CheckOffline(entries, a, now)
	return c.Entry, err
}

// CheckOffline finds the first entry whose verifier matches the attempt at now
// (callers list valid entries before expired ones, so that a PIN drawn again
// for a new code finds the new code) and tags the PIN. It computes at most
// two argon2id hashes per distinct salt and costs (with and without the date
// of birth) whatever the number of entries, all at once in parallel.
// Errors: ErrSecondFactorRequired, ErrWrongCode, ErrExpired (with the
// matched entry). The caller applies a
// [Limiter] before and records failures after, and marks the entry used
// itself.
func CheckOffline(entries []OfflineEntry, a OfflineAttempt, now time.Time) (OfflineCheck, error) {
	var out OfflineCheck
	pin, err := NormalizePIN(a.PIN, PINDigits)
	if err != nil {
		return out, err
	}
	if a.BirthDate == "" {
		return out, fmt.Errorf("pickupcode: offline: %w", ErrSecondFactorRequired)
	}
	dob, err := ParseBirthDate(a.BirthDate)
	if err != nil {
		return out, fmt.Errorf("pickupcode: offline: %w", ErrSecondFactorRequired)
	}
	// Every distinct hash the attempt needs (usually two: with and without
	// the date of birth) is computed at once, in parallel: a kiosk has
	// several cores, and a citizen waits for the slowest.
	type key struct {
		salt, params string
		dob          bool
	}
	type job struct {
		p    ArgonParams
		salt []byte
		dob  string
		out  []byte
	}
	jobs := map[key]*job{}
	need := func(e OfflineEntry, withDOB bool) *job {
		k := key{e.Salt, e.Params.String(), withDOB}
		if j, ok := jobs[k]; ok {
			return j
		}
		salt, err := b64.DecodeString(e.Salt)
		if err != nil || e.Params.Validate() != nil {
			return nil
		}
		j := &job{p: e.Params, salt: salt}
		if withDOB {
			j.dob = dob
		}
		jobs[k] = j
		return j
	}
	// The tag is the hash without date under the usable entry whose costs
	// sort first (not the first in the list): the same PIN gets the same
	// tag whatever the order of a sync, also while the cache holds codes
	// hashed with old and new costs.
	var tagEntry *OfflineEntry
	for i := range entries {
		e := &entries[i]
		if _, err := b64.DecodeString(e.Salt); err != nil || e.Params.Validate() != nil {
			continue
		}
		if tagEntry == nil || e.Params.String()+"$"+e.Salt < tagEntry.Params.String()+"$"+tagEntry.Salt {
			tagEntry = e
		}
	}
	var tagJob *job
	if tagEntry != nil {
		tagJob = need(*tagEntry, false)
	}
	verify := make([]*job, len(entries))
	for i, e := range entries {
		if _, err := b64.DecodeString(e.Verifier); err == nil {
			verify[i] = need(e, e.NeedsDOB)
		}
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.out = OfflineVerifier(j.p, j.salt, a.DeviceID, pin, j.dob)
		}()
	}
	wg.Wait()
	if tagJob != nil {
		out.PINTag = b64.EncodeToString(tagJob.out[:PINTagBytes])
	}
	hash := func(i int) ([]byte, bool) {
		if verify[i] == nil {
			return nil, false
		}
		return verify[i].out, true
	}
	for i, e := range entries {
		want, err := b64.DecodeString(e.Verifier)
		if err != nil {
			continue
		}
		got, ok := hash(i)
		if !ok {
			continue
		}
		if subtle.ConstantTimeCompare(got, want) == 1 {
			out.Entry = e
			if !now.Before(e.ExpiresAt) {
				return out, fmt.Errorf("pickupcode: offline: %w", ErrExpired)
			}
			return out, nil
		}
	}
	return out, fmt.Errorf("pickupcode: offline: %w", ErrWrongCode)
}
