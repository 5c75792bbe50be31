package web

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"kluis/backend/api"
	"kluis/backend/auth"
)

// The staff PIN forms: people set their own (with their current password:
// POST /api/v1/me/kiosk-pin) and admins anyone's (PATCH
// /api/v1/users/{id}), through api.KioskPINs, so that the rule, the limits
// and the audit records are the API's. A PIN is never written into a page
// nor logged: a refused form comes back with its fields empty.

// Form fields of the staff PIN forms.
const (
	fieldPassword = "current_password"
	fieldPIN      = "kiosk_pin"
	fieldPINAgain = "kiosk_pin_again"
)

type kioskPINData struct {
	// Own is the signed-in person's own PIN (their password is asked).
	Own bool
	// Username is whose PIN it is (an admin's form).
	Username string
	Action   string
	// Errors are the refusals by field.
	Errors   map[string]string
	Min, Max int
}

// kioskPINs sets staff PINs as the API does.
func (w *Web) kioskPINs() api.KioskPINs {
	return api.KioskPINs{Pool: w.o.Pool, Auth: w.o.Auth, Logins: w.o.LoginLimits, Clock: w.o.Clock, Log: w.log}
}

func (w *Web) ownPINForm(rw http.ResponseWriter, q *req) error {
	w.showPINForm(rw, q, http.StatusOK, kioskPINData{Own: true, Username: q.sess.User.Username, Action: ownPINPath})
	return nil
}

func (w *Web) ownPIN(rw http.ResponseWriter, q *req) error {
	d := kioskPINData{Own: true, Username: q.sess.User.Username, Action: ownPINPath}
	f := q.r.PostForm
	pin, password := f.Get(fieldPIN), f.Get(fieldPassword)
	d.Errors = w.checkPINFields(q, pin, f.Get(fieldPINAgain))
	if password == "" {
		d.Errors[fieldPassword] = q.t.S("kioskpin.password_missing")
	}
	if len(d.Errors) > 0 {
		w.showPINForm(rw, q, http.StatusBadRequest, d)
		return nil
	}
	err := w.kioskPINs().SetOwn(q.r.Context(), q.sess.Principal(), password, pin, auth.ClientSource(q.r, w.o.TrustedProxies), "console")
	if err != nil {
		return w.pinRefused(rw, q, d, err)
	}
	w.redirect(rw, q.r, d.Action, "notice.kiosk_pin_set", 0)
	return nil
}

// userOf reads the {id} of an admin's form.
func (w *Web) userOf(q *req) (auth.User, error) {
	id, err := strconv.ParseInt(q.r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return auth.User{}, fail(http.StatusNotFound, "error.not_found")
	}
	u, err := w.o.Auth.GetUser(q.r.Context(), id)
	if errors.Is(err, auth.ErrNotFound) {
		return auth.User{}, fail(http.StatusNotFound, "error.not_found")
	}
	return u, err
}

// ownPINPath is the form of one's own staff PIN, which asks for the
// password again. An admin's form for another user's PIN asks none (a
// reset, as PATCH /api/v1/users/{id}); for the admin's own id it sends
// to ownPINPath, changing nothing: otherwise whoever sat at an admin's
// open console set a PIN that opens the kiosks as the admin without the
// admin's password.
const ownPINPath = Prefix + "account/kiosk-pin"

func (w *Web) userPINForm(rw http.ResponseWriter, q *req) error {
	u, err := w.userOf(q)
	if err != nil {
		return err
	}
	if u.ID == q.sess.User.ID {
		w.redirect(rw, q.r, ownPINPath, "", 0)
		return nil
	}
	w.showPINForm(rw, q, http.StatusOK, kioskPINData{Username: u.Username, Action: q.r.URL.Path})
	return nil
}

func (w *Web) userPIN(rw http.ResponseWriter, q *req) error {
	u, err := w.userOf(q)
	if err != nil {
		return err
	}
	if u.ID == q.sess.User.ID {
		w.redirect(rw, q.r, ownPINPath, "", 0)
		return nil
	}
	d := kioskPINData{Username: u.Username, Action: q.r.URL.Path}
	pin := q.r.PostForm.Get(fieldPIN)
	if d.Errors = w.checkPINFields(q, pin, q.r.PostForm.Get(fieldPINAgain)); len(d.Errors) > 0 {
		w.showPINForm(rw, q, http.StatusBadRequest, d)
		return nil
	}
	if err := w.kioskPINs().SetFor(q.r.Context(), q.sess.User, u.ID, pin, "console"); err != nil {
		return w.pinRefused(rw, q, d, err)
	}
	w.redirect(rw, q.r, d.Action, "notice.kiosk_pin_set", 0)
	return nil
}

