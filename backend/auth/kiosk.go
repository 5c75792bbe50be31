package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Kiosk logins: staff log in at a device's kiosk with a staff PIN or by
// scanning their badge. Both are stored as keyed digests
// (HMAC-SHA256 under Options.KioskKey) so that a login can find its user;
// the key never leaves the backend. A kiosk login issues a short-lived
// token of kind "kiosk", which the HTTP API refuses.

var (
	// ErrKioskDisabled means no kiosk key is configured.
	ErrKioskDisabled = errors.New("auth: kiosk logins are not configured")
	// ErrInvalidKioskPIN means the staff PIN is not 6 to 12 digits.
	ErrInvalidKioskPIN = errors.New("auth: a staff PIN must be 6 to 12 digits")
	// ErrInvalidBadge means the badge id is not 4 to 128 printable characters.
	ErrInvalidBadge = errors.New("auth: a badge id must be 4 to 128 printable characters")
	// ErrKioskCredentialTaken means another user already has this PIN or badge.
	ErrKioskCredentialTaken = errors.New("auth: this staff PIN or badge is already in use; choose another")
)

var (
	kioskPINRule = regexp.MustCompile(`^[0-9]{6,12}$`)
	badgeRule    = regexp.MustCompile(`^[\x21-\x7e]{4,128}$`)
)

// DefaultKioskTTL is how long a kiosk session lasts.
const DefaultKioskTTL = 15 * time.Minute

func (s *Service) kioskDigest(kind, secret string) []byte {
	m := hmac.New(sha256.New, s.kioskKey)
	m.Write([]byte(kind + "\x00" + secret))
	return m.Sum(nil)
}

// SetKioskCredentials sets (non-empty), clears ("") or leaves alone (nil)
// a user's staff PIN and badge.
func (s *Service) SetKioskCredentials(ctx context.Context, userID int64, pin, badge *string) error {
	if len(s.kioskKey) == 0 {
		return ErrKioskDisabled
	}
	var pinD, badgeD []byte
	if pin != nil && *pin != "" {
		if !kioskPINRule.MatchString(*pin) {
			return ErrInvalidKioskPIN
		}
		pinD = s.kioskDigest("pin", *pin)
	}
	if badge != nil && *badge != "" {
		if !badgeRule.MatchString(*badge) {
			return ErrInvalidBadge
		}
		badgeD = s.kioskDigest("badge", *badge)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE auth_users SET
		kiosk_pin_digest = CASE WHEN $2 THEN $3::bytea ELSE kiosk_pin_digest END,
		badge_digest = CASE WHEN $4 THEN $5::bytea ELSE badge_digest END
		WHERE id = $1`, userID, pin != nil, pinD, badge != nil, badgeD)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" {
			return ErrKioskCredentialTaken
		}
		return fmt.Errorf("auth: set kiosk credentials: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: user %d", ErrNotFound, userID)
	}
	return nil
}

// KioskLogin finds the staff member by PIN (or badge, when pin is empty)
// and issues a kiosk session token. Staff (load, retrieve), technicians
// (test-open) and admins (both) may log in at a kiosk; what each may do
// there is decided per operation (backend/deviceops). A disabled user or an
// unknown PIN or badge is ErrInvalidCredentials.
func (s *Service) KioskLogin(ctx context.Context, pin, badge string) (Issued, error) {
	if len(s.kioskKey) == 0 {
		return Issued{}, ErrKioskDisabled
	}
	var col string
	var digest []byte
	switch {
	case pin != "" && kioskPINRule.MatchString(pin):
		col, digest = "kiosk_pin_digest", s.kioskDigest("pin", pin)
	case pin == "" && badge != "" && badgeRule.MatchString(badge):
		col, digest = "badge_digest", s.kioskDigest("badge", badge)
	default:
		return Issued{}, ErrInvalidCredentials
	}
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM auth_users WHERE `+col+` = $1`, digest))
	if errors.Is(err, pgx.ErrNoRows) {
		return Issued{}, ErrInvalidCredentials
	}
	if err != nil {
		return Issued{}, fmt.Errorf("auth: kiosk login: %w", err)
	}
	if u.Disabled {
		return Issued{}, ErrInvalidCredentials
	}
	exp := s.now().Add(s.kioskTTL)
	return s.issue(ctx, u, "kiosk", "", &exp)
}
