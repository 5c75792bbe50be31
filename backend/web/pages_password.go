package web

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"kluis/backend/api"
	"kluis/backend/auth"
)

// The own-password form (/staff/account/password): a signed-in person
// changes their password with their current one, through
// api.KioskPINs.ChangeOwn as POST /api/v1/me/password does (the rule, the
// step-up check, what ends, the audit record). Passwords are never
// written into a page: a refused form comes back with its fields empty.

// Form fields of the own-password form.
const (
	fieldNewPassword      = "new_password"
	fieldNewPasswordAgain = "new_password_again"
	fieldKeepAPITokens    = "keep_api_tokens"
)

type passwordData struct {
	Username string
	Errors   map[string]string
	Min, Max int
}

func (w *Web) ownPasswordForm(rw http.ResponseWriter, q *req) error {
	w.showPasswordForm(rw, q, http.StatusOK, nil)
	return nil
}

func (w *Web) ownPassword(rw http.ResponseWriter, q *req) error {
	f := q.r.PostForm
	current, pw, again := f.Get(fieldPassword), f.Get(fieldNewPassword), f.Get(fieldNewPasswordAgain)
	errs := map[string]string{}
	if current == "" {
		errs[fieldPassword] = q.t.S("password.missing")
	}
	switch {
	case auth.ValidatePassword(pw) != nil:
		errs[fieldNewPassword] = q.t.F("password.weak", "min", auth.MinPasswordLen, "max", auth.MaxPasswordLen)
	case again != pw:
		errs[fieldNewPasswordAgain] = q.t.S("password.mismatch")
	}
	if len(errs) > 0 {
		w.showPasswordForm(rw, q, http.StatusBadRequest, errs)
		return nil
	}
	_, err := w.kioskPINs().ChangeOwn(q.r.Context(), q.sess.Principal(), api.OwnPasswordChange{
		Current: current, New: pw, KeepAPITokens: f.Get(fieldKeepAPITokens) != "",
		Source: auth.ClientSource(q.r, w.o.TrustedProxies), Via: "console"})
	var ae *api.Error
	switch {
	case err == nil:
		w.redirect(rw, q.r, Prefix+"account/password", "notice.password_changed", 0)
		return nil
	case errors.Is(err, auth.ErrUnauthenticated):
		return w.stepUpEnded(rw, q)
	case errors.Is(err, api.ErrWrongPassword):
		errs[fieldPassword] = wrongCurrentPassword(q.t, err)
	case errors.Is(err, api.ErrSamePassword):
		errs[fieldNewPassword] = q.t.S("password.same")
	case errors.Is(err, auth.ErrLoginBusy):
		rw.Header().Set("Retry-After", strconv.Itoa(int(auth.LoginBusyRetry/time.Second)))
		errs[fieldPassword] = q.t.S("login.busy")
	default:
		return err
	}
	status := http.StatusBadRequest
	if errors.As(err, &ae) {
		status = ae.Status
	}
	w.showPasswordForm(rw, q, status, errs)
	return nil
}

func (w *Web) showPasswordForm(rw http.ResponseWriter, q *req, status int, errs map[string]string) {
	w.render(rw, q, status, "password", q.t.S("password.title"), passwordData{Username: q.sess.User.Username, Errors: errs,
		Min: auth.MinPasswordLen, Max: auth.MaxPasswordLen})
}
