package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"kluis/backend/audit"
	"kluis/backend/auth"
)

// People change their own password (POST /api/v1/me/password and the
// staff console's /staff/account/password), not only through an admin's
// reset: with the current password (step-up, auth.StepUp: a wrong one
// counts on the session, the third ends it), the rule of every password
// (auth.ValidatePassword, checked first), never the same password again.
// Like a reset, the change ends every other login session of the user,
// API and console, and revokes the user's API tokens unless the person
// keeps them (keep_api_tokens: the change is routine, nobody else knew
// the old one), in one transaction; the session it is made with stays.
// It is audited user.update {"password": "changed", "own": true} with
// what ended. An API token cannot change its user's password (403
// session_required): automation holds no password and must not gain one.

// ErrSamePassword means the new password is the current one (400
// same_password).
var ErrSamePassword = errors.New("api: the new password is the current one")

// OwnPasswordChange is one person's change of their own password.
type OwnPasswordChange struct {
	// Current and New are the passwords typed.
	Current, New string
	// KeepAPITokens keeps the person's API tokens.
	KeepAPITokens bool
	// Source is the client's address; Via ("api" or "console") goes in
	// the audit record.
	Source, Via string
}

// needSession refuses p unless it holds a session (an API one or the
// console's): 403 session_required, saying what an API token cannot do
// and how to do it with a session. Setting one's own credentials or
// making an API token needs the password again; automation holds none
// and must gain no credential.
func needSession(p auth.Principal, cannot, how string) error {
	if p.TokenKind == "session" || p.TokenKind == "web" {
		return nil
	}
	return errorf(http.StatusForbidden, "session_required",
		"an API token cannot %s: log in (POST /api/v1/sessions) and %s", cannot, how)
}

// keepCaller is keep with the caller's own session kept (by its kind:
// an API session or token, or a console session).
func keepCaller(keep auth.PasswordChange, p auth.Principal) auth.PasswordChange {
	if p.TokenKind == "web" {
		keep.KeepWebSession = p.TokenID
	} else {
		keep.KeepToken = p.TokenID
	}
	return keep
}

// ChangeOwn changes p's own password (see above). Errors, each the API's
// *Error: 403 session_required (p is an API token), 400 weak_password
// (before anything is checked), 400 same_password, and those of the
// step-up check (403 wrong_password, 401 session_ended, 429 login_busy).
func (k KioskPINs) ChangeOwn(ctx context.Context, p auth.Principal, c OwnPasswordChange) (auth.Ended, error) {
	if err := needSession(p, "change its user's password", "change it with the session token"); err != nil {
		return auth.Ended{}, err
	}
	if err := auth.ValidatePassword(c.New); err != nil {
		return auth.Ended{}, err
	}
	if c.New == c.Current {
		return auth.Ended{}, &Error{Status: http.StatusBadRequest, Code: "same_password",
			Message: "the new password must differ from the current one", Err: ErrSamePassword}
	}
	now := k.Clock()
	if err := k.checkPassword(ctx, p, c.Current, c.Source, now, c.Via, "password"); err != nil {
		return auth.Ended{}, err
	}
	ended, err := k.Auth.ChangePassword(ctx, p.ID, c.New, keepCaller(auth.PasswordChange{KeepAPITokens: c.KeepAPITokens}, p))
	if err != nil {
		return auth.Ended{}, err
	}
	d := map[string]any{"password": "changed", "own": true, "via": c.Via, "source": c.Source, "sessions_ended": ended.Sessions}
	if c.KeepAPITokens {
		d["api_tokens"] = "kept"
	} else {
		d["api_tokens_revoked"] = ended.APITokens
	}
	subj := "user:" + strconv.FormatInt(p.ID, 10)
	if err := k.audit(ctx, audit.Entry{At: now, Actor: subj, Action: "user.update", Subject: subj, Details: d}); err != nil {
		return auth.Ended{}, fmt.Errorf("audit own password change: %w", err)
	}
	return ended, nil
}

type ownPasswordRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
	KeepAPITokens   bool   `json:"keep_api_tokens"`
}

// handleChangeOwnPassword lets any user change their own password with
// their current one (ChangeOwn); it answers what ended.
func (s *Server) handleChangeOwnPassword(w http.ResponseWriter, r *http.Request) error {
	var req ownPasswordRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.CurrentPassword == "" || req.NewPassword == "" {
		return errorf(http.StatusBadRequest, "missing_field", "current_password and new_password are required")
	}
	ended, err := s.kioskPINs().ChangeOwn(r.Context(), principal(r.Context()), OwnPasswordChange{
		Current: req.CurrentPassword, New: req.NewPassword, KeepAPITokens: req.KeepAPITokens,
		Source: auth.ClientSource(r, s.trusted), Via: "api"})
	setRetryAfter(w, err)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ended)
	return nil
}
