package codes

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"kluis/controller/pickupcode"
)

// Key file names inside a key directory. Each holds one line of standard
// base64: the 32-byte Ed25519 seed, the 32-byte PIN key, and the public key
// (for devices; not secret).
const (
	SigningKeyFile = "signing.key"
	PINKeyFile     = "pin.key"
	PublicKeyFile  = "signing.pub"
	// PreviousPINKeyFile, optional, holds the PIN key before a rotation
	// (docs/operations.md, "Rotating the PIN key").
	PreviousPINKeyFile = "pin.key.previous"
)

// Keys are the backend's code secrets.
type Keys struct {
	// Signing signs QR tokens.
	Signing ed25519.PrivateKey
	// PIN keys the PIN and date-of-birth HMACs.
	PIN []byte
	// PreviousPIN, optional, is the PIN key before a rotation. It is only
	// used to verify and open what was made with it (the PIN and
	// date-of-birth digests of codes issued before the rotation, the
	// sealed codes of queued notifications), never to make anything new.
	PreviousPIN []byte
}

// Public returns the key devices verify tokens with.
func (k Keys) Public() ed25519.PublicKey {
	return k.Signing.Public().(ed25519.PublicKey)
}

// TokenDigestKey is the key of the QR token digests kept with the codes
// (codes.token_digest, [Keys.TokenDigest]): HMAC-SHA256 of a fixed label
// under the signing key's seed. Derived from the signing key, not the PIN
// key: a digest is good exactly as long as the signature it stands in
// for, and a PIN key rotation (which tokens outlive) leaves it alone.
func (k Keys) TokenDigestKey() []byte {
	m := hmac.New(sha256.New, k.Signing.Seed())
	m.Write([]byte("kluis QR token digest v1"))
	return m.Sum(nil)
}

// TokenDigest is what a code's row keeps of its QR token: HMAC-SHA256 of
// the whole token under [Keys.TokenDigestKey]. Whoever reads or writes
// the database without the signing key can neither recover a token from
// it nor make one that matches.
func (k Keys) TokenDigest(token string) []byte {
	m := hmac.New(sha256.New, k.TokenDigestKey())
	m.Write([]byte(token))
	return m.Sum(nil)
}

// Validate reports keys of the wrong size.
func (k Keys) Validate() error {
	if len(k.Signing) != ed25519.PrivateKeySize {
		return fmt.Errorf("codes: signing key has %d bytes: %w", len(k.Signing), pickupcode.ErrInvalid)
	}
	if len(k.PIN) < 32 {
		return fmt.Errorf("codes: PIN key has %d bytes, want at least 32: %w", len(k.PIN), pickupcode.ErrInvalid)
	}
	if k.PreviousPIN != nil && len(k.PreviousPIN) < 32 {
		return fmt.Errorf("codes: previous PIN key has %d bytes, want at least 32: %w", len(k.PreviousPIN), pickupcode.ErrInvalid)
	}
	if k.PreviousPIN != nil && string(k.PreviousPIN) == string(k.PIN) {
		return fmt.Errorf("codes: the previous PIN key is the PIN key itself: %w", pickupcode.ErrInvalid)
	}
	return nil
}

// GenerateKeys makes fresh keys from crypto/rand.
func GenerateKeys() (Keys, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Keys{}, fmt.Errorf("codes: generate signing key: %w", err)
	}
	pin := make([]byte, 32)
	if _, err := rand.Read(pin); err != nil {
		return Keys{}, fmt.Errorf("codes: generate PIN key: %w", err)
	}
	return Keys{Signing: priv, PIN: pin}, nil
}

// PINKeys are the PIN key and, during a rotation, the previous one (see
// PreviousPIN): what to verify or open with, the current key first.
func (k Keys) PINKeys() [][]byte {
	if k.PreviousPIN == nil {
		return [][]byte{k.PIN}
	}
	return [][]byte{k.PIN, k.PreviousPIN}
}

// LoadKeys reads the keys from dir (see SigningKeyFile, PINKeyFile, and
// the optional PreviousPINKeyFile). It refuses key files readable by group
// or others.
func LoadKeys(dir string) (Keys, error) {
	seed, err := readKeyFile(filepath.Join(dir, SigningKeyFile), ed25519.SeedSize)
	if err != nil {
		return Keys{}, err
	}
	pin, err := readKeyFile(filepath.Join(dir, PINKeyFile), 32)
	if err != nil {
		return Keys{}, err
	}
	k := Keys{Signing: ed25519.NewKeyFromSeed(seed), PIN: pin}
	if _, err := os.Stat(filepath.Join(dir, PreviousPINKeyFile)); err == nil {
		if k.PreviousPIN, err = readKeyFile(filepath.Join(dir, PreviousPINKeyFile), 32); err != nil {
			return Keys{}, err
		}
	}
	return k, k.Validate()
}

