package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/store/safetext"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrInvalidCredentials means a login named an unknown or disabled user
	// or gave the wrong password (deliberately not told apart).
	ErrInvalidCredentials = errors.New("auth: invalid username or password")
	// ErrUnauthenticated means a bearer token is malformed, unknown,
	// expired, revoked or belongs to a disabled user.
	ErrUnauthenticated = errors.New("auth: invalid or expired token")
	// ErrUserExists means the username is taken.
	ErrUserExists = errors.New("auth: username already exists")
	// ErrInvalidUsername means the username breaks the naming rule.
	ErrInvalidUsername = errors.New("auth: invalid username")
	// ErrWeakPassword means the password is too short or too long.
	ErrWeakPassword = errors.New("auth: password must be 10 to 256 characters")
	// ErrInvalidRole means the role is not staff, technician or admin.
	ErrInvalidRole = errors.New("auth: invalid role")
	// ErrInvalidName means a token name is empty, longer than
	// MaxTokenName characters or holds a character refused in names shown
	// to people (package safetext).
	ErrInvalidName = errors.New("auth: invalid token name")
	// ErrInvalidExpiry means a requested API token lifetime is not
	// positive or is above the configured maximum.
	ErrInvalidExpiry = errors.New("auth: invalid token lifetime")
	// ErrNotFound means the user or token does not exist.
	ErrNotFound = errors.New("auth: not found")
)

var usernameRule = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// maxUsernameLen is the longest username usernameRule allows, in bytes.
const maxUsernameLen = 64

// Options configure [New]. Zero values get defaults.
type Options struct {
	// Pool is the database holding the auth_users and auth_tokens tables; required.
	Pool *pgxpool.Pool
	// Logger receives operational messages (never secrets); default slog.Default().
	Logger *slog.Logger
	// Clock gives the current time; default time.Now.
	Clock func() time.Time
	// Params are the argon2id costs for new password hashes; default DefaultParams().
	Params Params
	// SessionTTL is how long a login token lives; default 12h.
	SessionTTL time.Duration
	// APITokenTTL is the lifetime of an API token created without one;
	// default DefaultAPITokenTTL. APITokenMaxTTL is the longest lifetime
	// an API token may be given; default DefaultAPITokenMaxTTL.
	// APITokenTTL above APITokenMaxTTL is an error of New.
	APITokenTTL, APITokenMaxTTL time.Duration
	// KioskKey keys the digests of staff PINs and badges; nil disables
	// kiosk logins (see kiosk.go).
	KioskKey []byte
	// PreviousKioskKey, optional, is KioskKey before a rotation of the
	// backend's PIN key: staff PINs and badges set before it still log in
	// (never used to store a new one).
	PreviousKioskKey []byte
	// KioskTTL is how long a kiosk session lives; default DefaultKioskTTL.
	KioskTTL time.Duration
	// WebIdle ends a staff console session after this long without a
	// request; default DefaultWebIdle. WebMaxAge ends it this long after
	// the login whatever happens; default DefaultWebMaxAge.
	WebIdle, WebMaxAge time.Duration
	// MaxConcurrentHashes bounds simultaneous argon2id password hashes
	// and checks (each holds Params.MemoryKiB of memory), so that a
	// flood of logins (every new username is let through by the login
	// limits) waits in line instead of exhausting memory; default 4.
	MaxConcurrentHashes int
	// MaxQueuedHashes bounds each of the two lines of password logins
	// waiting for a hashing slot (hashgate.go): one more is refused at
	// once with ErrLoginBusy; default 4 × MaxConcurrentHashes.
	MaxQueuedHashes int
	// MaxLoginDBConns bounds the database connections held at once by
	// the password logins not known to come from their usual source
	// (hashgate.go, PasswordCheck): their login limits and user lookup
	// wait for one of these places, fairly, before they take a
	// connection, so a flood of logins cannot queue the staff out of the
	// pool; default a quarter of Pool's connections, at least 1.
	MaxLoginDBConns int
	// Registerer receives kluis_auth_login_busy_total (the password
	// logins refused at once by the hashing slots, hashgate.go); nil:
	// not registered.
	Registerer prometheus.Registerer
}

