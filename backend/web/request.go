package web

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"kluis/backend/audit"
	"kluis/backend/auth"
	"kluis/backend/lifecycle"
	"kluis/backend/service"
	"kluis/backend/store"
)

// Cookie names. Served over HTTPS (Web.secure) each is a __Host- cookie
// (hostPrefix + name: Secure, Path=/, no Domain), so that a sibling
// subdomain cannot plant one the console takes; over plain HTTP
// (development on loopback, where a browser refuses a Secure cookie) the
// name as it is, with Path Prefix. Read and written only through
// Web.cookie and Web.setCookie.
const (
	sessionCookie = "kluis_staff"
	loginCookie   = "kluis_staff_login"
	langCookie    = "kluis_staff_lang"
	// noticeCookie carries a notice from a form's redirect to the page it
	// redirects to, once (redirect, q.notice).
	noticeCookie = "kluis_staff_notice"
)

// noticeMaxAge is how long a notice waits for its page, in seconds: the
// browser follows the redirect at once; a notice never shown is not shown
// later on another visit.
const noticeMaxAge = 60

// csp allows only the console's own files: no inline script or style, no
// frames; data: images are the QR codes of pickup slips.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// req is what a handler knows about its request.
type req struct {
	w    *Web
	r    *http.Request
	lang string
	t    *tr
	// sess is the session (zero on public pages).
	sess auth.WebSession
	// loggedIn is false on public pages.
	loggedIn bool
	// where names the device, compartment and site of the page's document
	// for the notices that say where it goes ("notice.registered_in").
	where string
	// slipOnly: the page's document has no e-mail or phone, so new codes
	// reach its holder only on a printed slip ("notice.reissued_slip").
	slipOnly bool
	// noticeWarn: the notice shown says something is left to do (a
	// document registered without a compartment): drawn as a warning,
	// not as the green of a success.
	noticeWarn bool
	// registerNext is the register form's address for the next document
	// of a batch, offered with the notice after a registration.
	registerNext string
	// cancelAsked: a cancel was sent without its confirmation; the
	// document's page asks, keeping the reason typed (cancelReason).
	cancelAsked  bool
	cancelReason string
	// reserveRefused: a reservation found no compartment (the message's
	// key); the document's page says so in its form (409), the device
	// chosen (reserveDevice) kept.
	reserveRefused, reserveDevice string
	// reserveBad: the refusal is the form's fault (a device of another
	// site): 400, not 409.
	reserveBad bool
	// unfitAsked: a reservation by hand at a device that cannot serve
	// now was sent without its confirmation; the document's page asks,
	// naming the device (reserveDevice) and what is wrong (unfitProblems).
	unfitAsked    bool
	unfitProblems string
}

// actor is the session's user as the audit trail names it.
func (q *req) actor() string { return fmt.Sprintf("user:%d", q.sess.User.ID) }

// may reports whether the session's role may do action.
func (q *req) may(action string) bool { return q.loggedIn && q.w.Allowed(action, q.sess.User.Role) }

// handler is a page handler; a returned error becomes an error page.
type handler func(w http.ResponseWriter, q *req) error

// pageError is an error shown to people: a status and a catalogue key.
type pageError struct {
	status int
	key    string
	args   []any
	err    error
	// back is a way back to where the person came from (a device's
	// page), with its words; "": only the start page.
	back, backText string
}

// backTo gives the error page a link back to href, reading text.
func (e *pageError) backTo(href, text string) *pageError {
	e.back, e.backText = href, text
	return e
}

func (e *pageError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%d %s: %v", e.status, e.key, e.err)
	}
	return fmt.Sprintf("%d %s", e.status, e.key)
}

func (e *pageError) Unwrap() error { return e.err }

func fail(status int, key string, args ...any) *pageError {
	return &pageError{status: status, key: key, args: args}
}

// headers sets the security headers of every answer.
func headers(h http.Header) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
}

