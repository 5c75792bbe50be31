package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// The one sequence by which a password is checked, shared by every door
// that takes one to sign in: the REST API's login (POST /api/v1/sessions)
// and the staff console's login form. (A signed-in person's password asked
// again, to make a token, set a staff PIN or change the password, is
// StepUp's: counted on the session, not here.) Each door
// answers in its own way (JSON, a page in the person's language, 403
// wrong_password) and writes its own audit records, but the steps and
// their order are the same, so a guesser gains nothing by switching:
//
//  1. a login not known to come from its usual source (LoginFrom.Known,
//     as LoginLimits.KnownHint remembers it, without the database) first
//     takes a place among the logins' share of the database pool
//     (Options.MaxLoginDBConns), fairly as at the hashing slots: one
//     place per source, a bounded line, the excess refused at once
//     (ErrLoginBusy, nothing counted). So a flood from many addresses
//     holds at most that share of the pool, and a staff member's login
//     does not wait behind it for a connection; a known one goes
//     straight on;
//  2. the login limits (LoginLimits.BeginAttempt) count the attempt as a
//     failure, or refuse it (*LimitsRefusal; ErrLimitsUnavailable when
//     they cannot be read: no guessing without a count);
//  3. the user is read, and the place of step 1 given back;
//  4. the password waits for a fair hashing slot (hashgate.go), known
//     pairs first, or is refused at once (ErrLoginBusy): nothing was
//     checked, so the attempt is uncounted (LoginLimits.Abandon);
//  5. argon2id verifies it: a wrong password, an unknown or disabled
//     user stays counted (ErrInvalidCredentials);
//  6. a success forgets the failures of the username from the source and
//     remembers the source (LoginLimits.Succeed).

// LimitsRefusal is the error of a password check the login limits
// refused before it was tried (429 too_many_attempts with a Retry-After
// up to Refusal.Until).
type LimitsRefusal struct {
	Refusal
}

func (e *LimitsRefusal) Error() string {
	return fmt.Sprintf("auth: too many failed logins; try again after %s", e.Until.Format(time.RFC3339))
}

// PasswordCheck checks passwords the one way (see above).
type PasswordCheck struct {
	// Auth holds the users and the hashing slots.
	Auth *Service
	// Limits are the login limits every password check shares.
	Limits *LoginLimits
	// Log receives the sequence's warnings (an uncounted attempt that
	// stays counted, a success not recorded): the door's logger.
	Log *slog.Logger
}

// PasswordAttempt is one password to check.
type PasswordAttempt struct {
	// Username and Password are what the person typed.
	Username, Password string
	// Source is the client's address as ClientSource gives it.
	Source string
	// Now is when the attempt is made (the door's clock).
	Now time.Time
	// UserID, when not 0, is the user the password must be of: a
	// password of any other user is ErrInvalidCredentials (and stays
	// counted).
	UserID int64
}

// Check runs the sequence and returns the enabled user the password is
// of. Errors, each to be answered by the door:
//   - wrapping ErrLimitsUnavailable: refused, nothing checked (the door
//     logs it and answers 503);
//   - *LimitsRefusal: refused by the login limits;
//   - ErrLoginBusy: refused by the hashing slots, not counted (429
//     login_busy, Retry-After LoginBusyRetry);
//   - ErrInvalidCredentials: a wrong password, counted (the door audits
//     login.failed);
//   - any other: the check failed (the attempt stays counted).
func (c PasswordCheck) Check(ctx context.Context, a PasswordAttempt) (User, error) {
	releaseDB := func() {}
	if !c.Limits.KnownHint(ctx, a.Username, a.Source, a.Now) {
		// Before any database work: a place among the logins' share of
		// the pool, one per source, in a bounded line (or ErrLoginBusy
		// at once, nothing counted).
		rel, err := c.Auth.dbGate.acquire(ctx, gateKey(LoginFrom{Source: a.Source}, a.Username), false)
		if err != nil {
			return User{}, fmt.Errorf("auth: login: %w", err)
		}
		releaseDB = sync.OnceFunc(rel)
		defer releaseDB()
	}
	att, err := c.Limits.BeginAttempt(ctx, a.Username, a.Source, a.Now)
	if err != nil {
		return User{}, err
	}
	if att.Refusal != nil {
		return User{}, &LimitsRefusal{Refusal: *att.Refusal}
	}
	f, err := c.Auth.findLogin(ctx, a.Username, a.Password)
	releaseDB() // the hashing slot is waited for without it
	if err != nil {
		return User{}, err
	}
	u, err := c.Auth.verifyLogin(ctx, f, a.Password, att.From(a.Source))
	if errors.Is(err, ErrLoginBusy) {
		// Nothing was checked: no guess to count.
		if aerr := c.Limits.Abandon(ctx, att); aerr != nil {
			c.Log.Warn("login limits: refused attempt still counted", "source", a.Source, "err", aerr)
		}
		return User{}, err
	}
	if err == nil && a.UserID != 0 && u.ID != a.UserID {
		err = ErrInvalidCredentials
	}
	if err != nil {
		return User{}, err
	}
	if err := c.Limits.Succeed(ctx, a.Username, a.Source, a.Now); err != nil {
		// The door lets the person in; the attempt stays counted as a
		// failure.
		c.Log.Warn("login limits: success not recorded", "source", a.Source, "err", err)
	}
	return u, nil
}