// Service manages users and tokens.
type Service struct {
	pool       *pgxpool.Pool
	log        *slog.Logger
	clock      func() time.Time
	params     Params
	sessionTTL time.Duration
	apiTTL     time.Duration
	apiMaxTTL  time.Duration
	dummyHash  string
	kioskKey   []byte
	kioskPrev  []byte // nil: no rotation under way
	kioskTTL   time.Duration
	webIdle    time.Duration
	webMaxAge  time.Duration
	gate       *hashGate // bounds concurrent argon2id (memory: Params.MemoryKiB each), fairly
	dbGate     *hashGate // bounds the database work of logins from sources not known, fairly
}

// New returns a Service over opts.Pool.
func New(opts Options) (*Service, error) {
	if opts.Pool == nil {
		return nil, errors.New("auth: Options.Pool is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 12 * time.Hour
	}
	if opts.KioskTTL <= 0 {
		opts.KioskTTL = DefaultKioskTTL
	}
	if opts.WebIdle <= 0 {
		opts.WebIdle = DefaultWebIdle
	}
	if opts.WebMaxAge <= 0 {
		opts.WebMaxAge = DefaultWebMaxAge
	}
	if opts.APITokenTTL <= 0 {
		opts.APITokenTTL = DefaultAPITokenTTL
	}
	if opts.APITokenMaxTTL <= 0 {
		opts.APITokenMaxTTL = DefaultAPITokenMaxTTL
	}
	if opts.APITokenTTL > opts.APITokenMaxTTL {
		return nil, fmt.Errorf("auth: the default API token lifetime %s is above the maximum %s", opts.APITokenTTL, opts.APITokenMaxTTL)
	}
	if opts.MaxConcurrentHashes <= 0 {
		opts.MaxConcurrentHashes = 4
	}
	if opts.MaxQueuedHashes <= 0 {
		opts.MaxQueuedHashes = 4 * opts.MaxConcurrentHashes
	}
	opts.Params = opts.Params.withDefaults()
	// A hash to verify against when the user does not exist, so that a
	// login for an unknown user costs as much as a wrong password.
	dummy, err := HashPassword("kluis-dummy-password", opts.Params)
	if err != nil {
		return nil, err
	}
	if opts.MaxLoginDBConns <= 0 {
		opts.MaxLoginDBConns = max(1, int(opts.Pool.Config().MaxConns)/4)
	}
	gate := newHashGate(opts.MaxConcurrentHashes, opts.MaxQueuedHashes)
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(gate.busy); err != nil {
			return nil, fmt.Errorf("auth: register metrics: %w", err)
		}
	}
	return &Service{
		pool:       opts.Pool,
		log:        opts.Logger.With("part", "auth"),
		clock:      opts.Clock,
		params:     opts.Params,
		sessionTTL: opts.SessionTTL,
		apiTTL:     opts.APITokenTTL,
		apiMaxTTL:  opts.APITokenMaxTTL,
		dummyHash:  dummy,
		kioskKey:   append([]byte(nil), opts.KioskKey...),
		kioskPrev:  append([]byte(nil), opts.PreviousKioskKey...),
		kioskTTL:   opts.KioskTTL,
		webIdle:    opts.WebIdle,
		webMaxAge:  opts.WebMaxAge,
		gate:       gate,
		dbGate:     gate.sibling(opts.MaxLoginDBConns, opts.MaxQueuedHashes),
	}, nil
}

// User is an account.
type User struct {
	// ID is the database id.
	ID int64 `json:"id"`
	// Username is the login name (lower case).
	Username string `json:"username"`
	// Role is what the user may do.
	Role Role `json:"role"`
	// Disabled users can neither log in nor use their tokens.
	Disabled bool `json:"disabled"`
	// CreatedAt is when the account was created.
	CreatedAt time.Time `json:"created_at"`
	// KioskPINShort is true when the user's staff PIN has fewer than
	// MinKioskPINDigits digits (set before the rule): it still logs in,
	// and the console asks for a new one.
	KioskPINShort bool `json:"kiosk_pin_short"`
}

