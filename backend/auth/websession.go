package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Web sessions are the staff console's logins (backend/web): a password
// login at /staff/login starts one, its clear token travels only in an
// HttpOnly cookie, and only the token's SHA-256 digest is stored, in
// auth_web_sessions, together with the session's CSRF token (a synchroniser
// token every form carries). A session ends at logout, after
// Options.WebIdle without a request, at Options.WebMaxAge after the login
// whatever happens, and when its user is disabled. They are stored in
// PostgreSQL so that a restart or a second replica keeps them.

// Defaults of the web session lifetimes.
const (
	DefaultWebIdle   = 30 * time.Minute
	DefaultWebMaxAge = 12 * time.Hour
	// webTouchEvery limits the writes of last_seen_at: at most one per
	// session and minute (the idle timeout is that precise).
	webTouchEvery = time.Minute
)

// WebSession is one staff console login.
type WebSession struct {
	// ID identifies the session.
	ID int64
	// Token is the clear cookie value; set only by StartWebSession.
	Token string
	// CSRF is the session's synchroniser token for forms.
	CSRF string
	// User is the session's user, as now stored (role and disabled
	// included).
	User User
	// CreatedAt is the login; ExpiresAt ends the session whatever
	// happens; LastSeenAt is the last request (to the minute).
	CreatedAt, ExpiresAt, LastSeenAt time.Time
}

// Principal returns the session as the caller of a request.
func (w WebSession) Principal() Principal {
	return Principal{User: w.User, TokenID: w.ID, TokenKind: "web"}
}

// WebLifetimes returns the idle timeout and the absolute lifetime of web
// sessions.
func (s *Service) WebLifetimes() (idle, maxAge time.Duration) { return s.webIdle, s.webMaxAge }

// StartWebSession starts a web session for u (after CheckPassword);
// source is the client address, kept for the record.
func (s *Service) StartWebSession(ctx context.Context, u User, source string) (WebSession, error) {
	tok, digest, err := newToken()
	if err != nil {
		return WebSession{}, err
	}
	csrf := make([]byte, 32)
	if _, err := rand.Read(csrf); err != nil {
		return WebSession{}, fmt.Errorf("auth: csrf token: %w", err)
	}
	now := s.now()
	ws := WebSession{Token: tok, CSRF: base64.RawURLEncoding.EncodeToString(csrf), User: u,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(s.webMaxAge)}
	if len(source) > 100 {
		source = source[:100]
	}
	err = s.pool.QueryRow(ctx, `INSERT INTO auth_web_sessions (token_hash, user_id, csrf_token, source, created_at, last_seen_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING id`, digest, u.ID, ws.CSRF, source, now, ws.ExpiresAt).Scan(&ws.ID)
	if err != nil {
		return WebSession{}, fmt.Errorf("auth: start web session: %w", err)
	}
	return ws, nil
}

// WebSessionFor resolves a session cookie. ErrUnauthenticated when the
// token is malformed or unknown, or the session ended, went idle, expired
// or belongs to a disabled user. touch records the request (it keeps the
// session from going idle); a live update stream reads without touching,
// so that an open dashboard alone does not keep a session alive.
func (s *Service) WebSessionFor(ctx context.Context, token string, touch bool) (WebSession, error) {
	if !wellFormed(token) {
		return WebSession{}, ErrUnauthenticated
	}
	var ws WebSession
	var role string
	var ended *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT w.id, w.csrf_token, w.created_at, w.last_seen_at, w.expires_at, w.ended_at,
		       u.id, u.username, u.role, u.disabled, u.created_at, `+pinShortCol("u.", 2)+`
		FROM auth_web_sessions w JOIN auth_users u ON u.id = w.user_id
		WHERE w.token_hash = $1`, HashToken(token), MinKioskPINDigits).
		Scan(&ws.ID, &ws.CSRF, &ws.CreatedAt, &ws.LastSeenAt, &ws.ExpiresAt, &ended,
			&ws.User.ID, &ws.User.Username, &role, &ws.User.Disabled, &ws.User.CreatedAt, &ws.User.KioskPINShort)
	if errors.Is(err, pgx.ErrNoRows) {
		return WebSession{}, ErrUnauthenticated
	}
	if err != nil {
		return WebSession{}, fmt.Errorf("auth: web session: %w", err)
	}
	ws.User.Role = Role(role)
	now := s.now()
	if ended != nil || ws.User.Disabled || !now.Before(ws.ExpiresAt) || !now.Before(ws.LastSeenAt.Add(s.webIdle)) {
		return WebSession{}, ErrUnauthenticated
	}
	if touch && now.Sub(ws.LastSeenAt) >= webTouchEvery {
		if _, err := s.pool.Exec(ctx, `UPDATE auth_web_sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2`,
			ws.ID, now); err != nil {
			return WebSession{}, fmt.Errorf("auth: touch web session: %w", err)
		}
		ws.LastSeenAt = now
	}
	return ws, nil
}

// EndWebSession ends the session of token (logout); an unknown or ended
// session is not an error.
func (s *Service) EndWebSession(ctx context.Context, token string) error {
	if !wellFormed(token) {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `UPDATE auth_web_sessions SET ended_at = $2 WHERE token_hash = $1 AND ended_at IS NULL`,
		HashToken(token), s.now()); err != nil {
		return fmt.Errorf("auth: end web session: %w", err)
	}
	return nil
}

// PruneWebSessions deletes the sessions that ended, went idle or expired
// more than a day ago, and returns how many.
func (s *Service) PruneWebSessions(ctx context.Context) (int64, error) {
	cut := s.now().Add(-24 * time.Hour)
	tag, err := s.pool.Exec(ctx, `DELETE FROM auth_web_sessions
		WHERE expires_at < $1 OR ended_at < $1 OR last_seen_at < $2`, cut, cut.Add(-s.webIdle))
	if err != nil {
		return 0, fmt.Errorf("auth: prune web sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}
