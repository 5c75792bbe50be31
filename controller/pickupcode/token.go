package pickupcode

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrBadSignature means a signed message is malformed or its signature does
// not verify.
var ErrBadSignature = errors.New("malformed or badly signed message")

// b64 is the encoding of signed messages, code ids and offline material:
// base64url without padding.
var b64 = base64.RawURLEncoding

// Sign makes the signed message prefix + base64url(payload) + "." +
// base64url(signature), signing everything before the last dot (the prefix
// included) with priv. The prefix names the message's kind and version
// ("K1." for QR tokens) and ends with a dot.
func Sign(priv ed25519.PrivateKey, prefix string, payload []byte) (string, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("pickupcode: sign: bad key: %w", ErrInvalid)
	}
	if !strings.HasSuffix(prefix, ".") || len(payload) == 0 {
		return "", fmt.Errorf("pickupcode: sign: want a prefix ending in a dot and a payload: %w", ErrInvalid)
	}
	head := prefix + b64.EncodeToString(payload)
	return head + "." + b64.EncodeToString(ed25519.Sign(priv, []byte(head))), nil
}

// Open checks a message made by [Sign] with prefix against pub and returns
// its payload. Only the canonical encoding is accepted, so one message has
// one spelling; messages longer than maxLen bytes are refused unread.
// Errors: ErrBadSignature (wrong prefix, malformed, bad signature),
// ErrInvalid (bad public key).
func Open(pub ed25519.PublicKey, prefix, msg string, maxLen int) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("pickupcode: open: bad public key: %w", ErrInvalid)
	}
	return open(prefix, msg, maxLen, func(head, sig []byte) bool { return ed25519.Verify(pub, head, sig) })
}

// OpenOwn is [Open] for the holder of the private key, the backend, which
// checks the tokens it issued: instead of verifying the signature (two
// scalar multiplications, about 75 µs) it signs the message again with
// priv (one fixed-base multiplication, about 30 µs) and compares the two
// signatures in constant time. Ed25519 signing is deterministic (RFC 8032:
// the nonce is a hash of the key and the message), so every message [Sign]
// made with priv is accepted exactly as Open with priv's public key
// accepts it. A signature Open would accept that is not the deterministic
// one can only be made with the private key and another nonce, never by
// Sign: OpenOwn refuses it, so it accepts a subset of what Open accepts.
// Callers check [Deterministic] once before relying on it.
func OpenOwn(priv ed25519.PrivateKey, prefix, msg string, maxLen int) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("pickupcode: open: bad private key: %w", ErrInvalid)
	}
	return open(prefix, msg, maxLen, func(head, sig []byte) bool {
		return subtle.ConstantTimeCompare(ed25519.Sign(priv, head), sig) == 1
	})
}

// Deterministic reports whether priv signs the same message twice with
// the same signature and that signature verifies: what [OpenOwn] relies on.
// It costs three signature operations; check once per key.
func Deterministic(priv ed25519.PrivateKey) bool {
	if len(priv) != ed25519.PrivateKeySize {
		return false
	}
	msg := []byte("kluis: deterministic signature check")
	a, b := ed25519.Sign(priv, msg), ed25519.Sign(priv, msg)
	return subtle.ConstantTimeCompare(a, b) == 1 && ed25519.Verify(priv.Public().(ed25519.PublicKey), msg, a)
}

// open parses a signed message and checks its signature with valid (nil:
// not checked, for ParseUnverifiedToken).
func open(prefix, msg string, maxLen int, valid func(head, sig []byte) bool) ([]byte, error) {
	if len(msg) > maxLen || !strings.HasPrefix(msg, prefix) {
		return nil, fmt.Errorf("pickupcode: not a %q message: %w", prefix, ErrBadSignature)
	}
	dot := strings.LastIndexByte(msg, '.')
	if dot <= len(prefix) {
		return nil, fmt.Errorf("pickupcode: message without signature: %w", ErrBadSignature)
	}
	head, sigText := msg[:dot], msg[dot+1:]
	sig, err := b64.DecodeString(sigText)
	if err != nil || len(sig) != ed25519.SignatureSize || b64.EncodeToString(sig) != sigText {
		return nil, fmt.Errorf("pickupcode: signature malformed: %w", ErrBadSignature)
	}
	if valid != nil && !valid([]byte(head), sig) {
		return nil, fmt.Errorf("pickupcode: signature invalid: %w", ErrBadSignature)
	}
	p, err := b64.DecodeString(head[len(prefix):])
	if err != nil || b64.EncodeToString(p) != head[len(prefix):] {
		return nil, fmt.Errorf("pickupcode: payload malformed: %w", ErrBadSignature)
	}
	return p, nil
}

// ParsePublicKey decodes a standard-base64 Ed25519 public key (the backend's
// signing.pub, the devices' offline.public_key_file).
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("pickupcode: public key is not base64 of %d bytes: %w", ed25519.PublicKeySize, ErrInvalid)
	}
	return ed25519.PublicKey(b), nil
}

// FormatPublicKey encodes pub in the form ParsePublicKey reads.
func FormatPublicKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// TokenPrefix starts every QR token (format version 1).
const TokenPrefix = "K1."

// MaxTokenLen bounds the input VerifyToken looks at.
const MaxTokenLen = 512

// CodeIDSize is the number of random bytes in a code id.
const CodeIDSize = 16