// Principal is the authenticated caller of a request.
type Principal struct {
	User
	// TokenID identifies the bearer token used.
	TokenID int64
	// TokenKind is "session" (an API session), "web" (a console
	// session), "api" or "kiosk".
	TokenKind string
	// TokenName is the token's name: an API token's, or for a kiosk
	// session the device it was issued at (KioskLoginAt).
	TokenName string
}

// Issued is a freshly issued token; Token is shown once and never stored.
type Issued struct {
	// Token is the clear bearer token.
	Token string `json:"token"`
	// ID identifies the token (for revocation).
	ID int64 `json:"id"`
	// Kind is "session" or "api".
	Kind string `json:"kind"`
	// Name describes an API token.
	Name string `json:"name,omitempty"`
	// ExpiresAt is when the token stops working (every token expires).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// User is the token's owner.
	User User `json:"user"`
}

// TokenInfo describes a stored token without its secret.
type TokenInfo struct {
	// ID identifies the token.
	ID int64 `json:"id"`
	// Kind is "session", "api" or "kiosk".
	Kind string `json:"kind"`
	// Name describes an API token.
	Name string `json:"name,omitempty"`
	// CreatedAt is when it was issued.
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when the token stops working (every token expires).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// RevokedAt is set once revoked.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

func (s *Service) now() time.Time { return s.clock().UTC().Truncate(time.Microsecond) }

// ValidateUsername checks the naming rule: lower-case letters, digits, '.',
// '_' and '-', starting with a letter or digit, at most 64 characters.
func ValidateUsername(username string) error {
	if !usernameRule.MatchString(username) {
		return fmt.Errorf("%w: %q (lower-case letters, digits, '.', '_', '-'; at most 64)", ErrInvalidUsername, username)
	}
	return nil
}

// ValidatePassword checks the password length rule.
func ValidatePassword(password string) error {
	n := utf8.RuneCountInString(password)
	if n < MinPasswordLen || len(password) > MaxPasswordLen {
		return ErrWeakPassword
	}
	return nil
}

// CreateUser adds a user with an argon2id-hashed password.
func (s *Service) CreateUser(ctx context.Context, username, password string, role Role) (User, error) {
	username = strings.TrimSpace(username)
	if err := ValidateUsername(username); err != nil {
		return User{}, err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return User{}, err
	}
	if err := ValidatePassword(password); err != nil {
		return User{}, err
	}
	hash, err := s.hashPassword(ctx, password)
	if err != nil {
		return User{}, err
	}
	u := User{Username: username, Role: role, CreatedAt: s.now()}
	err = s.pool.QueryRow(ctx,
		`INSERT INTO auth_users (username, role, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id`,
		username, string(role), hash, u.CreatedAt).Scan(&u.ID)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" {
			return User{}, fmt.Errorf("%w: %q", ErrUserExists, username)
		}
		return User{}, fmt.Errorf("auth: create user: %w", err)
	}
	s.log.Info("user created", "user_id", u.ID, "username", username, "role", role)
	return u, nil
}

