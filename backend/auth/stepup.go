package auth

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Step-up: a signed-in person gives their password again before an act
// that outlives the session or changes a credential (making an API
// token, setting their own staff PIN, changing their own password). The
// person is already signed in, so the question is not "who is this" but
// "is this still the person who signed in": whoever holds a stolen
// session (a laptop left open, a leaked KLUIS_TOKEN) must not get a
// credential out of it, and must not be able to harm the real user by
// guessing.
//
// So a wrong password is counted on the session it came with (the API
// token, or the console session: the step_up_failures columns, shared by
// every replica), never against the user's login limits: before, five
// wrong ones from a stolen session locked the user's own logins out (the
// login limits' per-user backoff), which handed the thief a way to keep
// the real user from signing in and changing the password. The
// MaxStepUpFailures-th wrong password ends that session (API token
// revoked, console session ended): a thief learns at most
// MaxStepUpFailures-1 wrong passwords per stolen session, and the real
// user, whose typos a success forgets, is sent back to the login page at
// worst. Each attempt takes its count before the password is hashed (an
// atomic UPDATE bounded by the maximum, made once a hashing slot is held:
// the first line, the caller being authenticated), so concurrent guesses
// in one session cannot exceed it, and one refused by the slots
// (ErrLoginBusy) takes no count.

// MaxStepUpFailures is how many wrong step-up passwords end the session
// they came with.
const MaxStepUpFailures = 3

// WrongStepUp is a wrong step-up password (errors.Is ErrInvalidCredentials).
type WrongStepUp struct {
	// Failures is the session's count of wrong step-up passwords, this
	// one included.
	Failures int
	// Ended is true when this one ended the session (Failures reached
	// MaxStepUpFailures).
	Ended bool
}

func (e *WrongStepUp) Error() string {
	if e.Ended {
		return fmt.Sprintf("auth: wrong password (%d of %d): the session was ended", e.Failures, MaxStepUpFailures)
	}
	return fmt.Sprintf("auth: wrong password (%d of %d)", e.Failures, MaxStepUpFailures)
}

func (e *WrongStepUp) Unwrap() error { return ErrInvalidCredentials }

// stepUpTable is where p's session is stored and the column that ends it.
func stepUpTable(p Principal) (table, endCol string) {
	if p.TokenKind == "web" {
		return "auth_web_sessions", "ended_at"
	}
	return "auth_tokens", "revoked_at"
}

// StepUp checks that password is p's, counted on p's session (see above).
// Errors: *WrongStepUp (a wrong password; the session ended at the
// MaxStepUpFailures-th), ErrUnauthenticated (the session has ended, or
// the user is disabled), ErrLoginBusy (no hashing slot, nothing counted),
// or any other failure (the attempt stays counted).
func (s *Service) StepUp(ctx context.Context, p Principal, password, source string) error {
	table, endCol := stepUpTable(p)
	var hash string
	var disabled bool
	if err := s.pool.QueryRow(ctx, `SELECT password_hash, disabled FROM auth_users WHERE id = $1`, p.ID).Scan(&hash, &disabled); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrUnauthenticated
		}
		return fmt.Errorf("auth: step-up: %w", err)
	}
	if disabled {
		return ErrUnauthenticated
	}
	// The slot first: a check refused by it (ErrLoginBusy) takes no
	// count, and every count taken is a password checked.
	release, err := s.gate.acquire(ctx, gateKey(LoginFrom{Source: source, Known: true}, p.Username), true)
	if err != nil {
		return fmt.Errorf("auth: step-up: %w", err)
	}
	defer release()
	var n int
	err = s.pool.QueryRow(ctx, `UPDATE `+table+` SET step_up_failures = step_up_failures + 1
		WHERE id = $1 AND user_id = $2 AND `+endCol+` IS NULL AND step_up_failures < $3 RETURNING step_up_failures`,
		p.TokenID, p.ID, MaxStepUpFailures).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrUnauthenticated // ended (at the limit, a session is ended)
	}
	if err != nil {
		return fmt.Errorf("auth: step-up: %w", err)
	}
	ok, err := VerifyPassword(hash, password)
	if err != nil {
		return fmt.Errorf("auth: step-up user %d: %w", p.ID, err)
	}
	if ok {
		if _, err := s.pool.Exec(ctx, `UPDATE `+table+` SET step_up_failures = 0 WHERE id = $1`, p.TokenID); err != nil {
			return fmt.Errorf("auth: step-up: %w", err)
		}
		return nil
	}
	wrong := &WrongStepUp{Failures: n, Ended: n >= MaxStepUpFailures}
	if wrong.Ended {
		if _, err := s.pool.Exec(ctx, `UPDATE `+table+` SET `+endCol+` = $2 WHERE id = $1 AND `+endCol+` IS NULL`,
			p.TokenID, s.now()); err != nil {
			return fmt.Errorf("auth: step-up: end the session: %w", err)
		}
		s.log.Warn("step-up: session ended after wrong passwords", "user_id", p.ID, "kind", p.TokenKind, "failures", n)
	}
	return wrong
}