// secure reports whether the answer goes over TLS (directly or through a
// trusted proxy that says so).
func (w *Web) secure(r *http.Request) bool {
	if w.o.SecureCookies || r.TLS != nil {
		return true
	}
	if r.Header.Get("X-Forwarded-Proto") == "https" {
		if a, ok := peer(r); ok {
			for _, tp := range w.o.TrustedProxies {
				if tp.Contains(a) {
					return true
				}
			}
		}
	}
	return false
}

// hostPrefix makes a cookie a __Host- cookie: a browser keeps it only
// when Secure, with Path=/ and no Domain, set by the host itself.
const hostPrefix = "__Host-"

// setCookie sets the console's cookie name for r (see the cookie names).
func (w *Web) setCookie(rw http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	c := &http.Cookie{Name: name, Value: value, Path: Prefix, MaxAge: maxAge, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if w.secure(r) {
		c.Name, c.Path, c.Secure = hostPrefix+name, "/", true
	}
	http.SetCookie(rw, c)
}

// cookie reads the console's cookie name from r: over HTTPS only its
// __Host- form, never one without the prefix (another host could have
// set that).
func (w *Web) cookie(r *http.Request, name string) (*http.Cookie, error) {
	if w.secure(r) {
		name = hostPrefix + name
	}
	return r.Cookie(name)
}

// language returns the language of the request: ?lang= (also remembered
// in a cookie), the cookie, else Dutch.
func (w *Web) language(rw http.ResponseWriter, r *http.Request) string {
	if l := r.URL.Query().Get("lang"); store.ValidLanguage(l) {
		w.setCookie(rw, r, langCookie, l, 365*24*3600)
		return l
	}
	if c, err := w.cookie(r, langCookie); err == nil && store.ValidLanguage(c.Value) {
		return c.Value
	}
	return Languages[0]
}

// page wraps a handler for signed-in people: headers, language, the
// session (else the login page), the role for action ("" for any signed-in
// role), and for POST the cross-origin check, the body limit and the
// session's CSRF token.
func (w *Web) page(action string, h handler) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		headers(rw.Header())
		rw.Header().Set("Cache-Control", "no-store")
		q := &req{w: w, r: r}
		q.lang = w.language(rw, r)
		q.t = w.tr(q.lang)
		post := r.Method == http.MethodPost
		if post {
			if err := w.cop.Check(r); err != nil {
				w.crossOriginRefused(r)
				w.fail(rw, q, fail(http.StatusForbidden, "error.forbidden"))
				return
			}
			r.Body = http.MaxBytesReader(rw, r.Body, maxFormBytes)
		}
		if badText(r.URL.Path) || badValues(r.URL.Query()) {
			// Touches nothing: refused before the session is read.
			w.fail(rw, q, fail(http.StatusBadRequest, "error.bad_request"))
			return
		}
		c, err := w.cookie(r, sessionCookie)
		if err == nil {
			q.sess, err = w.o.Auth.WebSessionFor(r.Context(), c.Value, true)
		}
		if err != nil {
			if !errors.Is(err, http.ErrNoCookie) && !errors.Is(err, auth.ErrUnauthenticated) {
				w.fail(rw, q, &pageError{status: http.StatusServiceUnavailable, key: "error.unavailable", err: err})
				return
			}
			next := r.URL.Path
			if post {
				next = ""
			} else if r.URL.RawQuery != "" {
				next += "?" + r.URL.RawQuery
			}
			v := url.Values{}
			if c != nil {
				v.Set("ended", "1")
			}
			if next != "" && next != Prefix {
				v.Set("next", next)
			}
			target := Prefix + "login"
			if len(v) > 0 {
				target += "?" + v.Encode()
			}
			http.Redirect(rw, r, target, http.StatusSeeOther)
			return
		}
		q.loggedIn = true
		if action != "" && !q.may(action) {
			// Audited as the API's refusals are (access.denied): the
			// console draws no button a role may not use, so this is a
			// hand-made request.
			subj := "user:" + strconv.FormatInt(q.sess.User.ID, 10)
			w.log.Warn("console request refused for the role", "action", action, "path", r.URL.Path,
				"user_id", q.sess.User.ID, "role", q.sess.User.Role)
			if err := w.audit(r.Context(), audit.Entry{At: w.o.Clock(), Actor: subj, Action: "access.denied", Subject: subj,
				Details: map[string]any{"action": action, "role": string(q.sess.User.Role), "via": "console"}}); err != nil {
				w.log.Error("audit of a refused console request failed", "action", action, "err", err)
			}
			w.fail(rw, q, fail(http.StatusForbidden, "error.forbidden"))
			return
		}
		if post {
			if err := r.ParseForm(); err != nil {
				w.fail(rw, q, fail(http.StatusBadRequest, "error.bad_request"))
				return
			}
			if got := r.PostForm.Get("csrf"); got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(q.sess.CSRF)) != 1 {
				w.log.Warn("form without a valid CSRF token refused", "path", r.URL.Path, "user_id", q.sess.User.ID)
				w.refused.WithLabelValues(refusedToken).Inc()
				w.fail(rw, q, fail(http.StatusForbidden, "error.csrf"))
				return
			}
			if badValues(r.PostForm) {
				w.fail(rw, q, fail(http.StatusBadRequest, "error.bad_request"))
				return
			}
		}
		if err := h(rw, q); err != nil {
			w.fail(rw, q, err)
		}
	}
}

