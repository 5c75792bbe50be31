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

// CommandSigPrefix starts every command signature. It differs from the QR
// token prefix (pickupcode.TokenPrefix, "K1."), and the prefix is covered by
// the signature, so a command signature never passes for a QR token nor a
// QR token for a command signature, although the backend signs both with
// the same key.
const CommandSigPrefix = "KC1."

// MaxCommandSig bounds the sig field (a signature is about 200 bytes).
const MaxCommandSig = 512

// CommandSkew is the clock difference between backend and device that a
// device tolerates: a command is carried out while the device's clock is
// before Expires + CommandSkew, and refused when Issued is more than
// CommandSkew after the device's clock. Devices keep their clocks with
// NTP; a skew beyond a minute is itself a fault to fix.
const CommandSkew = time.Minute

// MaxVerifyWait is the longest a kiosk waits for the answer to a verify
// request (kluisd's timeouts.verify may not be longer; default 4s)
// before it checks the code offline or gives up. MaxVerifyAge is the
// age, by the request's "at", beyond which no kiosk can still be
// waiting, clocks CommandSkew apart: the backend answers such a request
// unavailable without checking it, so that a request queued in a broker
// or sent again after a reconnect does not claim a citizen's code for
// nobody.
const (
	MaxVerifyWait = 2 * time.Minute
	MaxVerifyAge  = MaxVerifyWait + CommandSkew
)

// MaxCommandLifetime is the longest a signed command may be valid
// (Expires - Issued). A longer one is refused: a signed command must not
// stay replayable for long, and a device remembers the ids of the commands
// it carried out (journaled) until well after they expire.
const MaxCommandLifetime = time.Hour

// Errors of VerifyCommand.
var (
	// ErrUnsigned: the command has no signature, or the device has no key
	// to check one with.
	ErrUnsigned = errors.New("wire: command not signed")
	// ErrBadCommandSig: the signature is malformed, made with another key,
	// or covers another command.
	ErrBadCommandSig = errors.New("wire: command signature invalid")
	// ErrOtherDevice: the signature is for another device.
	ErrOtherDevice = errors.New("wire: command signed for another device")
	// ErrCommandExpired: the command's expiry (plus CommandSkew) has passed.
	ErrCommandExpired = errors.New("wire: command expired")
	// ErrCommandNotYetValid: issued more than CommandSkew in the future,
	// or valid for longer than MaxCommandLifetime.
	ErrCommandNotYetValid = errors.New("wire: command issued in the future or valid too long")
)

// CommandClaims are the signed content of a command signature: the device
// the command is for, its id, and the SHA-256 of the command's canonical
// encoding (see CommandDigest), which binds every other field (kind,
// issued, expires, addr, reason, by, settings, codes).
type CommandClaims struct {
	V      int    `json:"v"`
	Device string `json:"dev"`
	ID     string `json:"id"`
	// Sum is base64url(SHA-256(canonical command)).
	Sum string `json:"sum"`
}

// CommandDigest is base64url(SHA-256) of c's canonical encoding: the
// command as Encode writes it (v set, fields in their declared order, map
// keys sorted, times in RFC 3339 with nanoseconds) with sig empty. Both
// sides encode the same Go type, so the device recomputes it from the
// command it decoded.
func CommandDigest(c Command) (string, error) {
	c.Sig = ""
	c.V = Version
	b, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("wire: command digest: %w", err)
	}
	h := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(h[:]), nil
}

// SignCommand signs c for device with the backend's key and sets c.Sig.
// c must be complete (id, kind, issued, expires and the kind's fields):
// any later change invalidates the signature.
func SignCommand(priv ed25519.PrivateKey, device string, c *Command) error {
	if err := ValidDeviceID(device); err != nil {
		return err
	}
	c.V = Version
	c.Sig = ""
	if err := c.Validate(); err != nil {
		return err
	}
	if c.Expires.Sub(c.Issued) > MaxCommandLifetime {
		return fmt.Errorf("wire: command valid for %v, at most %v: %w", c.Expires.Sub(c.Issued), MaxCommandLifetime, ErrInvalid)
	}
	sum, err := CommandDigest(*c)
	if err != nil {
		return err
	}
	p, err := json.Marshal(CommandClaims{V: 1, Device: device, ID: c.ID, Sum: sum})
	if err != nil {
		return fmt.Errorf("wire: sign command: %w", err)
	}
	sig, err := pickupcode.Sign(priv, CommandSigPrefix, p)
	if err != nil {
		return fmt.Errorf("wire: sign command: %w", err)
	}
	c.Sig = sig
	return nil
}

