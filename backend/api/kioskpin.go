package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"kluis/backend/audit"
	"kluis/backend/auth"
)

// Staff PINs are set in one place for the REST API and the staff console
// (which calls KioskPINs in-process): the rule is auth's
// (auth.ValidateKioskPIN, one user per PIN), the audit record the same
// (user.update {"kiosk_pin": "changed"}, never the PIN).
//
// A user sets their own PIN with a session and their current password
// (POST /api/v1/me/kiosk-pin): an API token is refused before anything
// is checked (403 session_required, like POST /api/v1/me/password: a PIN
// opens compartments at a kiosk, and automation must not gain one), then
// the step-up check (auth.StepUp: a wrong one
// counts on the session, not against the login limits, and the third
// ends the session), so a session left open can neither be used to guess
// the password nor to lock its user's logins out. A new PIN that another user already has is refused
// (a login finds its user by the PIN alone), which tells the person that
// someone has it: such refusals are audited (user.kiosk_pin_taken, without
// the PIN) and after MaxOwnPINTaken of them in 24 hours a user's own PIN
// changes are refused (each refusal audited user.kiosk_pin_refused) until
// an admin sets one, so that nobody can probe
// for a colleague's PIN. An admin sets anyone's (PATCH /api/v1/users/{id})
// without those limits.

// MaxOwnPINTaken is how many times in 24 hours a user's own new staff
// PIN may be refused as another user's before their own changes are
// refused (ErrOwnPINTakenTooOften).
const MaxOwnPINTaken = 3

var (
	// ErrWrongPassword means the current password given to set one's own
	// staff PIN is wrong (403 wrong_password).
	ErrWrongPassword = errors.New("api: the current password is wrong")
	// ErrOwnPINTakenTooOften means the user's own new PINs were refused
	// as taken MaxOwnPINTaken times in 24 hours (429 too_many_attempts).
	ErrOwnPINTakenTooOften = errors.New("api: too many new staff PINs refused as taken; ask an administrator")
	// ErrLoginLimitsUnavailable means the login limits could not be
	// read: the password check is refused (503 login_unavailable).
	ErrLoginLimitsUnavailable = errors.New("api: the login limits cannot be checked")
)

// TooManyAttempts is a refusal of the login limits: try again after
// RetryAfter (429 too_many_attempts with Retry-After).
type TooManyAttempts struct {
	RetryAfter time.Duration
}

func (e *TooManyAttempts) Error() string {
	return fmt.Sprintf("api: too many failed password checks; try again in %s", e.RetryAfter)
}

// PINTaken is SetOwn's refusal of a new PIN another user has
// (errors.Is auth.ErrKioskCredentialTaken, 409 kiosk_credential_taken):
// Refused is how many of the user's own new PINs were refused so in 24
// hours, this one included; at MaxOwnPINTaken the next change is refused
// (ErrOwnPINTakenTooOften). The staff console says "n of 3".
type PINTaken struct {
	Refused int
	Err     error
}

func (e *PINTaken) Error() string { return e.Err.Error() }
func (e *PINTaken) Unwrap() error { return e.Err }

// KioskPINs sets staff PINs (see above).
type KioskPINs struct {
	Pool   *pgxpool.Pool
	Auth   *auth.Service
	Logins *auth.LoginLimits
	Clock  func() time.Time
	Log    *slog.Logger
}