// badText reports whether s holds a NUL byte or invalid UTF-8, which
// PostgreSQL's text refuses ("invalid byte sequence"): a lookup with it
// would fail as a 500. The REST API refuses the same (400 invalid_input).
func badText(s string) bool { return strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) }

// badValues reports whether a name or a value of vs is badText.
func badValues(vs url.Values) bool {
	for k, list := range vs {
		if badText(k) {
			return true
		}
		for _, v := range list {
			if badText(v) {
				return true
			}
		}
	}
	return false
}

// public wraps a handler of a page shown without a session (the login).
func (w *Web) public(h handler) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		headers(rw.Header())
		rw.Header().Set("Cache-Control", "no-store")
		q := &req{w: w, r: r}
		q.lang = w.language(rw, r)
		q.t = w.tr(q.lang)
		if r.Method == http.MethodPost {
			if err := w.cop.Check(r); err != nil {
				w.crossOriginRefused(r)
				w.fail(rw, q, fail(http.StatusForbidden, "error.forbidden"))
				return
			}
			r.Body = http.MaxBytesReader(rw, r.Body, maxFormBytes)
			if err := r.ParseForm(); err != nil {
				w.fail(rw, q, fail(http.StatusBadRequest, "error.bad_request"))
				return
			}
		}
		if err := h(rw, q); err != nil {
			w.fail(rw, q, err)
		}
	}
}

// fail renders err as an error page; unexpected errors are logged.
func (w *Web) fail(rw http.ResponseWriter, q *req, err error) {
	pe := toPageError(err)
	if pe.status >= 500 {
		w.log.Error("console request failed", "path", q.r.URL.Path, "status", pe.status, "err", err)
	}
	w.render(rw, q, pe.status, "error", q.t.S("error.title"), errorData{Message: q.t.F(pe.key, pe.args...), Status: pe.status,
		Back: pe.back, BackText: pe.backText})
}

type errorData struct {
	Message string
	Status  int
	// Back and BackText: a link back (pageError.backTo), "" for none.
	Back, BackText string
}

// toPageError maps the use cases' errors to what people read.
func toPageError(err error) *pageError {
	var pe *pageError
	if errors.As(err, &pe) {
		return pe
	}
	switch {
	case errors.Is(err, service.ErrNoOnlineDevice):
		return &pageError{status: http.StatusConflict, key: "error.no_online_device", err: err}
	case errors.Is(err, service.ErrNoCompartment):
		return &pageError{status: http.StatusConflict, key: "error.no_compartment", err: err}
	case errors.Is(err, lifecycle.ErrForbiddenTransition):
		return &pageError{status: http.StatusConflict, key: "error.wrong_state", err: err}
	case errors.Is(err, store.ErrNotFound):
		return &pageError{status: http.StatusNotFound, key: "error.not_found", err: err}
	case errors.Is(err, service.ErrPurged):
		return &pageError{status: http.StatusConflict, key: "error.holder_erased", err: err}
	case errors.Is(err, store.ErrConflict):
		return &pageError{status: http.StatusConflict, key: "error.conflict", err: err}
	case errors.Is(err, store.ErrInvalid):
		return &pageError{status: http.StatusBadRequest, key: "error.bad_request", err: err}
	}
	return &pageError{status: http.StatusInternalServerError, key: "error.internal", err: err}
}

