package web_test

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/web"
)

// A NUL byte or invalid UTF-8 in a console address or form (a search
// typed with a scanner's stray byte, a hand-made request) is a bad
// request, 400 in the person's language, as the REST API answers it:
// PostgreSQL's text refuses both, and the console sent them on, so a
// search, a device's page and its forms, and a reservation's device
// answered 500 "internal error" and logged an ERROR (found black-box:
// GET /staff/documents?q=%00, GET /staff/devices/%ff).
func TestMalformedTextIsABadRequest(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	doc := e.registerOnly("591-0000077-01", false)
	c := e.client()
	c.login(auth.RoleAdmin)
	for _, lang := range web.Languages {
		want := web.CatalogueText(lang, "error.bad_request")
		for _, path := range []string{
			"/staff/documents?q=%00", "/staff/documents?q=a%ffb", "/staff/documents?q=%c3%28",
			"/staff/devices/%ff", "/staff/devices/%00", "/staff/devices/%ff/service",
			"/staff/devices/%ff/compartments/1/open", "/staff/devices/%ff/compartments/1/service",
			"/staff/devices/%ff/alarms/1/ack", "/staff/devices?%ff=1",
		} {
			sep := "?"
			if strings.Contains(path, "?") {
				sep = "&"
			}
			p := c.get(path + sep + "lang=" + lang)
			assert.Equal(t, http.StatusBadRequest, p.status, "GET %s in %s", path, lang)
			assert.Contains(t, html.UnescapeString(p.body), want, "GET %s in %s", path, lang)
		}
		for _, f := range []struct {
			path string
			form url.Values
		}{
			{"/staff/documents", url.Values{"kind": {"eid"}, "number": {"591-0000078-01"}, "holder_first_name": {"Jan"},
				"holder_last_name": {"Verhaeghe"}, "holder_birth_date_day": {"12"}, "holder_birth_date_month": {"4"},
				"holder_birth_date_year": {"1980"}, "language": {"nl"}, "contact": {"no_contact"}, "site_id": {siteID},
				"device_id": {"\xff"}}},
			{"/staff/documents/" + doc + "/reserve", url.Values{"device_id": {"\x00"}}},
			{"/staff/devices/%ff/service", url.Values{"out_of_service": {"1"}, "reason": {"test"}}},
		} {
			p := c.post(f.path+"?lang="+lang, f.form)
			assert.Equal(t, http.StatusBadRequest, p.status, "POST %s in %s", f.path, lang)
			assert.Contains(t, html.UnescapeString(p.body), want, "POST %s in %s", f.path, lang)
		}
	}
	// Nothing was registered or reserved.
	assert.Equal(t, "registered", e.document(doc)["state"])
	p := c.get("/staff/documents?q=591-0000078-01")
	assert.Equal(t, http.StatusOK, p.status)
	assert.NotContains(t, p.body, "Verhaeghe")
}
