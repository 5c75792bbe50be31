package deviceops

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"kluis/backend/devicelink"
	"kluis/controller/wire"
)

// CommandLink is what sends commands to devices and reads their results
// (devicelink.Link, or a SignedLink around it).
type CommandLink interface {
	// SendCommand stores and publishes cmd for device; it returns the
	// command id.
	SendCommand(ctx context.Context, device string, cmd wire.Command) (string, error)
	// CommandStatus reads what became of a command.
	CommandStatus(ctx context.Context, id string) (devicelink.CommandState, error)
	// Presence reads a device's stored presence.
	Presence(ctx context.Context, device string) (devicelink.PresenceState, error)
}

// SignedLinkOptions configure NewSignedLink.
type SignedLinkOptions struct {
	// Link sends the signed commands (required).
	Link *devicelink.Link
	// Key is the backend's signing key, the one devices know the public
	// half of (codes.Keys.Signing; required).
	Key ed25519.PrivateKey
	// TTL is the expiry a command without one gets; default 5 minutes
	// (at most wire.MaxCommandLifetime).
	TTL time.Duration
	// Clock gives the time; default time.Now.
	Clock func() time.Time
}

// SignedLink signs every command it sends with the backend's key for the
// device it goes to (wire.SignCommand): kluisd carries out no command
// without such a signature, so the broker's ACL is no longer the only
// thing between a stolen credential and the doors. It implements
// CommandLink and CommandSender.
type SignedLink struct {
	*devicelink.Link
	key ed25519.PrivateKey
	ttl time.Duration
	now func() time.Time
}

// NewSignedLink returns a SignedLink.
func NewSignedLink(o SignedLinkOptions) (*SignedLink, error) {
	if o.Link == nil || len(o.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("deviceops: a signed link needs a device link and the signing key")
	}
	if o.TTL <= 0 {
		o.TTL = 5 * time.Minute
	}
	o.TTL = min(o.TTL, wire.MaxCommandLifetime)
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &SignedLink{Link: o.Link, key: o.Key, ttl: o.TTL, now: o.Clock}, nil
}

// SendCommand fills in a missing id, issue time and expiry, signs cmd for
// device and sends it.
func (s *SignedLink) SendCommand(ctx context.Context, device string, cmd wire.Command) (string, error) {
	now := s.now().UTC()
	if cmd.ID == "" {
		cmd.ID = wire.NewID(now)
	}
	if cmd.Issued.IsZero() {
		cmd.Issued = now
	}
	if cmd.Expires.IsZero() {
		cmd.Expires = cmd.Issued.Add(s.ttl)
	}
	if err := wire.SignCommand(s.key, device, &cmd); err != nil {
		return "", fmt.Errorf("deviceops: sign command: %w", err)
	}
	return s.Link.SendCommand(ctx, device, cmd)
}

// AnswerSignerOptions configure NewAnswerSigner.
type AnswerSignerOptions struct {
	// Key is the backend's signing key (codes.Keys.Signing; required), the
	// one that signs commands.
	Key ed25519.PrivateKey
	// TTL is how long an answer's signature is valid; default
	// wire.ResponseTTL (at most wire.MaxResponseLifetime).
	TTL time.Duration
	// Clock gives the time; default time.Now.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// AnswerSigner signs every answer to a device's verify and staff requests
// for that device and request (wire.SignResponse): kluisd acts on no answer
// without such a signature, so whoever can publish on a device's response
// topics cannot answer its pending request with "ok".
type AnswerSigner struct {
	key ed25519.PrivateKey
	ttl time.Duration
	now func() time.Time
	log *slog.Logger
}

// NewAnswerSigner returns an AnswerSigner.
func NewAnswerSigner(o AnswerSignerOptions) (*AnswerSigner, error) {
	if len(o.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("deviceops: an answer signer needs the signing key")
	}
	if o.TTL <= 0 {
		o.TTL = wire.ResponseTTL
	}
	o.TTL = min(o.TTL, wire.MaxResponseLifetime)
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &AnswerSigner{key: o.Key, ttl: o.TTL, now: o.Clock, log: o.Logger.With("part", "answer-signer")}, nil
}

// Verifier returns v with every answer signed.
func (s *AnswerSigner) Verifier(v devicelink.Verifier) devicelink.Verifier {
	return devicelink.VerifierFunc(func(ctx context.Context, device string, req wire.VerifyRequest) wire.VerifyResponse {
		res := v.Verify(ctx, device, req)
		res.ID = req.ID
		if err := s.sign(device, &res); err != nil {
			// A handler bug: answer unavailable (signed, so the device
			// tries offline without reporting a forgery).
			s.log.Error("verify answer not signed; answering unavailable", "device", device, "err", err)
			res = wire.VerifyResponse{ID: req.ID, Result: wire.VerifyUnavailable}
			_ = s.sign(device, &res)
		}
		return res
	})
}

// Staff returns h with every answer signed.
func (s *AnswerSigner) Staff(h devicelink.StaffHandler) devicelink.StaffHandler {
	return devicelink.StaffHandlerFunc(func(ctx context.Context, device string, req wire.StaffRequest) wire.StaffResponse {
		res := h.HandleStaff(ctx, device, req)
		res.ID, res.Op = req.ID, req.Op
		if err := s.sign(device, &res); err != nil {
			s.log.Error("staff answer not signed; answering unavailable", "device", device, "op", req.Op, "err", err)
			res = wire.StaffResponse{ID: req.ID, Op: req.Op, Result: wire.StaffUnavailable}
			_ = s.sign(device, &res)
		}
		return res
	})
}

func (s *AnswerSigner) sign(device string, m wire.Message) error {
	return wire.SignResponse(s.key, device, m, s.now().Add(s.ttl))
}

// Sign signs an answer (a *wire.VerifyResponse or *wire.StaffResponse
// with its request's id) for device, as Verifier and Staff sign theirs:
// devicelink.Options.SignAnswer, for the link's own answers (a request
// over the device's budget answered "unavailable").
func (s *AnswerSigner) Sign(device string, m wire.Message) error {
	if err := s.sign(device, m); err != nil {
		return fmt.Errorf("deviceops: sign answer: %w", err)
	}
	return nil
}
