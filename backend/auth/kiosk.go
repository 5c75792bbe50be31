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
//
// A PIN set from now on has MinKioskPINDigits digits or more; PINs set
// before, of 6 or 7 digits, keep logging in. The digest hides the PIN's
// length, so it is kept beside it (auth_users.kiosk_pin_digits, migration
// 0184): stored when a PIN is set, and learnt when a PIN set before the
// migration is next used. User.KioskPINShort tells the console whom to
// ask for a new one.

var (
	// ErrKioskDisabled means no kiosk key is configured.
	ErrKioskDisabled = errors.New("auth: kiosk logins are not configured")
	// ErrInvalidKioskPIN means a new staff PIN is not 8 to 12 digits.
	ErrInvalidKioskPIN = fmt.Errorf("auth: a staff PIN must be %d to %d digits", MinKioskPINDigits, MaxKioskPINDigits)
	// ErrInvalidBadge means the badge id is not 4 to 128 printable characters.
	ErrInvalidBadge = errors.New("auth: a badge id must be 4 to 128 printable characters")
	// ErrKioskCredentialTaken means another user already has this PIN or badge.
	ErrKioskCredentialTaken = errors.New("auth: this staff PIN or badge is already in use; choose another")
)

var (
	// newPINRule is what a PIN set from now on must be; loginPINRule
	// what a login may give (PINs set before the rule keep working).
	newPINRule   = regexp.MustCompile(fmt.Sprintf(`^[0-9]{%d,%d}$`, MinKioskPINDigits, MaxKioskPINDigits))
	loginPINRule = regexp.MustCompile(`^[0-9]{6,12}$`)
	badgeRule    = regexp.MustCompile(`^[\x21-\x7e]{4,128}$`)
)

// MinKioskPINDigits is the shortest staff PIN that may be set; the SQL
// texts that tell a short PIN take it as a parameter (pinShortCol).
// MaxKioskPINDigits is the longest.
const (
	MinKioskPINDigits = 8
	MaxKioskPINDigits = 12
)

// DefaultKioskTTL is how long a kiosk session lasts.
const DefaultKioskTTL = 15 * time.Minute

func (s *Service) kioskDigest(kind, secret string) []byte {
	return kioskDigestUnder(s.kioskKey, kind, secret)
}

func kioskDigestUnder(key []byte, kind, secret string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(kind + "\x00" + secret))
	return m.Sum(nil)
}

// kioskDigests are the digests a PIN or badge may be stored under: the
// kiosk key's and, during a rotation, the previous key's.
func (s *Service) kioskDigests(kind, secret string) [][]byte {
	out := [][]byte{s.kioskDigest(kind, secret)}
	if len(s.kioskPrev) > 0 {
		out = append(out, kioskDigestUnder(s.kioskPrev, kind, secret))
	}
	return out
}

// SetKioskCredentials sets (non-empty), clears ("") or leaves alone (nil)
// a user's staff PIN and badge.
func (s *Service) SetKioskCredentials(ctx context.Context, userID int64, pin, badge *string) error {
	if len(s.kioskKey) == 0 {
		return ErrKioskDisabled
	}
	var pinD, badgeD []byte
	var pinDigits *int
	if pin != nil && *pin != "" {
		if !newPINRule.MatchString(*pin) {
			return ErrInvalidKioskPIN
		}
		pinD = s.kioskDigest("pin", *pin)
		n := len(*pin)
		pinDigits = &n
	}
	if badge != nil && *badge != "" {
		if !badgeRule.MatchString(*badge) {
			return ErrInvalidBadge
		}
		badgeD = s.kioskDigest("badge", *badge)
	}
	if len(s.kioskPrev) > 0 {
		// During a rotation the unique indexes cannot see another user's
		// PIN or badge stored under the previous key: a login must never
		// find two users.
		var taken bool
		var prevPIN, prevBadge []byte
		if pinD != nil {
			prevPIN = kioskDigestUnder(s.kioskPrev, "pin", *pin)
		}
		if badgeD != nil {
			prevBadge = kioskDigestUnder(s.kioskPrev, "badge", *badge)
		}
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM auth_users WHERE id <> $1
			AND (($2::bytea IS NOT NULL AND kiosk_pin_digest = $2) OR ($3::bytea IS NOT NULL AND badge_digest = $3)))`,
			userID, prevPIN, prevBadge).Scan(&taken); err != nil {
			return fmt.Errorf("auth: set kiosk credentials: %w", err)
		}
		if taken {
			return ErrKioskCredentialTaken
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE auth_users SET
			kiosk_pin_digest = CASE WHEN $2 THEN $3::bytea ELSE kiosk_pin_digest END,
			kiosk_pin_digits = CASE WHEN $2 THEN $6::smallint ELSE kiosk_pin_digits END,
			badge_digest = CASE WHEN $4 THEN $5::bytea ELSE badge_digest END
			WHERE id = $1`, userID, pin != nil, pinD, badge != nil, badgeD, pinDigits)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: user %d", ErrNotFound, userID)
		}
		if pin == nil && badge == nil {
			return nil
		}
		// A PIN or badge is set again because it may have leaked: the
		// kiosk sessions logged in with the old one end with it, as a new
		// password ends the login sessions (up to DefaultKioskTTL of a
		// thief's kiosk session otherwise). Login sessions and API tokens
		// stay: a PIN or badge is no password.
		_, err = tx.Exec(ctx, `UPDATE auth_tokens SET revoked_at = $2
			WHERE user_id = $1 AND kind = 'kiosk' AND revoked_at IS NULL AND expires_at > $2`, userID, s.now())
		return err
	})
	if err != nil {
		var pe *pgconn.PgError
		switch {
		case errors.As(err, &pe) && pe.Code == "23505":
			return ErrKioskCredentialTaken
		case errors.Is(err, ErrNotFound):
			return err
		}
		return fmt.Errorf("auth: set kiosk credentials: %w", err)
	}
	return nil
}

