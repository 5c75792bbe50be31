package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Sentinel errors callers can branch on with errors.Is.
var (
	// ErrNotFound means the requested row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the change collides with existing data
	// (duplicate id, occupied compartment, concurrent change).
	ErrConflict = errors.New("conflict")
	// ErrInvalid means the input was refused by validation.
	ErrInvalid = errors.New("invalid input")
)

// Options configure [Open]. Zero values get defaults.
type Options struct {
	// Logger receives operational messages; default slog.Default().
	Logger *slog.Logger
	// Clock gives the current time; default time.Now. Times are stored in UTC.
	Clock func() time.Time
	// MaxConns caps the pool size; default 10.
	MaxConns int32
	// SkipMigrate leaves the schema alone at Open (default: migrate).
	SkipMigrate bool
}

// Store owns the connection pool and hands out repositories.
type Store struct {
	pool  *pgxpool.Pool
	log   *slog.Logger
	clock func() time.Time
}

// Open connects to databaseURL, checks the connection and applies the
// embedded migrations (unless opts.SkipMigrate).
func Open(ctx context.Context, databaseURL string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 10
	}
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("store: parse database URL: %w", err)
	}
	cfg.MaxConns = opts.MaxConns
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: create pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	s := &Store{pool: pool, log: opts.Logger.With("part", "store"), clock: opts.Clock}
	if !opts.SkipMigrate {
		if err := Migrate(ctx, pool); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return s, nil
}

// Pool returns the underlying pgx pool, for packages with their own tables.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Now returns the injected clock's current time in UTC, truncated to
// microseconds (PostgreSQL's resolution).
func (s *Store) Now() time.Time { return s.clock().UTC().Truncate(time.Microsecond) }

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// InTx runs fn inside a transaction, committing when fn returns nil and
// rolling back otherwise.
func (s *Store) InTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}

// pgCode returns the SQLSTATE of err, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// IsUniqueViolation reports whether err is a PostgreSQL unique violation.
func IsUniqueViolation(err error) bool { return pgCode(err) == "23505" }