// plainError answers a request refused before it reached a page.
func (w *Web) plainError(rw http.ResponseWriter, r *http.Request, status int) {
	q := &req{w: w, r: r}
	q.lang = w.language(rw, r)
	q.t = w.tr(q.lang)
	headers(rw.Header())
	key := "error.forbidden"
	switch status {
	case http.StatusNotFound:
		key = "error.not_found"
	case http.StatusMethodNotAllowed:
		key = "error.method"
	}
	w.fail(rw, q, fail(status, key))
}

// layout is what every page template gets.
type layout struct {
	T        *tr
	Lang     string
	Title    string
	LoggedIn bool
	User     auth.User
	CSRF     string
	Nav      []navItem
	Langs    []langLink
	Notice   string
	// NoticeWarn draws the notice as a warning (warnNotices).
	NoticeWarn bool
	// RegisterNext links from the notice to the register form for the
	// next document, the same site and device chosen ("" none).
	RegisterNext string
	// PINNotices ask for staff PINs of 8 digits: the signed-in person's
	// own, and for an admin everyone's (pinNotices).
	PINNotices []pinNotice
	// Main is the page's own data.
	Main any
	q    *req
}

// May reports whether the signed-in role may do a console action: pages
// draw only the buttons the role may use.
func (l layout) May(action string) bool { return l.q != nil && l.q.may(action) }

// OpensOccupied reports whether the signed-in person may open a
// compartment holding a document remotely: admins only (api.RemoteOpen's
// rule; a technician's request is refused, compartment_occupied).
func (l layout) OpensOccupied() bool { return l.LoggedIn && l.User.Role == auth.RoleAdmin }

// Current reports whether the page is path (a link to it is marked
// aria-current).
func (l layout) Current(path string) bool { return l.q != nil && l.q.r.URL.Path == path }

type navItem struct {
	Href, Text string
	Current    bool
}

type langLink struct {
	Href, Code, Name string
	Current          bool
}

