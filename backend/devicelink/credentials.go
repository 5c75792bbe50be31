package devicelink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"kluis/backend/broker"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
)

// ErrCredential is wrapped by credential errors callers branch on (bad
// user name, role or password).
var ErrCredential = errors.New("devicelink: invalid credential")

// Credentials is the mqtt_credentials table: per-device (and backend)
// passwords for the embedded broker, stored as argon2id hashes.
type Credentials struct {
	pool   *pgxpool.Pool
	params pickupcode.ArgonParams
	now    func() time.Time
	log    *slog.Logger
	dummy  string        // a hash checked for unknown users, so they cost the same
	slots  chan struct{} // bounds concurrent hashing (memory: MemoryKiB each)
}

// CredentialsOptions configure Credentials.
type CredentialsOptions struct {
	Pool *pgxpool.Pool
	// Params are the argon2id costs of new hashes; default
	// pickupcode.DefaultArgonParams.
	Params pickupcode.ArgonParams
	// Now defaults to time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// MaxConcurrent bounds simultaneous password checks, so that a fleet
	// reconnecting at once cannot exhaust memory; default 4.
	MaxConcurrent int
}

// NewCredentials returns the credential store on opts.Pool. Costs outside
// pickupcode.ArgonParams.Validate's range are a programming error: it
// panics.
func NewCredentials(opts CredentialsOptions) *Credentials {
	if opts.Params == (pickupcode.ArgonParams{}) {
		opts.Params = pickupcode.DefaultArgonParams
	}
	if err := opts.Params.Validate(); err != nil {
		panic("devicelink: " + err.Error())
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 4
	}
	c := &Credentials{pool: opts.Pool, params: opts.Params, now: opts.Now,
		log: opts.Logger.With("part", "devicelink-credentials"), slots: make(chan struct{}, opts.MaxConcurrent)}
	c.dummy = c.hash("not a password")
	return c
}

// Set creates or replaces the password of username with role. A device's
// user name is its device id.
func (c *Credentials) Set(ctx context.Context, username string, role broker.Role, password string) error {
	if err := wire.ValidDeviceID(username); err != nil {
		return fmt.Errorf("devicelink: user name: %v: %w", err, ErrCredential)
	}
	if role != broker.RoleDevice && role != broker.RoleBackend {
		return fmt.Errorf("devicelink: role %q: %w", role, ErrCredential)
	}
	if len(password) < 16 || len(password) > 256 {
		return fmt.Errorf("devicelink: password must have 16-256 bytes: %w", ErrCredential)
	}
	now := c.now().UTC()
	// A user name keeps its role: a device never takes over the backend's
	// user (or the reverse) by having its password set.
	tag, err := c.pool.Exec(ctx, `INSERT INTO mqtt_credentials (username, role, password_hash, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $4)
		ON CONFLICT (username) DO UPDATE SET password_hash = $3, disabled = false, updated_at = $4
		WHERE mqtt_credentials.role = $2`,
		username, string(role), c.hash(password), now)
	if err != nil {
		return fmt.Errorf("devicelink: set credential: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("devicelink: user name %q belongs to another role than %s: %w", username, role, ErrCredential)
	}
	return nil
}

// Disable refuses username from now on (connected clients stay until they
// reconnect).
func (c *Credentials) Disable(ctx context.Context, username string) error {
	if _, err := c.pool.Exec(ctx, `UPDATE mqtt_credentials SET disabled = true, updated_at = $2 WHERE username = $1`,
		username, c.now().UTC()); err != nil {
		return fmt.Errorf("devicelink: disable credential: %w", err)
	}
	return nil
}

// Check verifies a user name and password; it is a broker.CredentialsFunc.
// A device's id is its user name; the backend's is empty.
func (c *Credentials) Check(ctx context.Context, username, password string) (string, broker.Role, bool) {
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-ctx.Done():
		c.log.Warn("password check not started in time", "err", ctx.Err())
		return "", "", false
	}
	var role, hash string
	var disabled bool
	err := c.pool.QueryRow(ctx, `SELECT role, password_hash, disabled FROM mqtt_credentials WHERE username = $1`,
		username).Scan(&role, &hash, &disabled)
	if err != nil {
		if !errors.Is(err, pgx.ErrNoRows) {
			c.log.Error("credential lookup failed", "err", err)
		}
		_ = c.verify(c.dummy, password)
		return "", "", false
	}
	if !c.verify(hash, password) || disabled {
		return "", "", false
	}
	if broker.Role(role) == broker.RoleDevice {
		return username, broker.RoleDevice, true
	}
	return "", broker.Role(role), true
}

// hash is the PHC string stored for password (pickupcode.HashSecret). The
// costs were checked by NewCredentials: only a failing crypto/rand errs.
func (c *Credentials) hash(password string) string {
	h, err := pickupcode.HashSecret(password, c.params)
	if err != nil {
		panic(err)
	}
	return h
}

// verify checks password against a PHC string with its own parameters; a
// malformed string matches nothing.
func (c *Credentials) verify(phc, password string) bool {
	ok, err := pickupcode.VerifySecret(phc, password)
	return err == nil && ok
}