// LoadOrCreateKeys loads the keys from dir, or, when neither key file
// exists, generates them and writes them with mode 0600 (for development
// and first start).
func LoadOrCreateKeys(dir string) (Keys, error) {
	_, err1 := os.Stat(filepath.Join(dir, SigningKeyFile))
	_, err2 := os.Stat(filepath.Join(dir, PINKeyFile))
	if errors.Is(err1, fs.ErrNotExist) && errors.Is(err2, fs.ErrNotExist) {
		k, err := GenerateKeys()
		if err != nil {
			return Keys{}, err
		}
		if err := WriteKeys(dir, k); err != nil {
			return Keys{}, err
		}
		return k, nil
	}
	return LoadKeys(dir)
}

// WriteKeys writes k into dir (created 0700), secrets with mode 0600.
func WriteKeys(dir string, k Keys) error {
	if err := k.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("codes: key directory: %w", err)
	}
	files := []struct {
		name string
		data []byte
		mode fs.FileMode
	}{
		{SigningKeyFile, k.Signing.Seed(), 0o600},
		{PINKeyFile, k.PIN, 0o600},
		{PublicKeyFile, k.Public(), 0o644},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		line := base64.StdEncoding.EncodeToString(f.data) + "\n"
		if err := os.WriteFile(p, []byte(line), f.mode); err != nil {
			return fmt.Errorf("codes: write %s: %w", p, err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			return fmt.Errorf("codes: chmod %s: %w", p, err)
		}
	}
	return nil
}

func readKeyFile(path string, size int) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("codes: key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("codes: key file %s has mode %v, want 0600: %w", path, st.Mode().Perm(), pickupcode.ErrInvalid)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("codes: key file: %w", err)
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(b) < size || (size == ed25519.SeedSize && len(b) != size) {
		return nil, fmt.Errorf("codes: key file %s: want base64 of %d bytes: %w", path, size, pickupcode.ErrInvalid)
	}
	return b, nil
}

// Environment variables read by KeysFromEnv: standard base64 of the 32-byte
// Ed25519 seed and of the PIN key (at least 32 bytes).
const (
	EnvSigningKey = "KLUIS_CODES_SIGNING_KEY"
	EnvPINKey     = "KLUIS_CODES_PIN_KEY"
	// EnvPreviousPINKey, optional, is the PIN key before a rotation (see
	// Keys.PreviousPIN).
	EnvPreviousPINKey = "KLUIS_CODES_PIN_KEY_PREVIOUS"
)

// KeysFromEnv reads the keys from EnvSigningKey and EnvPINKey through
// getenv (os.Getenv when nil). ok is false when neither is set.
func KeysFromEnv(getenv func(string) string) (k Keys, ok bool, err error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	s, p := strings.TrimSpace(getenv(EnvSigningKey)), strings.TrimSpace(getenv(EnvPINKey))
	if s == "" && p == "" {
		return Keys{}, false, nil
	}
	seed, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(seed) != ed25519.SeedSize {
		return Keys{}, true, fmt.Errorf("codes: %s: want base64 of %d bytes: %w", EnvSigningKey, ed25519.SeedSize, pickupcode.ErrInvalid)
	}
	pin, err := base64.StdEncoding.DecodeString(p)
	if err != nil || len(pin) < 32 {
		return Keys{}, true, fmt.Errorf("codes: %s: want base64 of at least 32 bytes: %w", EnvPINKey, pickupcode.ErrInvalid)
	}
	k = Keys{Signing: ed25519.NewKeyFromSeed(seed), PIN: pin}
	if prev := strings.TrimSpace(getenv(EnvPreviousPINKey)); prev != "" {
		b, err := base64.StdEncoding.DecodeString(prev)
		if err != nil || len(b) < 32 {
			return Keys{}, true, fmt.Errorf("codes: %s: want base64 of at least 32 bytes: %w", EnvPreviousPINKey, pickupcode.ErrInvalid)
		}
		k.PreviousPIN = b
	}
	return k, true, k.Validate()
}

// PublicBase64 is the public key in the form pickupcode.ParsePublicKey reads, for
// device configuration.
func (k Keys) PublicBase64() string { return pickupcode.FormatPublicKey(k.Public()) }