// SetOwn sets u's own staff PIN after checking password, u's current
// password, from source; via ("api" or "console") goes in the audit
// record. Errors: 403 session_required (p is an API token, before
// anything else), auth.ErrInvalidKioskPIN,
// ErrOwnPINTakenTooOften, *TooManyAttempts, auth.ErrLoginBusy,
// ErrLoginLimitsUnavailable, ErrWrongPassword, auth.ErrKioskCredentialTaken
// (as a *PINTaken), auth.ErrKioskDisabled, each wrapped in the API's
// *Error.
func (k KioskPINs) SetOwn(ctx context.Context, p auth.Principal, password, pin, source, via string) error {
	u := p.User
	if err := needSession(p, "set its user's staff PIN", "set it with the session token"); err != nil {
		return err
	}
	if err := auth.ValidateKioskPIN(pin); err != nil {
		return err
	}
	subj := "user:" + strconv.FormatInt(u.ID, 10)
	now := k.Clock()
	n, err := k.takenSince(ctx, subj, now.Add(-24*time.Hour))
	if err != nil {
		return err
	}
	if n >= MaxOwnPINTaken {
		// A denied attempt: audited once per refusal (no PIN).
		if aerr := k.audit(ctx, audit.Entry{At: now, Actor: subj, Action: "user.kiosk_pin_refused", Subject: subj,
			Details: map[string]any{"via": via, "source": source, "reason": "taken_too_often", "taken_today": n}}); aerr != nil {
			return fmt.Errorf("audit own staff PIN refused: %w", aerr)
		}
		return &Error{Status: http.StatusTooManyRequests, Code: "too_many_attempts",
			Message: "too many of your new staff PINs were refused as in use today; ask an administrator to set one", Err: ErrOwnPINTakenTooOften}
	}
	if err := k.checkPassword(ctx, p, password, source, now, via, "kiosk_pin"); err != nil {
		return err
	}
	err = k.Auth.SetKioskCredentials(ctx, u.ID, &pin, nil)
	if errors.Is(err, auth.ErrKioskCredentialTaken) {
		k.Log.Warn("own staff PIN refused: another user has it", "user_id", u.ID, "refused_today", n+1)
		if aerr := k.audit(ctx, audit.Entry{At: now, Actor: subj, Action: "user.kiosk_pin_taken", Subject: subj,
			Details: map[string]any{"via": via, "source": source}}); aerr != nil {
			return fmt.Errorf("audit own staff PIN taken: %w", aerr)
		}
		return &PINTaken{Refused: n + 1, Err: err}
	}
	if err != nil {
		return err
	}
	if err := k.audit(ctx, audit.Entry{At: now, Actor: subj, Action: "user.update", Subject: subj,
		Details: map[string]any{"kiosk_pin": "changed", "own": true, "via": via}}); err != nil {
		return fmt.Errorf("audit user update: %w", err)
	}
	return nil
}

// SetFor is an admin (actor) setting user id's staff PIN: the same rule
// and audit record as PATCH /api/v1/users/{id} {"kiosk_pin"}.
func (k KioskPINs) SetFor(ctx context.Context, actor auth.User, id int64, pin, via string) error {
	if err := auth.ValidateKioskPIN(pin); err != nil {
		return err
	}
	if _, err := k.Auth.GetUser(ctx, id); err != nil {
		return err
	}
	if err := k.Auth.SetKioskCredentials(ctx, id, &pin, nil); err != nil {
		return err
	}
	if err := k.audit(ctx, audit.Entry{At: k.Clock(), Actor: "user:" + strconv.FormatInt(actor.ID, 10), Action: "user.update",
		Subject: "user:" + strconv.FormatInt(id, 10), Details: map[string]any{"kiosk_pin": "changed", "via": via}}); err != nil {
		return fmt.Errorf("audit user update: %w", err)
	}
	return nil
}

// checkPassword is the step-up check of p's current password
// (auth.StepUp): a wrong one is counted on p's session, not against the
// user's login limits, and the MaxStepUpFailures-th ends that session. A
// wrong one is audited password.step_up_failed with purpose ("kiosk_pin",
// "api_token", "password") as "for", the session's count and whether it
// ended; it is 403 wrong_password, or 401 session_ended when the session
// ended.
func (k KioskPINs) checkPassword(ctx context.Context, p auth.Principal, password, source string, now time.Time, via, purpose string) error {
	err := k.Auth.StepUp(ctx, p, password, source)
	var wrong *auth.WrongStepUp
	switch {
	case err == nil:
		return nil
	case errors.As(err, &wrong):
		subj := "user:" + strconv.FormatInt(p.ID, 10)
		if aerr := k.audit(ctx, audit.Entry{At: now, Actor: subj, Action: "password.step_up_failed", Subject: subj,
			Details: map[string]any{"source": source, "via": via, "for": purpose, "session": p.TokenKind,
				"failures": wrong.Failures, "session_ended": wrong.Ended}}); aerr != nil {
			return fmt.Errorf("audit failed password check: %w", aerr)
		}
		if wrong.Ended {
			return &Error{Status: http.StatusUnauthorized, Code: "session_ended",
				Message: fmt.Sprintf("the current password was wrong %d times: this session has ended; log in again", wrong.Failures), Err: errors.Join(auth.ErrUnauthenticated, err)}
		}
		return &Error{Status: http.StatusForbidden, Code: "wrong_password",
			Message: fmt.Sprintf("the current password is wrong (%d of %d: at %d this session ends)", wrong.Failures, auth.MaxStepUpFailures, auth.MaxStepUpFailures),
			Err:     errors.Join(ErrWrongPassword, err)}
	case errors.Is(err, auth.ErrUnauthenticated):
		return &Error{Status: http.StatusUnauthorized, Code: "session_ended", Message: "this session has ended; log in again", Err: err}
	}
	if ae := passwordRefusal(k.Log, err, source, now); ae != nil {
		return ae // the hashing slots' refusal
	}
	return err
}

