package api

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"kluis/backend/audit"
	"kluis/backend/auth"
)

// appendAudit records an entry in its own transaction. Failures are
// returned; callers decide whether they are fatal.
func (s *Server) appendAudit(ctx context.Context, e audit.Entry) error {
	if e.At.IsZero() {
		e.At = s.clock()
	}
	return appendAuditTo(ctx, s.pool, e)
}

// appendAuditTo records e in its own transaction on pool.
func appendAuditTo(ctx context.Context, pool *pgxpool.Pool, e audit.Entry) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := audit.Append(ctx, tx, e)
		return err
	})
}

func actor(p auth.Principal) string { return "user:" + strconv.FormatInt(p.ID, 10) }

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) error {
	var req loginRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Username == "" || req.Password == "" {
		return errorf(http.StatusBadRequest, "missing_field", "username and password are required")
	}
	ctx := r.Context()
	now := s.clock()
	source := auth.ClientSource(r, s.trusted)
	u, err := s.passwordCheck().Check(ctx, auth.PasswordAttempt{Username: req.Username, Password: req.Password, Source: source, Now: now})
	var refused *auth.LimitsRefusal
	if errors.As(err, &refused) || errors.Is(err, auth.ErrInvalidCredentials) {
		if aerr := s.appendAudit(ctx, DeniedLogin(ctx, s.auth, req.Username, source, now, refused, nil)); aerr != nil {
			return fmt.Errorf("audit denied login: %w", aerr)
		}
	}
	if ae := passwordRefusal(s.log, err, source, now); ae != nil {
		setRetryAfter(w, ae)
		return ae
	}
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		return errorf(http.StatusUnauthorized, "invalid_credentials", "wrong username or password")
	case err != nil:
		return err
	}
	iss, err := s.auth.IssueSession(ctx, u)
	if err != nil {
		return err
	}
	subj := "user:" + strconv.FormatInt(iss.User.ID, 10)
	if err := s.appendAudit(ctx, audit.Entry{Actor: subj, Action: "login", Subject: subj,
		Details: map[string]any{"token_id": iss.ID, "source": source}}); err != nil {
		return fmt.Errorf("audit login: %w", err)
	}
	writeJSON(w, http.StatusCreated, iss)
	return nil
}

// DeniedLogin is the audit record of a password login refused for
// username from source at now: login.failed (a wrong password, an unknown
// or disabled user) or, when refused is not nil, login.refused (the login
// limits refused it before the password was checked; "limit" says which:
// "source" the username from this address, "username" or "address" a
// back-off, "until" when it ends). The user is actor and subject when the
// username is known, "anonymous" otherwise; neither the password nor the
// username typed is written. extra's keys are added to the details
// (the console's "via"). Both doors, the API's and the console's, write
// one per refused attempt.
func DeniedLogin(ctx context.Context, as *auth.Service, username, source string, now time.Time, refused *auth.LimitsRefusal, extra map[string]any) audit.Entry {
	d := map[string]any{"known_user": false, "source": source}
	e := audit.Entry{At: now, Actor: "anonymous", Action: "login.failed", Details: d}
	if u, err := as.UserByName(ctx, username); err == nil {
		subj := "user:" + strconv.FormatInt(u.ID, 10)
		e.Actor, e.Subject = subj, subj
		d["known_user"] = true
	}
	if refused != nil {
		e.Action = "login.refused"
		limit := "username"
		switch {
		case refused.Source:
			limit = "source"
		case refused.Address:
			limit = "address"
		}
		d["limit"], d["until"] = limit, refused.Until.UTC().Format(time.RFC3339)
	}
	for k, v := range extra {
		d[k] = v
	}
	return e
}

