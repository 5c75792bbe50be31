package wire

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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

// ResponseGroupSigPrefix starts the signature of an answer signed with
// others in one group (SignResponseGroup): "KR2." + base64url(claims) +
// "." + base64url(path) + "." + base64url(Ed25519 signature of "KR2." +
// base64url(root)). The path is one byte, the answer's index in its group,
// then the sibling hashes from the leaf up. Neither form's signature
// passes for the other's: the prefix is in what is signed.
const ResponseGroupSigPrefix = "KR2."

// MaxResponseGroup bounds the answers of one group signature (a path of
// at most 6 hashes).
const MaxResponseGroup = 1 << maxResponseDepth

// maxResponseDepth bounds a group signature's path.
const maxResponseDepth = 6

// MaxResponseSig bounds the sig field of an answer: a "KR1." signature is
// about 230 bytes (at most about 420), a "KR2." one about 350 bytes in a
// group of 4, at most about 690 with the longest device and request ids
// in a group of MaxResponseGroup.
const MaxResponseSig = 1024

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
	// key, covers another answer (or its group's path does not lead to
	// the signed root) or is valid for too long.
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
// with the backend's key, valid until expires, and sets its Sig (the
// "KR1." form: one signature per answer). m must be complete (its id is
// the request's): any later change invalidates the signature.
func SignResponse(priv ed25519.PrivateKey, device string, m Message, expires time.Time) error {
	l, err := PrepareResponse(device, m, expires)
	if err != nil {
		return err
	}
	s, err := pickupcode.Sign(priv, ResponseSigPrefix, l.claims)
	if err != nil {
		return fmt.Errorf("wire: sign answer: %w", err)
	}
	*l.sig = s
	return nil
}

// ResponseLeaf is an answer made ready for SignResponseGroup: its claims
// and their leaf hash in the group's hash tree.
type ResponseLeaf struct {
	claims []byte
	hash   [sha256.Size]byte
	sig    *string
}

// PrepareResponse checks m (a *VerifyResponse or *StaffResponse) and its
// device, clears its Sig and computes its claims (valid until expires),
// for SignResponseGroup, which sets the Sig. m must not change until then.
func PrepareResponse(device string, m Message, expires time.Time) (*ResponseLeaf, error) {
	if err := ValidDeviceID(device); err != nil {
		return nil, err
	}
	id, sig, err := responseFields(m)
	if err != nil {
		return nil, err
	}
	*sig = ""
	m.setVersion()
	if err := m.Validate(); err != nil {
		return nil, err
	}
	sum, err := ResponseDigest(m)
	if err != nil {
		return nil, err
	}
	p, err := json.Marshal(ResponseClaims{V: 1, Device: device, Kind: m.MessageKind(), ID: id, Sum: sum, Exp: expires.Unix()})
	if err != nil {
		return nil, fmt.Errorf("wire: sign answer: %w", err)
	}
	return &ResponseLeaf{claims: p, hash: leafHash(p), sig: sig}, nil
}

// SignResponseGroup signs the answers of leaves (at most MaxResponseGroup)
// together with one Ed25519 signature (the "KR2." form) and sets each
// one's Sig: a hash tree over their claims (leaf and node hashes
// domain-separated), the signature over its root, and each answer
// carrying its claims, its path to the root and that signature. A device
// checks one as it checks a "KR1." answer, with one signature check
// (VerifyResponseSig).
func SignResponseGroup(priv ed25519.PrivateKey, leaves []*ResponseLeaf) error {
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("wire: sign answers: bad key: %w", ErrInvalid)
	}
	if len(leaves) == 0 || len(leaves) > MaxResponseGroup {
		return fmt.Errorf("wire: sign answers: %d answers in a group (1 to %d): %w", len(leaves), MaxResponseGroup, ErrInvalid)
	}
	// levels[0] are the leaves; an odd node at the end of a level is
	// paired with itself, so every path is as long as the tree is deep
	// and a leaf's index spells its way up.
	level := make([][sha256.Size]byte, len(leaves))
	for i, l := range leaves {
		level[i] = l.hash
	}
	levels := [][][sha256.Size]byte{level}
	for len(level) > 1 {
		up := make([][sha256.Size]byte, (len(level)+1)/2)
		for i := range up {
			r := min(2*i+1, len(level)-1)
			up[i] = nodeHash(&level[2*i], &level[r])
		}
		levels = append(levels, up)
		level = up
	}
	root := level[0]
	head := ResponseGroupSigPrefix + base64.RawURLEncoding.EncodeToString(root[:])
	sigText := base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(head)))
	depth := len(levels) - 1
	proof := make([]byte, 1+depth*sha256.Size)
	for i, l := range leaves {
		proof[0] = byte(i)
		at := i
		for d := range depth {
			sib := min(at^1, len(levels[d])-1)
			copy(proof[1+d*sha256.Size:], levels[d][sib][:])
			at /= 2
		}
		*l.sig = ResponseGroupSigPrefix + base64.RawURLEncoding.EncodeToString(l.claims) + "." + base64.RawURLEncoding.EncodeToString(proof) + "." + sigText
	}
	return nil
}