// FormatCodeID encodes a code id as tokens and the offline cache carry it
// (base64url).
func FormatCodeID(id []byte) string { return b64.EncodeToString(id) }

// ParseCodeID decodes FormatCodeID's form; it wants CodeIDSize bytes.
func ParseCodeID(s string) ([]byte, error) {
	id, err := b64.DecodeString(s)
	if err != nil || len(id) != CodeIDSize {
		return nil, fmt.Errorf("pickupcode: code id malformed: %w", ErrInvalid)
	}
	return id, nil
}

// QRHash is the offline cache's key of a QR token: base64url(SHA-256(code
// id)), so that the cache binds a token to its document without holding it.
func QRHash(codeID string) string {
	h := sha256.Sum256([]byte(codeID))
	return b64.EncodeToString(h[:])
}

// Claims are the signed content of a QR token.
type Claims struct {
	// Version is the payload version, 1.
	Version int `json:"v"`
	// CodeID is the base64url code id (16 random bytes).
	CodeID string `json:"cid"`
	// DeviceID is the device the token opens a compartment on.
	DeviceID string `json:"dev"`
	// Expires is the expiry in unix seconds.
	Expires int64 `json:"exp"`
}

// ExpiresAt returns the expiry as a time.
func (c Claims) ExpiresAt() time.Time { return time.Unix(c.Expires, 0).UTC() }

// SignToken makes a QR token for claims with priv.
func SignToken(priv ed25519.PrivateKey, c Claims) (string, error) {
	if c.Version == 0 {
		c.Version = 1
	}
	if c.CodeID == "" || c.DeviceID == "" || c.Expires <= 0 {
		return "", fmt.Errorf("pickupcode: sign token: code id, device and expiry are required: %w", ErrInvalid)
	}
	p, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("pickupcode: sign token: %w", err)
	}
	return Sign(priv, TokenPrefix, p)
}

// LooksLikeToken reports whether s has the shape of a QR token (not whether
// it is valid).
func LooksLikeToken(s string) bool { return strings.HasPrefix(s, TokenPrefix) }

// VerifyToken checks token's signature with pub, that it is for deviceID and
// that it has not expired at now. It works offline. Errors: ErrWrongCode
// (malformed, bad signature), ErrWrongDevice, ErrExpired (the claims are
// returned with these two), ErrInvalid (bad public key).
func VerifyToken(pub ed25519.PublicKey, token, deviceID string, now time.Time) (Claims, error) {
	p, err := Open(pub, TokenPrefix, token, MaxTokenLen)
	return tokenClaims(p, err, deviceID, now)
}

// VerifyOwnToken is [VerifyToken] for the token's issuer, who holds priv:
// the signature is checked with [OpenOwn] (about half the CPU time).
// Every token [SignToken] made with priv gets VerifyToken's answer with
// priv's public key.
func VerifyOwnToken(priv ed25519.PrivateKey, token, deviceID string, now time.Time) (Claims, error) {
	p, err := OpenOwn(priv, TokenPrefix, token, MaxTokenLen)
	return tokenClaims(p, err, deviceID, now)
}

// ParseUnverifiedToken reads a QR token's claims without checking its
// signature, for the token's issuer when it checks the token another way:
// the backend compares a keyed digest of the whole token, stored when it
// issued it, with the one of the token presented (backend/codes). Until
// that check holds nothing in the claims may be trusted or told: neither
// device nor expiry is judged here (see [Claims.Check]). The token must be
// well formed exactly as [VerifyToken] wants it (prefix, length, canonical
// encoding, a signature of the right size, version 1, a code id): a token
// refused here is refused there. Errors: ErrWrongCode (malformed).
func ParseUnverifiedToken(token string) (Claims, error) {
	p, err := open(TokenPrefix, token, MaxTokenLen, nil)
	return parseClaims(p, err)
}

// Check judges trusted claims for deviceID at now: ErrWrongDevice,
// ErrExpired, or nil.
func (c Claims) Check(deviceID string, now time.Time) error {
	if c.DeviceID != deviceID {
		return fmt.Errorf("pickupcode: token for another device: %w", ErrWrongDevice)
	}
	if !now.Before(c.ExpiresAt()) {
		return fmt.Errorf("pickupcode: token expired: %w", ErrExpired)
	}
	return nil
}

// tokenClaims decodes and checks an opened token's payload.
func tokenClaims(p []byte, err error, deviceID string, now time.Time) (Claims, error) {
	c, err := parseClaims(p, err)
	if err != nil {
		return Claims{}, err
	}
	return c, c.Check(deviceID, now)
}

// parseClaims decodes an opened token's payload.
func parseClaims(p []byte, err error) (Claims, error) {
	if errors.Is(err, ErrBadSignature) {
		return Claims{}, fmt.Errorf("%w: %w", err, ErrWrongCode)
	}
	if err != nil {
		return Claims{}, err
	}
	var c Claims
	if err := json.Unmarshal(p, &c); err != nil {
		return Claims{}, fmt.Errorf("pickupcode: token payload: %w", errors.Join(ErrWrongCode, err))
	}
	if c.Version != 1 {
		return Claims{}, fmt.Errorf("pickupcode: token version %d: %w", c.Version, ErrWrongCode)
	}
	if _, err := ParseCodeID(c.CodeID); err != nil {
		return Claims{}, fmt.Errorf("pickupcode: token code id malformed: %w", ErrWrongCode)
	}
	return c, nil
}
