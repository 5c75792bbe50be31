package codes

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// TokenPrefix starts every QR token (format version 1).
const TokenPrefix = "K1."

// maxTokenLen bounds the input VerifyToken looks at.
const maxTokenLen = 512

// CodeIDSize is the number of random bytes in a code id.
const CodeIDSize = 16

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

var b64 = base64.RawURLEncoding

// SignToken makes a QR token for claims with priv.
func SignToken(priv ed25519.PrivateKey, c Claims) (string, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("codes: sign token: bad key: %w", ErrInvalid)
	}
	if c.Version == 0 {
		c.Version = 1
	}
	if c.CodeID == "" || c.DeviceID == "" || c.Expires <= 0 {
		return "", fmt.Errorf("codes: sign token: code id, device and expiry are required: %w", ErrInvalid)
	}
	p, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("codes: sign token: %w", err)
	}
	head := TokenPrefix + b64.EncodeToString(p)
	sig := ed25519.Sign(priv, []byte(head))
	return head + "." + b64.EncodeToString(sig), nil
}

// LooksLikeToken reports whether s has the shape of a QR token (not whether
// it is valid).
func LooksLikeToken(s string) bool { return strings.HasPrefix(s, TokenPrefix) }

// VerifyToken checks token's signature with pub, that it is for deviceID and
// that it has not expired at now. It works offline. Errors: ErrWrongCode
// (malformed, bad signature), ErrWrongDevice, ErrExpired.
func VerifyToken(pub ed25519.PublicKey, token, deviceID string, now time.Time) (Claims, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Claims{}, fmt.Errorf("codes: verify token: bad public key: %w", ErrInvalid)
	}
	if len(token) > maxTokenLen || !strings.HasPrefix(token, TokenPrefix) {
		return Claims{}, fmt.Errorf("codes: not a token: %w", ErrWrongCode)
	}
	dot := strings.LastIndexByte(token, '.')
	if dot <= len(TokenPrefix) {
		return Claims{}, fmt.Errorf("codes: token without signature: %w", ErrWrongCode)
	}
	head, sigText := token[:dot], token[dot+1:]
	sig, err := b64.DecodeString(sigText)
	// Only the canonical encoding is accepted, so one token has one spelling.
	if err != nil || len(sig) != ed25519.SignatureSize || b64.EncodeToString(sig) != sigText {
		return Claims{}, fmt.Errorf("codes: token signature malformed: %w", ErrWrongCode)
	}
	if !ed25519.Verify(pub, []byte(head), sig) {
		return Claims{}, fmt.Errorf("codes: token signature invalid: %w", ErrWrongCode)
	}
	p, err := b64.DecodeString(head[len(TokenPrefix):])
	if err != nil || b64.EncodeToString(p) != head[len(TokenPrefix):] {
		return Claims{}, fmt.Errorf("codes: token payload malformed: %w", ErrWrongCode)
	}
	var c Claims
	if err := json.Unmarshal(p, &c); err != nil {
		return Claims{}, fmt.Errorf("codes: token payload: %w", errors.Join(ErrWrongCode, err))
	}
	if c.Version != 1 {
		return Claims{}, fmt.Errorf("codes: token version %d: %w", c.Version, ErrWrongCode)
	}
	if id, err := b64.DecodeString(c.CodeID); err != nil || len(id) != CodeIDSize {
		return Claims{}, fmt.Errorf("codes: token code id malformed: %w", ErrWrongCode)
	}
	if c.DeviceID != deviceID {
		return c, fmt.Errorf("codes: token for another device: %w", ErrWrongDevice)
	}
	if !now.Before(c.ExpiresAt()) {
		return c, fmt.Errorf("codes: token expired: %w", ErrExpired)
	}
	return c, nil
}