// leafHash and nodeHash are the group tree's hashes, domain-separated
// (a leaf never passes for a node nor a node for a leaf).
func leafHash(claims []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(claims)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

func nodeHash(left, right *[sha256.Size]byte) [sha256.Size]byte {
	var b [1 + 2*sha256.Size]byte
	b[0] = 1
	copy(b[1:], left[:])
	copy(b[1+sha256.Size:], right[:])
	return sha256.Sum256(b[:])
}

// openGroup checks a "KR2." signature with pub and returns its claims:
// the path folded from the claims' leaf to the root, the signature over
// the root. Only the canonical encoding is accepted.
func openGroup(pub ed25519.PublicKey, sig string) ([]byte, error) {
	if len(sig) > MaxResponseSig || !strings.HasPrefix(sig, ResponseGroupSigPrefix) {
		return nil, errors.New("not a group signature")
	}
	parts := strings.Split(sig[len(ResponseGroupSigPrefix):], ".")
	if len(parts) != 3 {
		return nil, errors.New("group signature malformed")
	}
	canon := func(s string) ([]byte, bool) {
		b, err := base64.RawURLEncoding.DecodeString(s)
		return b, err == nil && base64.RawURLEncoding.EncodeToString(b) == s
	}
	claims, ok1 := canon(parts[0])
	proof, ok2 := canon(parts[1])
	sg, ok3 := canon(parts[2])
	if !ok1 || !ok2 || !ok3 || len(claims) == 0 || len(sg) != ed25519.SignatureSize {
		return nil, errors.New("group signature malformed")
	}
	if len(proof) < 1 || (len(proof)-1)%sha256.Size != 0 || (len(proof)-1)/sha256.Size > maxResponseDepth {
		return nil, errors.New("group signature's path malformed")
	}
	depth := (len(proof) - 1) / sha256.Size
	index := int(proof[0])
	if index >= 1<<depth {
		return nil, errors.New("group signature's index beyond its path")
	}
	cur := leafHash(claims)
	for d := range depth {
		var sib [sha256.Size]byte
		copy(sib[:], proof[1+d*sha256.Size:])
		if index>>d&1 == 1 {
			cur = nodeHash(&sib, &cur)
		} else {
			cur = nodeHash(&cur, &sib)
		}
	}
	head := ResponseGroupSigPrefix + base64.RawURLEncoding.EncodeToString(cur[:])
	if !ed25519.Verify(pub, []byte(head), sg) {
		return nil, errors.New("group signature invalid")
	}
	return claims, nil
}

// VerifyResponseSig checks that m (a *VerifyResponse or *StaffResponse)
// carries a signature ("KR1." or "KR2.": either form is accepted, one
// Ed25519 check each) made with pub for this device, for the request
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
	var p []byte
	if strings.HasPrefix(*sig, ResponseGroupSigPrefix) {
		p, err = openGroup(pub, *sig)
	} else {
		p, err = pickupcode.Open(pub, ResponseSigPrefix, *sig, MaxResponseSig)
	}
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