// EnsureAdmin creates an admin user with the given name and password when
// no admin exists yet, and reports whether it did.
func (s *Service) EnsureAdmin(ctx context.Context, username, password string) (bool, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM auth_users WHERE role = 'admin' AND NOT disabled`).Scan(&n); err != nil {
		return false, fmt.Errorf("auth: count admins: %w", err)
	}
	if n > 0 {
		return false, nil
	}
	if _, err := s.CreateUser(ctx, username, password, RoleAdmin); err != nil {
		return false, err
	}
	return true, nil
}

// pinShortCol is User.KioskPINShort in SQL over auth_users (alias, when
// not empty, is the table's with its dot): the query's parameter $param
// must be MinKioskPINDigits, so that one constant rules the Go code and
// every SQL text (WebSessionFor, ShortKioskPINs, userCols).
func pinShortCol(alias string, param int) string {
	return fmt.Sprintf(`coalesce(%skiosk_pin_digits < $%d::int, false)`, alias, param)
}

// userCols are the columns scanUser reads, over auth_users (no alias); the
// query's parameter $param must be MinKioskPINDigits (pinShortCol).
func userCols(param int) string {
	return `id, username, role, disabled, created_at, ` + pinShortCol("", param)
}

// scanUser scans userCols, then the query's further columns into extra.
func scanUser(row pgx.Row, extra ...any) (User, error) {
	var u User
	var role string
	if err := row.Scan(append([]any{&u.ID, &u.Username, &role, &u.Disabled, &u.CreatedAt, &u.KioskPINShort}, extra...)...); err != nil {
		return User{}, err
	}
	u.Role = Role(role)
	return u, nil
}

// GetUser returns one user.
func (s *Service) GetUser(ctx context.Context, id int64) (User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols(2)+` FROM auth_users WHERE id = $1`, id, MinKioskPINDigits))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("%w: user %d", ErrNotFound, id)
	}
	if err != nil {
		return User{}, fmt.Errorf("auth: get user: %w", err)
	}
	return u, nil
}

// ListUsers returns up to limit users with id greater than afterID, by id.
func (s *Service) ListUsers(ctx context.Context, afterID int64, limit int) ([]User, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userCols(3)+` FROM auth_users WHERE id > $1 ORDER BY id LIMIT $2`, afterID, limit, MinKioskPINDigits)
	if err != nil {
		return nil, fmt.Errorf("auth: list users: %w", err)
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("auth: list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("auth: list users: %w", err)
	}
	return out, nil
}

// SetDisabled disables or re-enables a user; disabling also revokes every
// token of the user and ends their console sessions, in the same
// transaction, so that re-enabling the user brings none of them back.
func (s *Service) SetDisabled(ctx context.Context, id int64, disabled bool) (User, error) {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE auth_users SET disabled = $2 WHERE id = $1`, id, disabled)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: user %d", ErrNotFound, id)
		}
		if !disabled {
			return nil
		}
		now := s.now()
		if _, err := tx.Exec(ctx, `UPDATE auth_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL`, id, now); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE auth_web_sessions SET ended_at = $2 WHERE user_id = $1 AND ended_at IS NULL`, id, now)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return User{}, err
		}
		return User{}, fmt.Errorf("auth: set disabled: %w", err)
	}
	return s.GetUser(ctx, id)
}

// SetPassword replaces a user's password and ends every login session
// and every API token of the user (ChangePassword keeping none).
func (s *Service) SetPassword(ctx context.Context, id int64, password string) error {
	_, err := s.ChangePassword(ctx, id, password, PasswordChange{})
	return err
}

// PasswordChange says what a password change keeps.
type PasswordChange struct {
	// KeepToken is a token that stays (the caller's own when users change
	// their own password; 0: none).
	KeepToken int64
	// KeepWebSession is a staff console session that stays (the caller's
	// own when users change their own password in the console; 0: none).
	KeepWebSession int64
	// KeepAPITokens keeps the user's API tokens (kind api, for
	// automation): an admin's explicit choice when the old password was
	// not known to anyone else (a forgotten one).
	KeepAPITokens bool
}

// Ended is what a password change ended.
type Ended struct {
	// Sessions is how many login sessions ended (API session tokens and
	// console sessions).
	Sessions int `json:"sessions"`
	// APITokens is how many API tokens were revoked.
	APITokens int `json:"api_tokens"`
}

// ChangePassword replaces a user's password and, in the same transaction,
// ends the user's login sessions (API session tokens revoked, staff
// console sessions ended) and revokes the user's API tokens unless
// keep.KeepAPITokens, except the token keep.KeepToken. Whoever knew the
// old password (the reason for a reset) is signed out at once, and a
// token they made with a session taken before the reset goes too (a
// token made the old password's reach outlive the reset). It reports
// what it ended.
func (s *Service) ChangePassword(ctx context.Context, id int64, password string, keep PasswordChange) (Ended, error) {
	if err := ValidatePassword(password); err != nil {
		return Ended{}, err
	}
	hash, err := s.hashPassword(ctx, password)
	if err != nil {
		return Ended{}, err
	}
	var ended Ended
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE auth_users SET password_hash = $2 WHERE id = $1`, id, hash)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: user %d", ErrNotFound, id)
		}
		now := s.now()
		tag, err = tx.Exec(ctx, `UPDATE auth_tokens SET revoked_at = $2
WHERE user_id = $1 AND kind = 'session' AND revoked_at IS NULL AND id <> $3 AND (expires_at IS NULL OR expires_at > $2)`, id, now, keep.KeepToken)
		if err != nil {
			return err
		}
		ended.Sessions += int(tag.RowsAffected())
		tag, err = tx.Exec(ctx, `UPDATE auth_web_sessions SET ended_at = $2
WHERE user_id = $1 AND ended_at IS NULL AND expires_at > $2 AND id <> $3`, id, now, keep.KeepWebSession)
		if err != nil {
			return err
		}
		ended.Sessions += int(tag.RowsAffected())
		if keep.KeepAPITokens {
			return nil
		}
		tag, err = tx.Exec(ctx, `UPDATE auth_tokens SET revoked_at = $2
WHERE user_id = $1 AND kind = 'api' AND revoked_at IS NULL AND id <> $3 AND (expires_at IS NULL OR expires_at > $2)`, id, now, keep.KeepToken)
		if err != nil {
			return err
		}
		ended.APITokens = int(tag.RowsAffected())
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Ended{}, err
		}
		return Ended{}, fmt.Errorf("auth: set password: %w", err)
	}
	if ended.Sessions > 0 || ended.APITokens > 0 {
		s.log.Info("password changed: sessions and tokens ended", "user_id", id, "sessions", ended.Sessions, "api_tokens", ended.APITokens)
	}
	return ended, nil
}

