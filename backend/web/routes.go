package web

import (
	"io/fs"
	"net/http"
	"strings"
)

func (w *Web) routes() {
	m := w.mux
	static := http.FileServerFS(w.static)
	m.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		headers(rw.Header())
		rw.Header().Set("Cache-Control", "no-cache")
		// Only files: a folder or a missing file is the console's own
		// 404 page in the person's language, not Go's text.
		if fi, err := fs.Stat(w.static, r.URL.Path); strings.HasSuffix(r.URL.Path, "/") || err != nil || fi.IsDir() {
			w.plainError(rw, r, http.StatusNotFound)
			return
		}
		static.ServeHTTP(rw, r)
	})))
	m.HandleFunc("GET "+Prefix+"login", w.public(w.loginForm))
	m.HandleFunc("POST "+Prefix+"login", w.public(w.login))
	m.HandleFunc("POST "+Prefix+"logout", w.page("", w.logout))
	m.HandleFunc("GET "+Prefix+"{$}", w.page("", w.home))

	m.HandleFunc("GET "+Prefix+"documents", w.page("documents.list", w.documents))
	m.HandleFunc("GET "+Prefix+"documents/new", w.page("documents.register", w.registerPage))
	m.HandleFunc("POST "+Prefix+"documents", w.page("documents.register", w.register))
	m.HandleFunc("GET "+Prefix+"documents/{id}", w.page("documents.view", w.document))
	m.HandleFunc("GET "+Prefix+"documents/{id}/slip", w.page("documents.slip", w.slip))
	m.HandleFunc("POST "+Prefix+"documents/{id}/{action}", w.docAction)

	m.HandleFunc("GET "+Prefix+"devices", w.page("devices.list", w.devices))
	m.HandleFunc("GET "+Prefix+"devices/events", w.stream(false))
	m.HandleFunc("GET "+Prefix+"devices/{id}", w.page("devices.view", w.device))
	m.HandleFunc("GET "+Prefix+"devices/{id}/events", w.stream(true))
	m.HandleFunc("GET "+Prefix+"devices/{id}/compartments/{number}/open", w.page("devices.open", w.openForm))
	m.HandleFunc("POST "+Prefix+"devices/{id}/compartments/{number}/open", w.page("devices.open", w.open))
	m.HandleFunc("GET "+Prefix+"devices/{id}/compartments/{number}/service", w.page("compartments.service", w.compServiceForm))
	m.HandleFunc("POST "+Prefix+"devices/{id}/compartments/{number}/service", w.page("compartments.service", w.compService))
	m.HandleFunc("GET "+Prefix+"devices/{id}/alarms/{alarm}/ack", w.page("alarms.ack", w.ackForm))
	m.HandleFunc("POST "+Prefix+"devices/{id}/alarms/{alarm}/ack", w.page("alarms.ack", w.ack))
	m.HandleFunc("GET "+Prefix+"devices/{id}/service", w.page("devices.service", w.devServiceForm))
	m.HandleFunc("POST "+Prefix+"devices/{id}/service", w.page("devices.service", w.devService))

	m.HandleFunc("GET "+Prefix+"account/kiosk-pin", w.page("me.kiosk_pin", w.ownPINForm))
	m.HandleFunc("POST "+Prefix+"account/kiosk-pin", w.page("me.kiosk_pin", w.ownPIN))
	m.HandleFunc("GET "+Prefix+"account/password", w.page("me.password", w.ownPasswordForm))
	m.HandleFunc("POST "+Prefix+"account/password", w.page("me.password", w.ownPassword))
	m.HandleFunc("GET "+Prefix+"users/{id}/kiosk-pin", w.page("users.kiosk_pin", w.userPINForm))
	m.HandleFunc("POST "+Prefix+"users/{id}/kiosk-pin", w.page("users.kiosk_pin", w.userPIN))

	m.HandleFunc(Prefix, func(rw http.ResponseWriter, r *http.Request) {
		if allow := w.allowedMethods(r); allow != "" {
			// A page asked with a method it does not take: 405 with the
			// methods it takes, before any session (nothing is done).
			rw.Header().Set("Allow", allow)
			rw.Header().Set("Cache-Control", "no-store")
			w.plainError(rw, r, http.StatusMethodNotAllowed)
			return
		}
		w.page("", func(http.ResponseWriter, *req) error { return fail(http.StatusNotFound, "error.not_found") })(rw, r)
	})
}

// allowedMethods lists the methods (GET and HEAD, POST) another route of
// the console takes r's path with, "" when none does (the path does not
// exist).
func (w *Web) allowedMethods(r *http.Request) string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		other := *r
		other.Method = m
		if _, pattern := w.mux.Handler(&other); pattern != "" && pattern != Prefix {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	return strings.Join(allow, ", ")
}