// render writes page name with main as its data.
func (w *Web) render(rw http.ResponseWriter, q *req, status int, name, title string, main any) {
	t := w.pages[name]
	l := layout{T: q.t, Lang: q.lang, Title: title, LoggedIn: q.loggedIn, Main: main, q: q}
	if q.loggedIn {
		l.User, l.CSRF = q.sess.User, q.sess.CSRF
		l.Nav = w.nav(q)
		l.PINNotices = w.pinNotices(q)
	}
	l.Notice = q.notice(rw)
	l.NoticeWarn, l.RegisterNext = q.noticeWarn, q.registerNext
	for _, code := range Languages {
		v := q.r.URL.Query()
		v.Set("lang", code)
		href := q.r.URL.Path
		if q.r.Method != http.MethodGet {
			href = Prefix
		}
		l.Langs = append(l.Langs, langLink{Href: href + "?" + v.Encode(), Code: code, Name: w.tr(code).S("lang.name"), Current: code == q.lang})
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", l); err != nil {
		w.log.Error("render", "page", name, "err", err)
		http.Error(rw, "internal error", http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.WriteHeader(status)
	_, _ = rw.Write(b.Bytes())
}

// pinNotice asks for a new staff PIN: the holder's own (Link to the
// form), or for an admin the holders (Users, each linked to their form;
// More not named).
type pinNotice struct {
	Text, Link, LinkText string
	Users                []pinHolder
	More                 string
}

type pinHolder struct{ Name, Href string }

// maxPINHolders is how many holders of a short PIN the admins' notice
// names.
const maxPINHolders = 20

// pinNotices ask for new staff PINs where one has fewer than
// auth.MinKioskPINDigits digits (set before the rule; it still logs in):
// the holder is asked to set a new one, an admin is told who still has
// one.
func (w *Web) pinNotices(q *req) []pinNotice {
	var out []pinNotice
	if q.sess.User.KioskPINShort {
		n := pinNotice{Text: q.t.F("notice.pin_short", "n", auth.MinKioskPINDigits)}
		if q.may("me.kiosk_pin") && q.r.URL.Path != Prefix+"account/kiosk-pin" {
			n.Link, n.LinkText = Prefix+"account/kiosk-pin", q.t.S("notice.pin_short_link")
		}
		out = append(out, n)
	}
	if q.may("users.kiosk_pin") && w.shortPINs != nil {
		count, users, err := w.shortPINs(q.r.Context(), maxPINHolders)
		if err != nil {
			w.log.Warn("short staff PINs", "err", err)
		} else if count > 0 {
			n := pinNotice{Text: q.t.F("notice.pins_short_admin", "count", count, "n", auth.MinKioskPINDigits)}
			for _, u := range users {
				href := Prefix + "users/" + strconv.FormatInt(u.ID, 10) + "/kiosk-pin"
				if u.ID == q.sess.User.ID {
					href = ownPINPath // the admin's own: the password asked
				}
				n.Users = append(n.Users, pinHolder{Name: u.Username, Href: href})
			}
			if more := count - len(users); more > 0 {
				n.More = q.t.F("notice.pins_short_more", "count", more)
			}
			out = append(out, n)
		}
	}
	return out
}

func (w *Web) nav(q *req) []navItem {
	path := q.r.URL.Path
	register := path == Prefix+"documents/new" || (q.r.Method == http.MethodPost && path == Prefix+"documents")
	var out []navItem
	add := func(action, href, key string, current bool) {
		if q.may(action) {
			out = append(out, navItem{Href: href, Text: q.t.S(key), Current: current})
		}
	}
	add("documents.list", Prefix+"documents", "nav.documents",
		!register && (path == Prefix+"documents" || strings.HasPrefix(path, Prefix+"documents/")))
	add("documents.register", Prefix+"documents/new", "nav.register", register)
	add("devices.list", Prefix+"devices", "nav.devices", path == Prefix+"devices" || strings.HasPrefix(path, Prefix+"devices/"))
	return out
}

// notices are the messages a redirect may ask a page to show (redirect);
// anything else is ignored.
var notices = map[string]bool{
	"notice.registered": true, "notice.reserved": true, "notice.unreserved": true, "notice.cancelled": true,
	"notice.renotified": true, "notice.reissued": true, "notice.reissued_offline": true, "notice.retrieved": true, "notice.handed_over": true, "notice.opened": true, "notice.out_of_service": true,
	"notice.in_service": true, "notice.comp_out_of_service": true, "notice.comp_in_service": true,
	"notice.logged_out": true, "notice.no_compartment": true, "notice.no_online_device": true, "notice.kiosk_pin_set": true, "notice.password_changed": true,
	"notice.alarm_acked": true, "notice.alarm_already_acked": true,
}

// warnNotices are the notices of a form that did only part of what was
// asked: the document is registered but has no compartment, which staff
// must still reserve. They read as a warning, not as a success.
var warnNotices = map[string]bool{"notice.no_compartment": true, "notice.no_online_device": true}

// notice is the text of the notice a redirect left for this page, and
// removes it: the notice is shown once, by the page the redirect went to,
// not again on a reload, through the back button or from a bookmark (it
// is not in the URL). "" when there is none.
func (q *req) notice(rw http.ResponseWriter) string {
	c, err := q.w.cookie(q.r, noticeCookie)
	if err != nil {
		return ""
	}
	q.w.setCookie(rw, q.r, noticeCookie, "", -1)
	v, err := url.ParseQuery(c.Value)
	if err != nil || v.Get("path") != q.r.URL.Path {
		return ""
	}
	k := v.Get("key")
	if !notices[k] {
		return ""
	}
	q.noticeWarn = warnNotices[k]
	if registerNotices[k] {
		q.registerNext = registerNextURL(v.Get("next"))
	}
	if q.where != "" && (k == "notice.registered" || k == "notice.reserved") {
		return q.t.F(k+"_in", "where", q.where)
	}
	if q.slipOnly && (k == "notice.reissued" || k == "notice.reissued_offline") {
		return q.t.S(k + "_slip")
	}
	n := v.Get("n")
	if strings.Contains(q.t.S(k), "{n}") && !noticeNumber.MatchString(n) {
		// {n} is a compartment's number, which the redirect after the
		// form writes; any other text would be a stranger's words in
		// the console's own voice ("Compartment 3 is open. Your password
		// expired, call ..."), from a planted cookie.
		return ""
	}
	return q.t.F(k, "n", n)
}

// registerNotices are the notices after the register form: each offers
// to register the next document of a batch.
var registerNotices = map[string]bool{"notice.registered": true, "notice.no_compartment": true, "notice.no_online_device": true}

// registerNextURL is the register form's address with the site and device
// of next (a query the register form's redirect wrote: site_id, device_id)
// chosen, so that a batch for one device is registered without choosing
// it again; only those two, each a plain identifier, are kept.
func registerNextURL(next string) string {
	v, err := url.ParseQuery(next)
	keep := url.Values{}
	if err == nil {
		for _, k := range []string{"site_id", "device_id"} {
			if id := v.Get(k); plainID.MatchString(id) {
				keep.Set(k, id)
			}
		}
	}
	if len(keep) == 0 {
		return Prefix + "documents/new"
	}
	return Prefix + "documents/new?" + keep.Encode()
}

// plainID is what registerNextURL keeps of a site's or device's id.
var plainID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// noticeNumber is what a notice's {n} may be: a compartment's number.
var noticeNumber = regexp.MustCompile(`^[1-9][0-9]{0,3}$`)

// redirect sends the browser to path after a form (303), leaving notice
// (a key of notices; "" for none) for that page to show once, with n
// (a compartment number; 0 for none) for its {n}. The notice travels in
// a short-lived cookie, not in the URL, so that the page's address can be
// reloaded and bookmarked without it; it works without JavaScript.
func (w *Web) redirect(rw http.ResponseWriter, r *http.Request, path, notice string, n int) {
	w.redirectNext(rw, r, path, notice, n, nil)
}

// redirectNext is redirect whose notice also offers to register the next
// document with next's site and device chosen (registerNextURL).
func (w *Web) redirectNext(rw http.ResponseWriter, r *http.Request, path, notice string, n int, next url.Values) {
	if notice != "" {
		v := url.Values{"key": {notice}, "path": {path}}
		if n > 0 {
			v.Set("n", strconv.Itoa(n))
		}
		if len(next) > 0 {
			v.Set("next", next.Encode())
		}
		w.setCookie(rw, r, noticeCookie, v.Encode(), noticeMaxAge)
	}
	http.Redirect(rw, r, path, http.StatusSeeOther)
}

// The reasons (label reason of kluis_web_forged_forms_refused_total) a
// console form post is refused as possibly forged: another site's
// (Origin, Sec-Fetch-Site), without the session's csrf token, or a login
// form without its double-submit token.
const (
	refusedOrigin     = "origin"
	refusedToken      = "token"
	refusedLoginToken = "login_token"
)

// crossOriginRefused logs (WARN) and counts a form post refused as
// another site's. Any website can make a browser send one, so it is not
// audited (it would fill the audit trail); the log line holds the path
// and the Origin's host only, never a cookie or token.
func (w *Web) crossOriginRefused(r *http.Request) {
	w.refused.WithLabelValues(refusedOrigin).Inc()
	host := ""
	if o, err := url.Parse(r.Header.Get("Origin")); err == nil {
		host = o.Host
	}
	site := r.Header.Get("Sec-Fetch-Site")
	const most = 253 // a DNS name's length: a hand-made header is cut
	host, site = host[:min(len(host), most)], site[:min(len(site), 32)]
	w.log.Warn("cross-origin form refused", "path", r.URL.Path, "origin_host", host,
		"sec_fetch_site", site)
}