// handleClearLoginLockout lets an admin lift every login limit of a user
// (all sources, and the back-off), audited with the reason.
func (s *Server) handleClearLoginLockout(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var req reasonRequest
	if err := decodeOptionalJSON(r, &req); err != nil {
		return err
	}
	if err := checkReason(req.Reason, false); err != nil {
		return err
	}
	u, err := s.auth.GetUser(r.Context(), id)
	if err != nil {
		return err
	}
	n, err := s.logins.Clear(r.Context(), u.Username)
	if err != nil {
		return err
	}
	subj := "user:" + strconv.FormatInt(u.ID, 10)
	if err := s.appendAudit(r.Context(), audit.Entry{Actor: actor(principal(r.Context())), Action: "login.lockout_cleared", Subject: subj,
		Details: map[string]any{"reason": strings.TrimSpace(req.Reason), "failures": n}}); err != nil {
		return fmt.Errorf("audit login lockout clear: %w", err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"user_id": u.ID, "username": u.Username, "failures_cleared": n})
	return nil
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) error {
	p := principal(r.Context())
	if err := s.auth.Revoke(r.Context(), p.ID, p.TokenID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type meResponse struct {
	auth.User
	TokenID   int64  `json:"token_id"`
	TokenKind string `json:"token_kind"`
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) error {
	p := principal(r.Context())
	writeJSON(w, http.StatusOK, meResponse{User: p.User, TokenID: p.TokenID, TokenKind: p.TokenKind})
	return nil
}

type ownKioskPINRequest struct {
	CurrentPassword string `json:"current_password"`
	KioskPIN        string `json:"kiosk_pin"`
}

// passwordCheck checks passwords the one way every door does (the login
// limits, the hashing slots), logging to the API's logger.
func (s *Server) passwordCheck() auth.PasswordCheck {
	return auth.PasswordCheck{Auth: s.auth, Limits: s.logins, Log: s.log}
}

// kioskPINs sets staff PINs with the server's parts (KioskPINs, shared
// with the staff console).
func (s *Server) kioskPINs() KioskPINs {
	return KioskPINs{Pool: s.pool, Auth: s.auth, Logins: s.logins, Clock: s.clock, Log: s.log}
}

// handleSetOwnKioskPIN lets any user set their own staff PIN with their
// current password.
func (s *Server) handleSetOwnKioskPIN(w http.ResponseWriter, r *http.Request) error {
	var req ownKioskPINRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.CurrentPassword == "" || req.KioskPIN == "" {
		return errorf(http.StatusBadRequest, "missing_field", "current_password and kiosk_pin are required")
	}
	p := principal(r.Context())
	err := s.kioskPINs().SetOwn(r.Context(), p, req.CurrentPassword, req.KioskPIN, auth.ClientSource(r, s.trusted), "api")
	setRetryAfter(w, err)
	if err != nil {
		return err
	}
	u, err := s.auth.GetUser(r.Context(), p.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

func (s *Server) handleListUsers(w http.ResponseWriter, r *http.Request) error {
	limit, after, err := pageInt(r)
	if err != nil {
		return err
	}
	users, err := s.auth.ListUsers(r.Context(), after, limit+1)
	if err != nil {
		return err
	}
	next := ""
	if len(users) > limit {
		users = users[:limit]
		next = strconv.FormatInt(users[limit-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, newPage(r, users, next))
	return nil
}

type createUserRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Role     string `json:"role"`
}

func (s *Server) handleCreateUser(w http.ResponseWriter, r *http.Request) error {
	var req createUserRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Username == "" || req.Password == "" || req.Role == "" {
		return errorf(http.StatusBadRequest, "missing_field", "username, password and role are required")
	}
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		return err
	}
	u, err := s.auth.CreateUser(r.Context(), req.Username, req.Password, role)
	if err != nil {
		return err
	}
	p := principal(r.Context())
	if err := s.appendAudit(r.Context(), audit.Entry{Actor: actor(p), Action: "user.create",
		Subject: "user:" + strconv.FormatInt(u.ID, 10), Details: map[string]any{"role": u.Role}}); err != nil {
		return fmt.Errorf("audit user create: %w", err)
	}
	w.Header().Set("Location", "/api/v1/users/"+strconv.FormatInt(u.ID, 10))
	writeJSON(w, http.StatusCreated, u)
	return nil
}

func pathID(r *http.Request, name string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id < 1 {
		return 0, errorf(http.StatusBadRequest, "invalid_id", "%s must be a positive whole number", name)
	}
	return id, nil
}

func (s *Server) handleGetUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	u, err := s.auth.GetUser(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

type updateUserRequest struct {
	Disabled *bool   `json:"disabled"`
	Password *string `json:"password"`
	// KioskPIN and Badge set ("" clears) the kiosk credentials.
	KioskPIN *string `json:"kiosk_pin"`
	Badge    *string `json:"badge"`
	// KeepAPITokens, with password, keeps the user's API tokens (by
	// default a new password revokes them).
	KeepAPITokens *bool `json:"keep_api_tokens"`
	// CurrentPassword is the caller's password, asked again (step-up)
	// when the caller sets their own password, staff PIN or badge.
	CurrentPassword *string `json:"current_password"`
}

func (s *Server) handleUpdateUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var req updateUserRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Disabled == nil && req.Password == nil && req.KioskPIN == nil && req.Badge == nil {
		return errorf(http.StatusBadRequest, "missing_field", "give disabled, password, kiosk_pin and/or badge")
	}
	p := principal(r.Context())
	if req.KeepAPITokens != nil && req.Password == nil {
		return errorf(http.StatusBadRequest, "missing_field", "keep_api_tokens goes with password")
	}
	if req.Disabled != nil && *req.Disabled && id == p.ID {
		return errorf(http.StatusConflict, "cannot_disable_self", "you cannot disable your own account")
	}
	if err := s.ownCredentialsStepUp(w, r, p, id, req); err != nil {
		return err
	}
	if _, err := s.auth.GetUser(r.Context(), id); err != nil {
		return err
	}
	changes := map[string]any{}
	if req.Password != nil {
		// Every login session of the user ends (whoever knew the old
		// password is signed out), except the caller's own, and every
		// API token unless the admin keeps them: a token made with a
		// session taken before the reset would keep the old password's
		// reach (docs/security.md "API tokens and a password reset").
		keep := auth.PasswordChange{KeepAPITokens: req.KeepAPITokens != nil && *req.KeepAPITokens}
		if id == p.ID {
			keep = keepCaller(keep, p)
		}
		ended, err := s.auth.ChangePassword(r.Context(), id, *req.Password, keep)
		if err != nil {
			return err
		}
		changes["password"] = "changed"
		changes["sessions_ended"] = ended.Sessions
		if keep.KeepAPITokens {
			changes["api_tokens"] = "kept"
		} else {
			changes["api_tokens_revoked"] = ended.APITokens
		}
	}
	if req.KioskPIN != nil || req.Badge != nil {
		if err := s.auth.SetKioskCredentials(r.Context(), id, req.KioskPIN, req.Badge); err != nil {
			return err
		}
		if req.KioskPIN != nil {
			changes["kiosk_pin"] = "changed"
		}
		if req.Badge != nil {
			changes["badge"] = "changed"
		}
	}
	if req.Disabled != nil {
		if _, err := s.auth.SetDisabled(r.Context(), id, *req.Disabled); err != nil {
			return err
		}
		changes["disabled"] = *req.Disabled
	}
	if err := s.appendAudit(r.Context(), audit.Entry{Actor: actor(p), Action: "user.update",
		Subject: "user:" + strconv.FormatInt(id, 10), Details: changes}); err != nil {
		return fmt.Errorf("audit user update: %w", err)
	}
	u, err := s.auth.GetUser(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

// ownCredentialsStepUp applies to an admin's own account the rule of
// POST /api/v1/me/password and /me/kiosk-pin: setting one's own password,
// staff PIN or badge needs a session (403 session_required for an API
// token: automation holds no password and gains no credential) and the
// current password, checked again (400 missing_field without it; the
// step-up: 403 wrong_password counted on the session, the third 401
// session_ended). Without it whoever held an admin's session or API token
// set the admin's password (ending the real admin's other sessions) or a
// staff PIN or badge that opens the kiosks as the admin. Another user's
// account is a reset and needs no password; current_password is refused
// there (400 invalid_input), and on one's own account without such a
// field.
func (s *Server) ownCredentialsStepUp(w http.ResponseWriter, r *http.Request, p auth.Principal, id int64, req updateUserRequest) error {
	credentials := req.Password != nil || req.KioskPIN != nil || req.Badge != nil
	if id != p.ID || !credentials {
		if req.CurrentPassword != nil {
			return errorf(http.StatusBadRequest, "invalid_input",
				"current_password is asked only when you set your own password, staff PIN or badge")
		}
		return nil
	}
	if err := needSession(p, "set its own user's password, staff PIN or badge", "give current_password with the session token"); err != nil {
		return err
	}
	if req.CurrentPassword == nil || *req.CurrentPassword == "" {
		return errorf(http.StatusBadRequest, "missing_field",
			"current_password is required: setting your own password, staff PIN or badge needs your password again (or use POST /api/v1/me/password, /api/v1/me/kiosk-pin)")
	}
	purpose := "badge"
	switch {
	case req.Password != nil:
		purpose = "password"
	case req.KioskPIN != nil:
		purpose = "kiosk_pin"
	}
	if err := s.kioskPINs().checkPassword(r.Context(), p, *req.CurrentPassword, auth.ClientSource(r, s.trusted), s.clock(), "api", purpose); err != nil {
		setRetryAfter(w, err)
		return err
	}
	return nil
}

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request) error {
	return s.listTokens(w, r, principal(r.Context()).ID)
}

// listTokens answers a page of a user's tokens, newest first (the cursor
// is the last id shown); ?active=true keeps those neither expired nor
// revoked.
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, userID int64) error {
	limit, before, err := pageInt(r)
	if err != nil {
		return err
	}
	active := false
	switch r.URL.Query().Get("active") {
	case "", "false":
	case "true":
		active = true
	default:
		return errorf(http.StatusBadRequest, "invalid_filter", "active must be true or false")
	}
	toks, err := s.auth.ListTokens(r.Context(), userID, before, limit+1, active)
	if err != nil {
		return err
	}
	next := ""
	if len(toks) > limit {
		toks = toks[:limit]
		next = strconv.FormatInt(toks[limit-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, newPage(r, toks, next))
	return nil
}

type createTokenRequest struct {
	Name string `json:"name"`
	// ExpiresInDays is the token's lifetime; 0 or absent: the server's
	// default (-api-token-ttl), at most -api-token-max-ttl.
	ExpiresInDays int `json:"expires_in_days"`
	// CurrentPassword is the caller's password, checked again (step-up):
	// a session taken from someone cannot make a token that outlives it.
	CurrentPassword string `json:"current_password"`
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) error {
	var req createTokenRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	_, maxTTL := s.auth.APITokenLimits()
	maxDays := int(maxTTL / (24 * time.Hour))
	if req.ExpiresInDays < 0 || req.ExpiresInDays > maxDays {
		return errorf(http.StatusBadRequest, "invalid_expiry", "expires_in_days must be from 1 to %d (0 or absent: the default)", maxDays)
	}
	p := principal(r.Context())
	if err := auth.ValidateTokenName(req.Name); err != nil {
		return err // a bad request says so whoever sends it
	}
	// An API token that could make API tokens would outlive its own
	// expiry: one taken (from a CI's settings, a log) renews itself every
	// year for good (a password reset keeping API tokens, keep_api_tokens,
	// would not end it). A new token needs the password: a session's.
	if err := needSession(p, "create API tokens", "create it with the session token"); err != nil {
		return err
	}
	if req.CurrentPassword == "" {
		return errorf(http.StatusBadRequest, "missing_field", "current_password is required: a new API token needs your password again")
	}
	// Step-up: a session taken (12 hours of it) must not make a token
	// that outlives it and the victim's password reset. The check is a
	// login's (the limits, the hashing slots; a wrong one is a failed
	// login of the user, audited).
	if err := s.kioskPINs().checkPassword(r.Context(), p, req.CurrentPassword, auth.ClientSource(r, s.trusted), s.clock(), "api", "api_token"); err != nil {
		setRetryAfter(w, err)
		return err
	}
	iss, err := s.auth.CreateAPITokenTTL(r.Context(), p.ID, req.Name, time.Duration(req.ExpiresInDays)*24*time.Hour)
	if err != nil {
		return err
	}
	if err := s.appendAudit(r.Context(), audit.Entry{Actor: actor(p), Action: "token.create",
		Subject: "user:" + strconv.FormatInt(p.ID, 10), Details: map[string]any{"token_id": iss.ID, "expires_at": iss.ExpiresAt}}); err != nil {
		return fmt.Errorf("audit token create: %w", err)
	}
	writeJSON(w, http.StatusCreated, iss)
	return nil
}

func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	return s.revokeToken(w, r, principal(r.Context()).ID, id)
}

// revokeToken revokes token tokenID of user userID (audited, with who).
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, userID, tokenID int64) error {
	if err := s.auth.Revoke(r.Context(), userID, tokenID); err != nil {
		return err
	}
	if err := s.appendAudit(r.Context(), audit.Entry{Actor: actor(principal(r.Context())), Action: "token.revoke",
		Subject: "user:" + strconv.FormatInt(userID, 10), Details: map[string]any{"token_id": tokenID}}); err != nil {
		return fmt.Errorf("audit token revoke: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleListUserTokens lets an admin see any user's tokens.
func (s *Server) handleListUserTokens(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	if _, err := s.auth.GetUser(r.Context(), id); err != nil {
		return err
	}
	return s.listTokens(w, r, id)
}

// handleRevokeUserToken lets an admin revoke any user's token.
func (s *Server) handleRevokeUserToken(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	tok, err := pathID(r, "token")
	if err != nil {
		return err
	}
	return s.revokeToken(w, r, id, tok)
}

// auditRecord is the JSON form of an audit record.
type auditRecord struct {
	Seq     int64     `json:"seq"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Subject string    `json:"subject"`
	Details any       `json:"details"`
	Hash    string    `json:"hash"`
}

func (s *Server) handleListAudit(w http.ResponseWriter, r *http.Request) error {
	limit, after, err := pageInt(r)
	if err != nil {
		return err
	}
	recs, err := audit.List(r.Context(), s.pool, audit.ListOptions{Subject: r.URL.Query().Get("subject"), AfterSeq: after, Limit: limit + 1})
	if err != nil {
		return err
	}
	next := ""
	if len(recs) > limit {
		recs = recs[:limit]
		next = strconv.FormatInt(recs[limit-1].Seq, 10)
	}
	out := make([]auditRecord, 0, len(recs))
	for _, rc := range recs {
		out = append(out, auditRecord{Seq: rc.Seq, At: rc.At, Actor: rc.Actor, Action: rc.Action,
			Subject: rc.Subject, Details: rc.Details, Hash: hex.EncodeToString(rc.Hash)})
	}
	writeJSON(w, http.StatusOK, newPage(r, out, next))
	return nil
}

type verifyResponse struct {
	OK       bool   `json:"ok"`
	Records  int    `json:"records"`
	FirstBad *int64 `json:"first_bad,omitempty"`
	Reason   string `json:"reason,omitempty"`
	HeadSeq  int64  `json:"head_seq"`
	HeadHash string `json:"head_hash"`
}

func (s *Server) handleVerifyAudit(w http.ResponseWriter, r *http.Request) error {
	rep, err := audit.Verify(r.Context(), s.pool)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, verifyResponse{OK: rep.OK(), Records: rep.Records, FirstBad: rep.FirstBad,
		Reason: rep.Reason, HeadSeq: rep.HeadSeq, HeadHash: hex.EncodeToString(rep.HeadHash)})
	return nil
}
