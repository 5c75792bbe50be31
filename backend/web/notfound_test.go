package web_test

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/web"
)

// What does not exist under /staff/static/ says so in the person's
// language, as every console page does: before, the folder itself said
// "Your role may not do this." (404) and a missing file answered Go's
// "404 page not found" in English (found black-box).
func TestMissingStaticFilesSayNotFound(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	c := e.client()
	for _, lang := range web.Languages {
		for _, path := range []string{"/staff/static/", "/staff/static/nothing.css", "/staff/static/img/"} {
			p := c.get(path + "?lang=" + lang)
			assert.Equal(t, http.StatusNotFound, p.status, path)
			assert.Contains(t, html.UnescapeString(p.body), web.CatalogueText(lang, "error.not_found"), "%s in %s", path, lang)
			assert.NotContains(t, html.UnescapeString(p.body), web.CatalogueText(lang, "error.forbidden"), path)
			assert.Equal(t, "nosniff", p.header.Get("X-Content-Type-Options"), path)
			assert.Contains(t, p.header.Get("Content-Security-Policy"), "frame-ancestors 'none'", path)
		}
	}
	p := c.get("/staff/static/console.js")
	assert.Equal(t, http.StatusOK, p.status)
}

// A holder's name refused for what cannot be seen in it (a direction
// override, a zero-width space, pasted along with the name) or for its
// length is told so: the form said "Fill in the first name." under a
// field that was filled in (found black-box), so the clerk could not
// tell what to correct.
func TestRegisterSaysWhyANameIsRefused(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	c := e.client()
	c.login(auth.RoleStaff)
	for _, lang := range web.Languages {
		require.NotEmpty(t, web.CatalogueText(lang, "register.name_text.first"))
		require.NotEmpty(t, web.CatalogueText(lang, "register.name_text.last"))
		for _, first := range []string{"Jan\u202egnp.exe", "Jan\u200b", strings.Repeat("J", 101)} {
			form := url.Values{"kind": {"eid"}, "number": {"591-0000009-01"}, "holder_first_name": {first}, "holder_last_name": {"Pee\u2066ters"},
				"holder_birth_date_day": {"12"}, "holder_birth_date_month": {"4"}, "holder_birth_date_year": {"1980"},
				"language": {"nl"}, "contact": {"none"}, "site_id": {siteID}}
			p := c.post("/staff/documents?lang="+lang, form)
			require.Equal(t, http.StatusBadRequest, p.status)
			body := html.UnescapeString(p.body)
			assert.Contains(t, body, web.CatalogueText(lang, "register.name_text.first"), "%q in %s", first, lang)
			assert.Contains(t, body, web.CatalogueText(lang, "register.name_text.last"), lang)
			assert.NotContains(t, body, web.CatalogueText(lang, "register.invalid.holder_first_name"), "%q in %s", first, lang)
		}
		// Empty is still "fill in".
		p := c.post("/staff/documents?lang="+lang, url.Values{"kind": {"eid"}, "holder_first_name": {"  "}, "site_id": {siteID}})
		require.Equal(t, http.StatusBadRequest, p.status)
		assert.Contains(t, html.UnescapeString(p.body), web.CatalogueText(lang, "register.invalid.holder_first_name"), lang)
	}
}

// A holder's e-mail address refused for what the clerk cannot see in it
// (an invisible character, a Cyrillic letter among Latin ones: the QR code
// would go to another mailbox) is told so: the form said "Fill in a valid
// e-mail address, like name@example.be." under an address that reads as
// one (the outside tester's round two).
func TestRegisterSaysWhyAnEmailIsRefused(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	c := e.client()
	c.login(auth.RoleStaff)
	form := func(email string) url.Values {
		return url.Values{"kind": {"eid"}, "number": {"591-0000009-02"}, "holder_first_name": {"Jan"}, "holder_last_name": {"Peeters"},
			"holder_birth_date_day": {"12"}, "holder_birth_date_month": {"4"}, "holder_birth_date_year": {"1980"},
			"language": {"nl"}, "contact": {"email"}, "email": {email}, "site_id": {siteID}}
	}
	for _, lang := range web.Languages {
		disguised, invalid := web.CatalogueText(lang, "register.email_text"), web.CatalogueText(lang, "register.invalid.email")
		require.NotEmpty(t, disguised, lang)
		for _, email := range []string{"jan@ex\u200bample.be", "jan@ex\u0430mple.be"} {
			p := c.post("/staff/documents?lang="+lang, form(email))
			require.Equal(t, http.StatusBadRequest, p.status)
			body := html.UnescapeString(p.body)
			assert.Contains(t, body, disguised, "%q in %s", email, lang)
			assert.NotContains(t, body, invalid, "%q in %s", email, lang)
		}
		// What anyone can read as wrong keeps the usual text.
		p := c.post("/staff/documents?lang="+lang, form("jan.example.be"))
		require.Equal(t, http.StatusBadRequest, p.status)
		body := html.UnescapeString(p.body)
		assert.Contains(t, body, invalid, lang)
		assert.NotContains(t, body, disguised, lang)
	}
}

