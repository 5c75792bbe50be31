package pickupcode

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// ArgonParams are argon2id costs.
type ArgonParams struct {
	// Time is the number of passes.
	Time uint32 `json:"t"`
	// MemoryKiB is the memory in KiB.
	MemoryKiB uint32 `json:"m"`
	// Threads is the parallelism.
	Threads uint8 `json:"p"`
}

// DefaultArgonParams are the production costs of MQTT passwords: OWASP's
// argon2id minimum (19 MiB, 2 passes, 1 lane).
var DefaultArgonParams = ArgonParams{Time: 2, MemoryKiB: 19 * 1024, Threads: 1}

// OfflineArgonParams are the production costs of the offline PIN verifiers
// the backend ships to devices (OfflineVerifier). The same work as
// DefaultArgonParams (19 MiB, 2 passes: what a stolen bundle costs an
// attacker per guess does not depend on the lanes), split into 4 lanes
// that a kiosk's 4 cores (Raspberry Pi 3, 4, 5, Zero 2) fill in parallel
// (RFC 9106 recommends 4 lanes). The kiosk's brute-force bound does not
// depend on these costs at all (docs/security.md: the attempt limits make
// it); they only slow down whoever holds a copy of the bundle. Hashes made
// with other costs stay verifiable: the offline material names its costs.
var OfflineArgonParams = ArgonParams{Time: 2, MemoryKiB: 19 * 1024, Threads: 4}

// String encodes the parameters as the offline material stores them
// ("t=2,m=19456,p=1").
func (p ArgonParams) String() string {
	return fmt.Sprintf("t=%d,m=%d,p=%d", p.Time, p.MemoryKiB, p.Threads)
}

// ParseArgonParams decodes String's form.
func ParseArgonParams(s string) (ArgonParams, error) {
	var p ArgonParams
	if _, err := fmt.Sscanf(s, "t=%d,m=%d,p=%d", &p.Time, &p.MemoryKiB, &p.Threads); err != nil {
		return p, fmt.Errorf("pickupcode: argon2 parameters %q: %w", s, ErrInvalid)
	}
	return p, p.Validate()
}

// Validate refuses costs outside 1..16 passes, 8 KiB..256 MiB and 1..8
// lanes: a stored hash cannot make a checker spend unbounded time or memory.
func (p ArgonParams) Validate() error {
	if p.Time < 1 || p.Time > 16 || p.MemoryKiB < 8 || p.MemoryKiB > 256*1024 || p.Threads < 1 || p.Threads > 8 {
		return fmt.Errorf("pickupcode: argon2 parameters %s out of range: %w", p, ErrInvalid)
	}
	return nil
}

// key is argon2id of secret under salt with p, keyLen bytes.
func (p ArgonParams) key(secret, salt []byte, keyLen uint32) []byte {
	return argon2.IDKey(secret, salt, p.Time, p.MemoryKiB, p.Threads, keyLen)
}

// phc is the PHC string encoding of argon2id hashes: standard base64
// without padding.
var phc = base64.RawStdEncoding

// HashSecret returns the PHC string of secret under a fresh 16-byte salt:
// "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<32-byte hash>".
func HashSecret(secret string, p ArgonParams) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("pickupcode: salt: %w", err)
	}
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		phc.EncodeToString(salt), phc.EncodeToString(p.key([]byte(secret), salt, 32))), nil
}

// VerifySecret reports whether secret matches the PHC string encoded (with
// the costs it names), in constant time with respect to the hash. A string
// that is not an argon2id PHC string with valid costs is ErrInvalid.
func VerifySecret(encoded, secret string) (bool, error) {
	parts := strings.Split(encoded, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false, fmt.Errorf("pickupcode: not an argon2id PHC string: %w", ErrInvalid)
	}
	var p ArgonParams
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil || n != 3 {
		return false, fmt.Errorf("pickupcode: argon2id PHC parameters %q: %w", parts[3], ErrInvalid)
	}
	if err := p.Validate(); err != nil {
		return false, err
	}
	salt, err1 := phc.DecodeString(parts[4])
	want, err2 := phc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) == 0 || len(want) == 0 || len(want) > 64 {
		return false, fmt.Errorf("pickupcode: argon2id PHC salt or hash malformed: %w", ErrInvalid)
	}
	return subtle.ConstantTimeCompare(p.key([]byte(secret), salt, uint32(len(want))), want) == 1, nil
}