// passwordRefusal is the answer of every door that checks a password (a
// login, setting one's own staff PIN) when auth.PasswordCheck refused to
// check it: 503 login_unavailable (ErrLoginLimitsUnavailable; logged),
// 429 too_many_attempts (a *TooManyAttempts) or 429 login_busy
// (auth.ErrLoginBusy); nil for any other err. now is the attempt's time;
// setRetryAfter sets the 429s' Retry-After.
func passwordRefusal(log *slog.Logger, err error, source string, now time.Time) *Error {
	var refused *auth.LimitsRefusal
	switch {
	case errors.Is(err, auth.ErrLimitsUnavailable):
		log.Error("login limits unavailable: password check refused", "source", source, "err", err)
		return &Error{Status: http.StatusServiceUnavailable, Code: "login_unavailable",
			Message: "passwords cannot be checked right now (the login limits cannot be read); try again later", Err: ErrLoginLimitsUnavailable}
	case errors.As(err, &refused):
		wait := refused.Until.Sub(now).Truncate(time.Second) + time.Second
		msg := "many failed logins for this user; try again in %d seconds"
		switch {
		case refused.Source:
			msg = "too many failed logins for this user from your address; try again in %d seconds"
		case refused.Address:
			msg = "many failed logins from your address; try again in %d seconds"
		}
		return &Error{Status: http.StatusTooManyRequests, Code: "too_many_attempts",
			Message: fmt.Sprintf(msg, int(wait/time.Second)), Err: &TooManyAttempts{RetryAfter: wait}}
	case errors.Is(err, auth.ErrLoginBusy):
		return &Error{Status: http.StatusTooManyRequests, Code: "login_busy",
			Message: fmt.Sprintf("too many passwords are being checked right now (or one from your address already is); try again in %d seconds",
				int(auth.LoginBusyRetry/time.Second)), Err: err}
	}
	return nil
}

// setRetryAfter sets Retry-After for an answer that says when to try
// again (passwordRefusal's 429s).
func setRetryAfter(w http.ResponseWriter, err error) {
	var tma *TooManyAttempts
	switch {
	case errors.As(err, &tma):
		w.Header().Set("Retry-After", strconv.Itoa(int(tma.RetryAfter/time.Second)))
	case errors.Is(err, auth.ErrLoginBusy):
		w.Header().Set("Retry-After", strconv.Itoa(int(auth.LoginBusyRetry/time.Second)))
	}
}

// takenSince counts u's own new PINs refused as taken since (chained and
// pending audit records).
func (k KioskPINs) takenSince(ctx context.Context, subj string, since time.Time) (int, error) {
	var n int
	err := k.Pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM audit_log WHERE subject = $1 AND action = 'user.kiosk_pin_taken' AND at > $2) +
		(SELECT count(*) FROM audit_pending WHERE subject = $1 AND action = 'user.kiosk_pin_taken' AND at > $2)`,
		subj, since).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("api: count refused staff PINs: %w", err)
	}
	return n, nil
}

func (k KioskPINs) audit(ctx context.Context, e audit.Entry) error {
	return appendAuditTo(ctx, k.Pool, e)
}