// A staff action's reason refused for a character that cannot be seen (a
// zero-width space, a direction override, often pasted along) is told
// so: the message spoke only of length and lines (found black-box).
func TestReasonRefusalNamesInvisibleCharacters(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	c := e.client()
	c.login(auth.RoleTechnician)
	marker := map[string]string{"nl": "onzichtba", "fr": "invisible", "en": "invisible", "de": "unsichtbar"}
	for _, lang := range web.Languages {
		msg := web.CatalogueText(lang, "error.reason")
		require.Contains(t, msg, marker[lang], lang)
		for _, reason := range []string{"door\u200bcheck", "door \u202echeck"} {
			p := c.post("/staff/devices/"+lockerID+"/service?lang="+lang, url.Values{"out_of_service": {"yes"}, "reason": {reason}})
			require.Equal(t, http.StatusBadRequest, p.status, p.body)
			assert.Contains(t, html.UnescapeString(p.body), msg, "%q in %s", reason, lang)
		}
	}
}

// A console page asked with a method it does not take is 405 with the
// methods it takes in Allow, in the person's language, signed in or not,
// and nothing is done; a path that does not exist stays 404. Before, every
// wrong method was 404 (found black-box).
func TestWrongMethodIs405WithAllow(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	c := e.client()
	method := func(m, path string) page {
		req, err := http.NewRequest(m, e.b.URL(path), strings.NewReader("csrf="+c.csrf))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return c.do(req)
	}
	cases := []struct{ method, path, allow string }{
		{"PUT", "/staff/documents", "GET, HEAD, POST"},
		{"DELETE", "/staff/login", "GET, HEAD, POST"},
		{"GET", "/staff/logout", "POST"},
		{"TRACE", "/staff/", "GET, HEAD"},
		{"POST", "/staff/documents/new", "GET, HEAD"},
		{"PATCH", "/staff/devices/k1/service", "GET, HEAD, POST"},
		{"GET", "/staff/documents/1/cancel", "POST"},
		{"PUT", "/staff/static/console.js", "GET, HEAD"},
	}
	for _, signedIn := range []bool{false, true} {
		if signedIn {
			c.login(auth.RoleAdmin)
		}
		for _, lang := range web.Languages {
			for _, k := range cases {
				p := method(k.method, k.path+"?lang="+lang)
				assert.Equal(t, http.StatusMethodNotAllowed, p.status, "%s %s", k.method, k.path)
				assert.Equal(t, k.allow, p.header.Get("Allow"), "%s %s", k.method, k.path)
				assert.Contains(t, html.UnescapeString(p.body), web.CatalogueText(lang, "error.method"), "%s %s in %s", k.method, k.path, lang)
				assert.Equal(t, "no-store", p.header.Get("Cache-Control"), k.path)
				assert.Contains(t, p.header.Get("Content-Security-Policy"), "frame-ancestors 'none'", k.path)
			}
		}
		for _, m := range []string{"PUT", "DELETE", "GET"} {
			p := method(m, "/staff/nothing-here")
			if !signedIn {
				assert.Equal(t, http.StatusSeeOther, p.status, "%s: to the login", m)
				continue
			}
			assert.Equal(t, http.StatusNotFound, p.status, m)
			assert.Empty(t, p.header.Get("Allow"), m)
		}
	}
	// GET /staff/logout did not sign out.
	assert.Equal(t, http.StatusOK, c.get("/staff/devices").status)
}