// Login checks username and password and issues a session token.
func (s *Service) Login(ctx context.Context, username, password string, from LoginFrom) (Issued, error) {
	u, err := s.CheckPassword(ctx, username, password, from)
	if err != nil {
		return Issued{}, err
	}
	return s.IssueSession(ctx, u)
}

// IssueSession issues an API session token for u, whose password was
// checked (PasswordCheck).
func (s *Service) IssueSession(ctx context.Context, u User) (Issued, error) {
	exp := s.now().Add(s.sessionTTL)
	return s.issue(ctx, u, "session", "", &exp)
}

// CheckPassword returns the enabled user with this username and password,
// or ErrInvalidCredentials (an unknown user costs as much as a wrong
// password). It issues nothing: Login issues an API session token, the
// staff console a web session (StartWebSession). The check waits for a
// hashing slot in from's line, or is refused at once with ErrLoginBusy
// (hashgate.go).
func (s *Service) CheckPassword(ctx context.Context, username, password string, from LoginFrom) (User, error) {
	f, err := s.findLogin(ctx, username, password)
	if err != nil {
		return User{}, err
	}
	return s.verifyLogin(ctx, f, password, from)
}

// loginUser is what findLogin found of a login's user.
type loginUser struct {
	u     User
	hash  string
	found bool // false: no such user, checked against dummyHash
	key   string
}

// findLogin reads the user a login names (the database part of
// CheckPassword): ErrInvalidCredentials at once for a name or password
// no user can have.
func (s *Service) findLogin(ctx context.Context, username, password string) (loginUser, error) {
	if len(password) > MaxPasswordLen || len(username) > maxUsernameLen ||
		!utf8.ValidString(username) || strings.ContainsRune(username, 0) {
		return loginUser{}, ErrInvalidCredentials // no user has such a name (PostgreSQL text cannot even hold it)
	}
	f := loginUser{key: username}
	var role string
	err := s.pool.QueryRow(ctx,
		`SELECT `+userCols(2)+`, password_hash FROM auth_users WHERE username = $1`,
		strings.TrimSpace(username), MinKioskPINDigits).Scan(&f.u.ID, &f.u.Username, &role, &f.u.Disabled, &f.u.CreatedAt, &f.u.KioskPINShort, &f.hash)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return loginUser{}, fmt.Errorf("auth: login: %w", err)
	}
	f.found = err == nil
	f.u.Role = Role(role)
	return f, nil
}