// VerifyCommand checks that c carries a signature made with pub for this
// device and this very command, and that the command is valid at now
// within CommandSkew. It does not know which ids were carried out before:
// the device refuses a replay by its journal of command ids. Errors wrap
// ErrUnsigned, ErrBadCommandSig, ErrOtherDevice, ErrCommandExpired or
// ErrCommandNotYetValid.
func VerifyCommand(pub ed25519.PublicKey, device string, c Command, now time.Time) error {
	if err := VerifyCommandSignature(pub, device, c); err != nil {
		return err
	}
	if c.Expires.Sub(c.Issued) > MaxCommandLifetime {
		return fmt.Errorf("valid for %v, at most %v: %w", c.Expires.Sub(c.Issued), MaxCommandLifetime, ErrCommandNotYetValid)
	}
	if c.Issued.After(now.Add(CommandSkew)) {
		return fmt.Errorf("issued %s, more than %v ahead of this device's clock: %w",
			c.Issued.UTC().Format(time.RFC3339), CommandSkew, ErrCommandNotYetValid)
	}
	if !now.Before(c.Expires.Add(CommandSkew)) {
		return fmt.Errorf("expired at %s: %w", c.Expires.UTC().Format(time.RFC3339), ErrCommandExpired)
	}
	return nil
}

// VerifyCommandSignature checks only that c carries a signature made with
// pub for this device and this very command, whatever the time: what
// VerifyCommand checks besides the validity period. kluisd's offline cache
// checks with it, at every start, the code_sync commands it keeps (long
// expired by then, but still the backend's word on the codes). Errors wrap
// ErrUnsigned, ErrBadCommandSig or ErrOtherDevice.
func VerifyCommandSignature(pub ed25519.PublicKey, device string, c Command) error {
	if c.Sig == "" {
		return fmt.Errorf("no sig: %w", ErrUnsigned)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("no public key to check it with: %w", ErrUnsigned)
	}
	p, err := pickupcode.Open(pub, CommandSigPrefix, c.Sig, MaxCommandSig)
	if err != nil {
		return fmt.Errorf("%v: %w", err, ErrBadCommandSig)
	}
	var cl CommandClaims
	if err := json.Unmarshal(p, &cl); err != nil || cl.V != 1 {
		return fmt.Errorf("claims unreadable: %w", ErrBadCommandSig)
	}
	sum, err := CommandDigest(c)
	if err != nil {
		return err
	}
	if cl.ID != c.ID || cl.Sum != sum {
		return fmt.Errorf("signature covers another command: %w", ErrBadCommandSig)
	}
	if cl.Device != device {
		return fmt.Errorf("signed for device %q: %w", truncate(cl.Device, MaxDeviceID), ErrOtherDevice)
	}
	return nil
}

// CommandDuplicateWhy is why kluisd refuses a command it already carried
// out (the same id, e.g. a QoS-1 redelivery): the end of a command_refused
// event's detail and of its cmdres detail. A duplicate is normal, not an
// attack.
const CommandDuplicateWhy = "duplicate: already carried out"

// The reasons CommandRefusalReason returns: bounded, so that the backend
// can count command_refused events by reason in a metric label.
const (
	RefusedUnsigned     = "unsigned"
	RefusedBadSignature = "bad_signature"
	RefusedOtherDevice  = "other_device"
	RefusedExpired      = "expired"
	RefusedNotYetValid  = "not_yet_valid"
	RefusedDuplicate    = "duplicate"
	// RefusedOther: a detail none of the above matches (another kluisd
	// version's wording, or cut at 200 bytes).
	RefusedOther = "other"
)

// CommandRefusalReasons lists every reason CommandRefusalReason returns.
func CommandRefusalReasons() []string {
	return []string{RefusedUnsigned, RefusedBadSignature, RefusedOtherDevice, RefusedExpired,
		RefusedNotYetValid, RefusedDuplicate, RefusedOther}
}

// CommandRefusalReason classifies the detail of a command_refused event
// ("<kind>: <why>", why being VerifyCommand's error or
// CommandDuplicateWhy) into one of CommandRefusalReasons. The detail is
// the device's text: only the bounded reason should reach a metric label.
func CommandRefusalReason(detail string) string {
	_, why, _ := strings.Cut(detail, ": ")
	switch {
	case why == CommandDuplicateWhy:
		return RefusedDuplicate
	case strings.HasSuffix(why, ErrUnsigned.Error()):
		return RefusedUnsigned
	case strings.HasSuffix(why, ErrBadCommandSig.Error()):
		return RefusedBadSignature
	case strings.HasSuffix(why, ErrOtherDevice.Error()):
		return RefusedOtherDevice
	case strings.HasSuffix(why, ErrCommandExpired.Error()):
		return RefusedExpired
	case strings.HasSuffix(why, ErrCommandNotYetValid.Error()):
		return RefusedNotYetValid
	}
	return RefusedOther
}
