package web_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/web"
	"kluis/deploy/dev/testenv"
)

// A document whose holder's data was erased while it was still behind its
// door (here ready with a pickup slip, as when its expiry was missed) is
// physically there: its page tells staff not to hand it over but to take
// it back, in four languages, and offers only that (no hand-over, no slip,
// no new codes); a hand-over posted anyway, its slip and new codes are
// refused by the console and the API (409 holder_data_erased: the slip
// made at the load still carried the holder's first name); taking it back
// asks without a blank name and works.
func TestConsoleTakesBackADocumentErasedInItsCompartment(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newConsoleEnv(t)
	ctx := context.Background()
	id := e.registerWith(map[string]any{"kind": "passport", "number": "EP0000951", "holder_first_name": "Marie",
		"holder_last_name": "Dubois", "holder_birth_date": "1975-11-30", "language": "fr", "no_contact": true, "site_id": siteID})
	require.NoError(t, e.b.Call(ctx, "POST", "/api/v1/documents/"+id+"/load", nil, nil))
	testenv.Eventually(t, "the slip to be made", func() bool { return e.document(id)["state"] == "notified" })
	c := e.client()
	c.login(auth.RoleStaff)
	require.Equal(t, http.StatusOK, c.get("/staff/documents/"+id+"/slip").status, "the slip before the erasure")
	// Erased as service.PurgeUnclaimed does (its pickup deadline long
	// past, its expiry missed): only the personal fields go.
	_, err := e.pool().Exec(ctx, `UPDATE documents SET number = NULL, holder_first_name = NULL, holder_last_name = NULL,
		holder_birth_date = NULL, email = NULL, mobile = NULL, purged_at = now() WHERE id = $1`, id)
	require.NoError(t, err)

	for _, lang := range []string{"nl", "fr", "en", "de"} {
		body := html.UnescapeString(c.get("/staff/documents/" + id + "?lang=" + lang).body)
		assert.Contains(t, body, web.Text(lang, "document.purged_unclaimed"), lang)
		assert.Contains(t, body, web.Text(lang, "document.purged_take_back"), lang)
		assert.NotContains(t, body, web.Text(lang, "document.at_counter"), lang)
		assert.Contains(t, body, `action="/staff/documents/`+id+`/retrieve"`, lang, "staff take it back")
		assert.NotContains(t, body, `/collect"`, lang, "no hand-over")
		assert.NotContains(t, body, `/slip"`, lang, "no slip")
		assert.NotContains(t, body, `/reissue"`, lang, "no new codes")
		assert.NotContains(t, body, `/renotify"`, lang)
		assert.NotContains(t, body, "Marie", lang)
		erased := web.Text(lang, "doc.purged")
		assert.Contains(t, body, "<h1>"+web.Text(lang, "kind.passport")+" "+erased+"</h1>", "%s: the heading says the number was erased, not blank", lang)
	}

	refused := func(p page, what string) {
		t.Helper()
		assert.Equal(t, http.StatusConflict, p.status, what)
		body := html.UnescapeString(p.body)
		said := false
		for _, lang := range []string{"nl", "fr", "en", "de"} {
			said = said || strings.Contains(body, web.Text(lang, "error.holder_erased"))
		}
		assert.True(t, said, "%s: says why: %s", what, snippet(body))
		assert.NotContains(t, body, "Marie", what)
	}
	refused(c.post("/staff/documents/"+id+"/collect", url.Values{"confirm": {"yes"}}), "hand-over")
	refused(c.post("/staff/documents/"+id+"/reissue", url.Values{"confirm": {"yes"}}), "reissue")
	refused(c.get("/staff/documents/"+id+"/slip"), "slip")
	for _, call := range [][2]string{{"POST", "/collect"}, {"POST", "/reissue"}, {"GET", "/slip"}} {
		err := e.b.Call(ctx, call[0], "/api/v1/documents/"+id+call[1], nil, nil)
		require.Error(t, err, call[1])
		assert.Contains(t, err.Error(), "holder_data_erased", call[1])
	}
	assert.Equal(t, "notified", e.document(id)["state"], "nothing changed")

	// Taking it back asks first, without a blank name, then works.
	p := c.post("/staff/documents/"+id+"/retrieve", url.Values{})
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	body := html.UnescapeString(c.get(p.location + "&lang=en").body)
	assert.Contains(t, body, web.Text("en", "document.retrieve_confirm_purged"))
	p = c.post("/staff/documents/"+id+"/retrieve", url.Values{"confirm": {"yes"}})
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	assert.Equal(t, "retrieved", e.document(id)["state"])
}