// verifyLogin waits for a hashing slot in from's line (or is refused at
// once with ErrLoginBusy) and verifies password against f (the argon2id
// part of CheckPassword). No database connection is held.
func (s *Service) verifyLogin(ctx context.Context, f loginUser, password string, from LoginFrom) (User, error) {
	release, serr := s.gate.acquire(ctx, gateKey(from, f.key), from.Known)
	if serr != nil {
		return User{}, fmt.Errorf("auth: login: %w", serr)
	}
	defer release()
	if !f.found {
		_, _ = VerifyPassword(s.dummyHash, password)
		return User{}, ErrInvalidCredentials
	}
	ok, err := VerifyPassword(f.hash, password)
	if err != nil {
		return User{}, fmt.Errorf("auth: login user %d: %w", f.u.ID, err)
	}
	if !ok || f.u.Disabled {
		return User{}, ErrInvalidCredentials
	}
	return f.u, nil
}

// hashPassword is HashPassword with s's costs, within the slots (first
// line: its callers are authenticated). Nothing else is held while
// waiting (no database connection).
func (s *Service) hashPassword(ctx context.Context, password string) (string, error) {
	release, err := s.gate.acquire(ctx, "", true)
	if err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	defer release()
	return HashPassword(password, s.params)
}

// MaxTokenName is the longest token name, in characters.
const MaxTokenName = 100

// ValidateTokenName checks a token name: 1 to MaxTokenName characters
// under the rule for names shown to people (package safetext).
func ValidateTokenName(name string) error {
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("%w: a name is required", ErrInvalidName)
	}
	if err := safetext.Check(name, MaxTokenName); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalidName, safetext.Reason(err))
	}
	return nil
}

// Lifetimes of API tokens (see Options.APITokenTTL).
const (
	DefaultAPITokenTTL    = 90 * 24 * time.Hour
	DefaultAPITokenMaxTTL = 365 * 24 * time.Hour
)

// APITokenLimits returns the default and the maximum lifetime of API tokens.
func (s *Service) APITokenLimits() (def, max time.Duration) { return s.apiTTL, s.apiMaxTTL }

// CreateAPIToken issues a token for automation, owned by userID, that
// expires after the default lifetime (Options.APITokenTTL).
func (s *Service) CreateAPIToken(ctx context.Context, userID int64, name string) (Issued, error) {
	return s.CreateAPITokenTTL(ctx, userID, name, 0)
}

// CreateAPITokenTTL is CreateAPIToken with a lifetime: 0 means the default,
// anything else must be positive and at most Options.APITokenMaxTTL
// (ErrInvalidExpiry). Every token expires.
func (s *Service) CreateAPITokenTTL(ctx context.Context, userID int64, name string, ttl time.Duration) (Issued, error) {
	if err := ValidateTokenName(name); err != nil {
		return Issued{}, err
	}
	if ttl == 0 {
		ttl = s.apiTTL
	}
	if ttl < 0 || ttl > s.apiMaxTTL {
		return Issued{}, fmt.Errorf("%w: %s (at most %s)", ErrInvalidExpiry, ttl, s.apiMaxTTL)
	}
	u, err := s.GetUser(ctx, userID)
	if err != nil {
		return Issued{}, err
	}
	if u.Disabled {
		return Issued{}, fmt.Errorf("%w: user %d is disabled", ErrNotFound, userID)
	}
	exp := s.now().Add(ttl)
	return s.issue(ctx, u, "api", name, &exp)
}

func (s *Service) issue(ctx context.Context, u User, kind, name string, exp *time.Time) (Issued, error) {
	tok, digest, err := newToken()
	if err != nil {
		return Issued{}, err
	}
	out := Issued{Token: tok, Kind: kind, Name: name, ExpiresAt: exp, User: u}
	err = s.pool.QueryRow(ctx,
		`INSERT INTO auth_tokens (user_id, kind, name, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
		u.ID, kind, name, digest, s.now(), exp).Scan(&out.ID)
	if err != nil {
		return Issued{}, fmt.Errorf("auth: issue token: %w", err)
	}
	return out, nil
}

// Authenticate resolves a bearer token to its principal.
func (s *Service) Authenticate(ctx context.Context, token string) (Principal, error) {
	if !wellFormed(token) {
		return Principal{}, ErrUnauthenticated
	}
	var p Principal
	var role string
	var exp, revoked *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT u.id, u.username, u.role, u.disabled, u.created_at, t.id, t.kind, t.name, t.expires_at, t.revoked_at
		FROM auth_tokens t JOIN auth_users u ON u.id = t.user_id
		WHERE t.token_hash = $1`, HashToken(token)).
		Scan(&p.ID, &p.Username, &role, &p.Disabled, &p.CreatedAt, &p.TokenID, &p.TokenKind, &p.TokenName, &exp, &revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("auth: authenticate: %w", err)
	}
	p.Role = Role(role)
	if p.Disabled || revoked != nil || (exp != nil && !s.now().Before(*exp)) {
		return Principal{}, ErrUnauthenticated
	}
	return p, nil
}

