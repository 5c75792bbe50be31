package wire

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"kluis/controller/pickupcode"
)

// ResponseSigPrefix starts every signature of an answer to a device's
// request (verify/res, staff/res). It differs from the command prefix
// (CommandSigPrefix, "KC1.") and the QR token prefix ("K1."), and it is
// covered by the signature, so an answer's signature never passes for a
// command's or a QR token, nor either of those for an answer's, although
// the backend signs all three with the same key.
const ResponseSigPrefix = "KR1."

// MaxResponseSig bounds the sig field of an answer (a signature is about
// 230 bytes).
const MaxResponseSig = 512

// ResponseTTL is how long the backend's signature of an answer is valid.
// A device waits a few seconds for an answer (timeouts.verify) and only for
// the request id it sent; the expiry bounds what a recorded answer is
// worth beyond that.
const ResponseTTL = time.Minute

// MaxResponseLifetime is the furthest in the future (beyond the clock
// skew) an answer's expiry may lie; a signature valid for longer is
// refused.
const MaxResponseLifetime = 5 * time.Minute

// Errors of VerifyResponseSig.
var (
	// ErrResponseUnsigned: the answer has no signature, or the device has
	// no key to check one with.
	ErrResponseUnsigned = errors.New("wire: answer not signed")
	// ErrBadResponseSig: the signature is malformed, made with another
	// key, covers another answer or is valid for too long.
	ErrBadResponseSig = errors.New("wire: answer signature invalid")
	// ErrResponseOtherDevice: the signature is for another device.
	ErrResponseOtherDevice = errors.New("wire: answer signed for another device")
	// ErrResponseOtherRequest: the signature is for another request.
	ErrResponseOtherRequest = errors.New("wire: answer signed for another request")
	// ErrResponseExpired: the signature's expiry (plus CommandSkew) has
	// passed.
	ErrResponseExpired = errors.New("wire: answer signature expired")
)

// ResponseClaims are the signed content of an answer's signature: the
// device, the kind of answer, the request id it answers, the SHA-256 of the
// answer's canonical encoding (see ResponseDigest: result, document,
// compartment, session, everything) and the expiry.
type ResponseClaims struct {
	V      int    `json:"v"`
	Device string `json:"dev"`
	Kind   Kind   `json:"kind"`
	ID     string `json:"id"`
	// Sum is base64url(SHA-256(canonical answer)).
	Sum string `json:"sum"`
	// Exp is the expiry in Unix seconds.
	Exp int64 `json:"exp"`
}

// ResponseDigest is base64url(SHA-256) of the canonical encoding of m, a
// *VerifyResponse or *StaffResponse: as Encode writes it (v set, fields in
// their declared order, times in RFC 3339 with nanoseconds) with sig
// empty. m is not changed.
func ResponseDigest(m Message) (string, error) {
	var b []byte
	var err error
	switch r := m.(type) {
	case *VerifyResponse:
		c := *r
		c.V, c.Sig = Version, ""
		b, err = json.Marshal(&c)
	case *StaffResponse:
		c := *r
		c.V, c.Sig = Version, ""
		b, err = json.Marshal(&c)
	default:
		return "", fmt.Errorf("wire: %T is no answer to sign: %w", m, ErrInvalid)
	}
	if err != nil {
		return "", fmt.Errorf("wire: answer digest: %w", err)
	}
	h := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(h[:]), nil
}

// responseFields gives the id and a pointer to the sig of an answer.
func responseFields(m Message) (id string, sig *string, err error) {
	switch r := m.(type) {
	case *VerifyResponse:
		return r.ID, &r.Sig, nil
	case *StaffResponse:
		return r.ID, &r.Sig, nil
	}
	return "", nil, fmt.Errorf("wire: %T is no answer to sign: %w", m, ErrInvalid)
}

// SignResponse signs m (a *VerifyResponse or *StaffResponse) for device
// with the backend's key, valid until expires, and sets its Sig. m must be
// complete (its id is the request's): any later change invalidates the
// signature.
func SignResponse(priv ed25519.PrivateKey, device string, m Message, expires time.Time) error {
	if err := ValidDeviceID(device); err != nil {
		return err
	}
	id, sig, err := responseFields(m)
	if err != nil {
		return err
	}
	*sig = ""
	m.setVersion()
	if err := m.Validate(); err != nil {
		return err
	}
	sum, err := ResponseDigest(m)
	if err != nil {
		return err
	}
	p, err := json.Marshal(ResponseClaims{V: 1, Device: device, Kind: m.MessageKind(), ID: id, Sum: sum, Exp: expires.Unix()})
	if err != nil {
		return fmt.Errorf("wire: sign answer: %w", err)
	}
	s, err := pickupcode.Sign(priv, ResponseSigPrefix, p)
	if err != nil {
		return fmt.Errorf("wire: sign answer: %w", err)
	}
	*sig = s
	return nil
}

// VerifyResponseSig checks that m (a *VerifyResponse or *StaffResponse)
// carries a signature made with pub for this device, for the request
// requestID and for this very answer, and that it has not expired at now
// (within CommandSkew). Errors wrap ErrResponseUnsigned, ErrBadResponseSig,
// ErrResponseOtherDevice, ErrResponseOtherRequest or ErrResponseExpired.
func VerifyResponseSig(pub ed25519.PublicKey, device, requestID string, m Message, now time.Time) error {
	id, sig, err := responseFields(m)
	if err != nil {
		return err
	}
	if *sig == "" {
		return fmt.Errorf("no sig: %w", ErrResponseUnsigned)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("no public key to check it with: %w", ErrResponseUnsigned)
	}
	p, err := pickupcode.Open(pub, ResponseSigPrefix, *sig, MaxResponseSig)
	if err != nil {
		return fmt.Errorf("%v: %w", err, ErrBadResponseSig)
	}
	var cl ResponseClaims
	if err := json.Unmarshal(p, &cl); err != nil || cl.V != 1 {
		return fmt.Errorf("claims unreadable: %w", ErrBadResponseSig)
	}
	if cl.Kind != m.MessageKind() {
		return fmt.Errorf("signature of a %q answer: %w", truncate(string(cl.Kind), 20), ErrBadResponseSig)
	}
	if cl.ID != requestID {
		return fmt.Errorf("signed for request %q: %w", truncate(cl.ID, MaxID), ErrResponseOtherRequest)
	}
	sum, err := ResponseDigest(m)
	if err != nil {
		return err
	}
	if id != requestID || cl.Sum != sum {
		return fmt.Errorf("signature covers another answer: %w", ErrBadResponseSig)
	}
	if cl.Device != device {
		return fmt.Errorf("signed for device %q: %w", truncate(cl.Device, MaxDeviceID), ErrResponseOtherDevice)
	}
	exp := time.Unix(cl.Exp, 0)
	if exp.After(now.Add(CommandSkew + MaxResponseLifetime)) {
		return fmt.Errorf("valid until %s, more than %v ahead: %w", exp.UTC().Format(time.RFC3339), MaxResponseLifetime, ErrBadResponseSig)
	}
	if !now.Before(exp.Add(CommandSkew)) {
		return fmt.Errorf("expired at %s: %w", exp.UTC().Format(time.RFC3339), ErrResponseExpired)
	}
	return nil
}