// checkPINFields applies the rule (auth.ValidateKioskPIN) and asks for the
// same PIN twice (it is typed unseen).
func (w *Web) checkPINFields(q *req, pin, again string) map[string]string {
	errs := map[string]string{}
	if auth.ValidateKioskPIN(pin) != nil {
		errs[fieldPIN] = q.t.F("kioskpin.invalid", "min", auth.MinKioskPINDigits, "max", auth.MaxKioskPINDigits)
	} else if again != pin {
		errs[fieldPINAgain] = q.t.S("kioskpin.mismatch")
	}
	return errs
}

// pinRefused shows the form again with what api.KioskPINs refused, on
// the field it concerns; other errors become an error page.
func (w *Web) pinRefused(rw http.ResponseWriter, q *req, d kioskPINData, err error) error {
	status := http.StatusBadRequest
	var ae *api.Error
	if errors.As(err, &ae) {
		status = ae.Status
	}
	var tma *api.TooManyAttempts
	var taken *api.PINTaken
	field, text := "", ""
	switch {
	case errors.Is(err, auth.ErrInvalidKioskPIN):
		field, text = fieldPIN, q.t.F("kioskpin.invalid", "min", auth.MinKioskPINDigits, "max", auth.MaxKioskPINDigits)
	case errors.As(err, &taken):
		// How many of today's refusals this was: at api.MaxOwnPINTaken
		// only an admin can set it.
		field, text, status = fieldPIN, q.t.F("kioskpin.taken_try", "n", taken.Refused, "max", api.MaxOwnPINTaken), http.StatusConflict
	case errors.Is(err, auth.ErrKioskCredentialTaken):
		field, text, status = fieldPIN, q.t.S("kioskpin.taken"), http.StatusConflict
	case errors.Is(err, api.ErrOwnPINTakenTooOften):
		field, text = fieldPIN, q.t.S("kioskpin.taken_too_often")
	case errors.Is(err, auth.ErrUnauthenticated):
		return w.stepUpEnded(rw, q)
	case errors.Is(err, api.ErrWrongPassword):
		field, text = fieldPassword, wrongCurrentPassword(q.t, err)
	case errors.As(err, &tma):
		secs := int(tma.RetryAfter / time.Second)
		rw.Header().Set("Retry-After", strconv.Itoa(secs))
		field, text = fieldPassword, q.t.F("login.too_many", "n", (secs+59)/60)
	case errors.Is(err, auth.ErrLoginBusy):
		rw.Header().Set("Retry-After", strconv.Itoa(int(auth.LoginBusyRetry/time.Second)))
		field, text = fieldPassword, q.t.S("login.busy")
	case errors.Is(err, api.ErrLoginLimitsUnavailable):
		field, text = fieldPassword, q.t.S("login.unavailable")
	case errors.Is(err, auth.ErrKioskDisabled):
		return &pageError{status: http.StatusServiceUnavailable, key: "kioskpin.disabled", err: err}
	case errors.Is(err, auth.ErrNotFound):
		return &pageError{status: http.StatusNotFound, key: "error.not_found", err: err}
	default:
		return err
	}
	d.Errors = map[string]string{field: text}
	w.showPINForm(rw, q, status, d)
	return nil
}

func (w *Web) showPINForm(rw http.ResponseWriter, q *req, status int, d kioskPINData) {
	d.Min, d.Max = auth.MinKioskPINDigits, auth.MaxKioskPINDigits
	title := q.t.S("kioskpin.title_own")
	if !d.Own {
		title = q.t.F("kioskpin.title_for", "user", d.Username)
	}
	w.render(rw, q, status, "kioskpin", title, d)
}

// stepUpEnded answers a form whose wrong current passwords ended the
// session (auth.StepUp): to the login page, which says the session ended.
func (w *Web) stepUpEnded(rw http.ResponseWriter, q *req) error {
	w.setCookie(rw, q.r, sessionCookie, "", -1)
	http.Redirect(rw, q.r, Prefix+"login?ended=1", http.StatusSeeOther)
	return nil
}

// wrongCurrentPassword says that the current password given to a form
// (staff PIN, own password) is wrong, with how many of the session's
// tries that was ("2 of 3") when the API's answer says (auth.WrongStepUp,
// wrapped in its *api.Error): at auth.MaxStepUpFailures the session ends
// and the form leads to the login page.
func wrongCurrentPassword(t *tr, err error) string {
	var wrong *auth.WrongStepUp
	if errors.As(err, &wrong) && wrong.Failures > 0 {
		return t.F("password.wrong_try", "n", wrong.Failures, "max", auth.MaxStepUpFailures)
	}
	return t.F("password.wrong", "max", auth.MaxStepUpFailures)
}
