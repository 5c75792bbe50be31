package broker

import (
	"context"
	"crypto/subtle"
	"strings"

	"kluis/controller/wire"
)

// Role is what a client may do.
type Role string

// Roles.
const (
	RoleDevice  Role = "device"
	RoleBackend Role = "backend"
)

// Allowed reports whether a client of role, authenticated as device (the
// device id; ignored for the backend), may publish to (write) or subscribe
// to and receive (read) topic, which may be a filter.
func Allowed(role Role, device, topic string, write bool) bool {
	switch role {
	case RoleBackend:
		return true
	case RoleDevice:
		if strings.HasPrefix(topic, "$") {
			return false // $share, $SYS
		}
		t, err := wire.ParseTopic(topic) // refuses wildcards
		if err != nil || t.Device != device {
			return false
		}
		return t.Kind.FromDevice() == write
	}
	return false
}

// ValidClientID reports whether a device may connect with clientID: the
// device id itself, "kluisd-{device}" (kluisd's default) or
// "{device}.{anything}".
func ValidClientID(device, clientID string) bool {
	return clientID == device || clientID == "kluisd-"+device || strings.HasPrefix(clientID, device+".")
}

// WithInternalBackend returns a CredentialsFunc that accepts user and
// password as RoleBackend (compared in constant time) and asks next for
// everyone else: kluis-backend's own client on its embedded broker, with a
// password generated at start-up, needs no row in any table.
func WithInternalBackend(user, password string, next CredentialsFunc) CredentialsFunc {
	return func(ctx context.Context, u, p string) (string, Role, bool) {
		userOK := subtle.ConstantTimeCompare([]byte(u), []byte(user)) == 1
		passOK := subtle.ConstantTimeCompare([]byte(p), []byte(password)) == 1
		if userOK && password != "" {
			if passOK {
				return "", RoleBackend, true
			}
			return "", "", false
		}
		if next == nil {
			return "", "", false
		}
		return next(ctx, u, p)
	}
}