// KioskLogin finds the staff member by PIN (or badge, when pin is empty)
// and issues a kiosk session token. Staff (load, retrieve), technicians
// (test-open) and admins (both) may log in at a kiosk; what each may do
// there is decided per operation (backend/deviceops). A disabled user or an
// unknown PIN or badge is ErrInvalidCredentials.
func (s *Service) KioskLogin(ctx context.Context, pin, badge string) (Issued, error) {
	return s.KioskLoginAt(ctx, "", pin, badge)
}

// KioskLoginAt is KioskLogin at device: the session's name is the device
// (Principal.TokenName), so that the device's requests can be told from
// another's: a kiosk session is handed to one device and works there only
// (backend/deviceops).
func (s *Service) KioskLoginAt(ctx context.Context, device, pin, badge string) (Issued, error) {
	if len(s.kioskKey) == 0 {
		return Issued{}, ErrKioskDisabled
	}
	var col string
	var digests [][]byte
	switch {
	case pin != "" && loginPINRule.MatchString(pin):
		col, digests = "kiosk_pin_digest", s.kioskDigests("pin", pin)
	case pin == "" && badge != "" && badgeRule.MatchString(badge):
		col, digests = "badge_digest", s.kioskDigests("badge", badge)
	default:
		return Issued{}, ErrInvalidCredentials
	}
	// The current key's digest first; SetKioskCredentials keeps one user
	// per PIN or badge across both keys.
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols(3)+` FROM auth_users WHERE `+col+` = ANY($1)
		ORDER BY `+col+` = $2 DESC LIMIT 1`, digests, digests[0], MinKioskPINDigits))
	if errors.Is(err, pgx.ErrNoRows) {
		return Issued{}, ErrInvalidCredentials
	}
	if err != nil {
		return Issued{}, fmt.Errorf("auth: kiosk login: %w", err)
	}
	if u.Disabled {
		return Issued{}, ErrInvalidCredentials
	}
	if col == "kiosk_pin_digest" {
		// The PIN's length, for a PIN set before it was kept (a no-op
		// otherwise: the same PIN has the same length).
		if _, err := s.pool.Exec(ctx, `UPDATE auth_users SET kiosk_pin_digits = $2
			WHERE id = $1 AND kiosk_pin_digits IS DISTINCT FROM $2`, u.ID, len(pin)); err != nil {
			return Issued{}, fmt.Errorf("auth: kiosk login: %w", err)
		}
		u.KioskPINShort = len(pin) < MinKioskPINDigits
	}
	exp := s.now().Add(s.kioskTTL)
	return s.issue(ctx, u, "kiosk", device, &exp)
}

// ShortKioskPINs returns how many enabled users have a staff PIN of
// fewer than MinKioskPINDigits digits (set before the rule) and up to
// limit (at least 1) of them by username, for the admins' notice on the
// console. One query: the count is over every such user, before the
// limit (count(*) OVER ()).
func (s *Service) ShortKioskPINs(ctx context.Context, limit int) (int, []User, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userCols(1)+`, count(*) OVER () FROM auth_users
		WHERE kiosk_pin_digits < $1 AND kiosk_pin_digest IS NOT NULL AND NOT disabled
		ORDER BY username LIMIT $2`, MinKioskPINDigits, max(limit, 1))
	if err != nil {
		return 0, nil, fmt.Errorf("auth: short kiosk PINs: %w", err)
	}
	n := 0
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) { return scanUser(r, &n) })
	if err != nil {
		return 0, nil, fmt.Errorf("auth: short kiosk PINs: %w", err)
	}
	return n, out, nil
}

// ValidateKioskPIN checks the rule for a new staff PIN (MinKioskPINDigits
// to MaxKioskPINDigits digits): ErrInvalidKioskPIN otherwise.
// SetKioskCredentials applies it too; callers check first to refuse before
// any other work (a password check, a form's other fields).
func ValidateKioskPIN(pin string) error {
	if !newPINRule.MatchString(pin) {
		return ErrInvalidKioskPIN
	}
	return nil
}