// EndedTokenRetention is how long a token that expired or was revoked
// stays in auth_tokens (and in the token list) after its end: PruneTokens
// deletes it then. Its story stays in the audit trail (login,
// token.create, token.revoke).
const EndedTokenRetention = 30 * 24 * time.Hour

// PruneTokens deletes at most limit tokens that ended (expired or were
// revoked, whichever came first) before cutoff, oldest end first, in one
// statement (rows another replica is deleting are skipped; migration
// 0215's index), and returns how many. The backend calls it with
// EndedTokenRetention (backend/devicelink's Pruner). Every token ends:
// expires_at is NOT NULL (migration 0100 gave the tokens made before it
// an expiry), and LEAST ignores a NULL revoked_at, so no token escapes it.
func PruneTokens(ctx context.Context, db interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}, cutoff time.Time, limit int) (int, error) {
	tag, err := db.Exec(ctx, `WITH doomed AS (
		SELECT id FROM auth_tokens WHERE LEAST(expires_at, revoked_at) < $1
		ORDER BY LEAST(expires_at, revoked_at) LIMIT $2 FOR UPDATE SKIP LOCKED)
		DELETE FROM auth_tokens t USING doomed WHERE t.id = doomed.id`, cutoff, limit)
	if err != nil {
		return 0, fmt.Errorf("auth: prune tokens: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// ListTokens returns up to limit tokens of a user with an id below
// beforeID (0: from the newest), newest first; with activeOnly, only
// those neither expired nor revoked. Ended tokens are listed until
// PruneTokens deletes them (EndedTokenRetention).
func (s *Service) ListTokens(ctx context.Context, userID, beforeID int64, limit int, activeOnly bool) ([]TokenInfo, error) {
	if beforeID <= 0 {
		beforeID = math.MaxInt64
	}
	rows, err := s.pool.Query(ctx,
		`SELECT id, kind, name, created_at, expires_at, revoked_at FROM auth_tokens WHERE user_id = $1 AND id < $2
		   AND (NOT $4 OR (revoked_at IS NULL AND expires_at > $5))
		 ORDER BY id DESC LIMIT $3`,
		userID, beforeID, limit, activeOnly, s.now())
	if err != nil {
		return nil, fmt.Errorf("auth: list tokens: %w", err)
	}
	defer rows.Close()
	out := []TokenInfo{}
	for rows.Next() {
		var t TokenInfo
		if err := rows.Scan(&t.ID, &t.Kind, &t.Name, &t.CreatedAt, &t.ExpiresAt, &t.RevokedAt); err != nil {
			return nil, fmt.Errorf("auth: list tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("auth: list tokens: %w", err)
	}
	return out, nil
}

// Revoke revokes the token tokenID of user userID. Revoking an already
// revoked token is not an error.
func (s *Service) Revoke(ctx context.Context, userID, tokenID int64) error {
	tag, err := s.pool.Exec(ctx,
		`UPDATE auth_tokens SET revoked_at = COALESCE(revoked_at, $3) WHERE id = $1 AND user_id = $2`, tokenID, userID, s.now())
	if err != nil {
		return fmt.Errorf("auth: revoke: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: token %d", ErrNotFound, tokenID)
	}
	return nil
}

// Ping checks the database answers.
func (s *Service) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// UserByName returns the user with the given username.
func (s *Service) UserByName(ctx context.Context, username string) (User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols(2)+` FROM auth_users WHERE username = $1`, username, MinKioskPINDigits))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("%w: user %q", ErrNotFound, username)
	}
	if err != nil {
		return User{}, fmt.Errorf("auth: get user: %w", err)
	}
	return u, nil
}
