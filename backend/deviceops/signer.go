package deviceops

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
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
