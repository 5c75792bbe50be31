package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"kluis/backend/api"
	"kluis/backend/audit"
	"kluis/backend/auth"
)

type loginData struct {
	Username, Next, Token string
	// Error is the message of a failed attempt.
	Error string
	// Ended says a session ended (idle, expired, logged out elsewhere).
	Ended bool
}

// safeNext keeps a "next" target only when it is a page of the console.
func safeNext(s string) string {
	if !strings.HasPrefix(s, Prefix) || strings.HasPrefix(s, Prefix+"login") || strings.ContainsAny(s, "\\\r\n") ||
		strings.Contains(s, "//") || strings.Contains(s, "/../") {
		return ""
	}
	return s
}

func (w *Web) loginForm(rw http.ResponseWriter, q *req) error {
	// A signed-in person goes to the console.
	if c, err := w.cookie(q.r, sessionCookie); err == nil {
		if _, err := w.o.Auth.WebSessionFor(q.r.Context(), c.Value, false); err == nil {
			http.Redirect(rw, q.r, Prefix, http.StatusSeeOther)
			return nil
		}
	}
	d := loginData{Next: safeNext(q.r.URL.Query().Get("next")), Ended: q.r.URL.Query().Get("ended") == "1"}
	return w.showLogin(rw, q, http.StatusOK, d)
}

// showLogin renders the login form with a fresh double-submit token.
func (w *Web) showLogin(rw http.ResponseWriter, q *req, status int, d loginData) error {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	d.Token = base64.RawURLEncoding.EncodeToString(b)
	w.setCookie(rw, q.r, loginCookie, d.Token, 3600)
	w.render(rw, q, status, "login", q.t.S("login.title"), d)
	return nil
}

func (w *Web) login(rw http.ResponseWriter, q *req) error {
	r := q.r
	c, err := w.cookie(r, loginCookie)
	tok := r.PostForm.Get("login_token")
	if err != nil || tok == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(tok)) != 1 {
		// Logged and counted like the session forms' refusals, not
		// audited (any website can make a browser send one); whether the
		// cookie and the field came, never their values.
		w.log.Warn("login form without a valid token refused", "path", r.URL.Path,
			"cookie_present", err == nil, "token_present", tok != "")
		w.refused.WithLabelValues(refusedLoginToken).Inc()
		return fail(http.StatusForbidden, "error.csrf")
	}
	d := loginData{Username: strings.TrimSpace(r.PostForm.Get("username")), Next: safeNext(r.PostForm.Get("next"))}
	password := r.PostForm.Get("password")
	if d.Username == "" || password == "" {
		d.Error = q.t.S("login.missing")
		return w.showLogin(rw, q, http.StatusBadRequest, d)
	}
	ctx := r.Context()
	now := w.o.Clock()
	source := auth.ClientSource(r, w.o.TrustedProxies)
	u, err := auth.PasswordCheck{Auth: w.o.Auth, Limits: w.o.LoginLimits, Log: w.log}.Check(ctx,
		auth.PasswordAttempt{Username: d.Username, Password: password, Source: source, Now: now})
	var refused *auth.LimitsRefusal
	if errors.As(err, &refused) || errors.Is(err, auth.ErrInvalidCredentials) {
		// A denied login, audited as over the API.
		if err := w.audit(ctx, api.DeniedLogin(ctx, w.o.Auth, d.Username, source, now, refused, map[string]any{"via": "console"})); err != nil {
			return err
		}
	}
	switch {
	case errors.Is(err, auth.ErrLimitsUnavailable):
		w.log.Error("login limits unavailable: login refused", "source", source, "err", err)
		d.Error = q.t.S("login.unavailable")
		return w.showLogin(rw, q, http.StatusServiceUnavailable, d)
	case errors.As(err, &refused):
		secs := int(refused.Until.Sub(now).Seconds()) + 1
		rw.Header().Set("Retry-After", strconv.Itoa(secs))
		d.Error = q.t.F("login.too_many", "n", (secs+59)/60)
		return w.showLogin(rw, q, http.StatusTooManyRequests, d)
	case errors.Is(err, auth.ErrLoginBusy):
		rw.Header().Set("Retry-After", strconv.Itoa(int(auth.LoginBusyRetry/time.Second)))
		d.Error = q.t.S("login.busy")
		return w.showLogin(rw, q, http.StatusTooManyRequests, d)
	case errors.Is(err, auth.ErrInvalidCredentials):
		d.Error = q.t.S("login.invalid")
		return w.showLogin(rw, q, http.StatusUnauthorized, d)
	case err != nil:
		return err
	}
	ws, err := w.o.Auth.StartWebSession(ctx, u, source)
	if err != nil {
		return err
	}
	subj := "user:" + strconv.FormatInt(u.ID, 10)
	if err := w.audit(ctx, audit.Entry{At: now, Actor: subj, Action: "login", Subject: subj,
		Details: map[string]any{"web_session_id": ws.ID, "source": source, "via": "console"}}); err != nil {
		return err
	}
	w.setCookie(rw, r, sessionCookie, ws.Token, 0)
	w.setCookie(rw, r, loginCookie, "", -1)
	next := d.Next
	if next == "" {
		next = Prefix
	}
	http.Redirect(rw, r, next, http.StatusSeeOther)
	return nil
}

func (w *Web) logout(rw http.ResponseWriter, q *req) error {
	c, err := w.cookie(q.r, sessionCookie)
	if err == nil {
		if err := w.o.Auth.EndWebSession(q.r.Context(), c.Value); err != nil {
			return err
		}
	}
	w.setCookie(rw, q.r, sessionCookie, "", -1)
	subj := q.actor()
	if err := w.audit(q.r.Context(), audit.Entry{At: w.o.Clock(), Actor: subj, Action: "logout", Subject: subj,
		Details: map[string]any{"web_session_id": q.sess.ID, "via": "console"}}); err != nil {
		return err
	}
	w.redirect(rw, q.r, Prefix+"login", "notice.logged_out", 0)
	return nil
}

// audit appends one record in its own transaction.
func (w *Web) audit(ctx context.Context, e audit.Entry) error {
	return pgx.BeginFunc(ctx, w.o.Pool, func(tx pgx.Tx) error {
		_, err := audit.Append(ctx, tx, e)
		return err
	})
}

// peer is the address the request came from (not X-Forwarded-For).
func peer(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}
