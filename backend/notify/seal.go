package notify

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// sealVersion is the first byte of a sealed secret: AES-256-GCM, 12-byte
// random nonce, additional data bound to the document and kind.
const sealVersion = 1

// errUnsealable means a sealed secret cannot be opened: it was made under
// another key (the backend's keys changed) or altered.
var errUnsealable = errors.New("sealed secret cannot be opened (keys changed or data altered)")

// sealer seals the codes of queued ready messages, so that the outbox never
// holds a PIN or QR token in clear.
// During a key rotation it also opens, never seals, under the previous key.
type sealer struct {
	aead cipher.AEAD
	// previous opens what was sealed before a key rotation; nil: none.
	previous cipher.AEAD
}

func newSealer(key, previous []byte) (*sealer, error) {
	g, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	s := &sealer{aead: g}
	if previous != nil {
		if s.previous, err = newAEAD(previous); err != nil {
			return nil, fmt.Errorf("previous: %w", err)
		}
	}
	return s, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("notify: outbox seal key has %d bytes, want 32: %w", len(key), ErrInvalid)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("notify: outbox seal key: %w", err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("notify: outbox seal key: %w", err)
	}
	return g, nil
}

// sealAAD binds a sealed secret to its document and kind: a blob copied
// into another document's row does not open.
func sealAAD(documentID, kind string) []byte {
	return []byte("kluis notify outbox v1\x00" + documentID + "\x00" + kind)
}

func (s *sealer) seal(plain []byte, documentID, kind string) ([]byte, error) {
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("notify: seal: %w", err)
	}
	return s.aead.Seal(out, out[1:], plain, sealAAD(documentID, kind)), nil
}

func (s *sealer) open(sealed []byte, documentID, kind string) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, errUnsealable
	}
	aad := sealAAD(documentID, kind)
	plain, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], aad)
	if err != nil && s.previous != nil {
		plain, err = s.previous.Open(nil, sealed[1:1+ns], sealed[1+ns:], aad)
	}
	if err != nil {
		return nil, errUnsealable
	}
	return plain, nil
}
