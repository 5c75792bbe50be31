package web_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/server"
)

// A notice after a form is shown once, by the page the form's redirect
// goes to: not again on a reload, not from the address (a bookmark, or a
// link someone crafted), not on another page. "Reservering opheffen" says
// what becomes of the document, on its button and in its notice.
func TestNoticeShownOnce(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	doc := e.register("591-0000088-80", false)
	c := e.client()
	c.login(auth.RoleStaff)
	page := "/staff/documents/" + doc
	body := c.get(page).body
	assert.Contains(t, body, esc("nl", "document.unreserve"))
	assert.Contains(t, body, esc("nl", "document.unreserve_hint"))
	assert.Contains(t, body, `aria-describedby="h-unreserve"`)

	p := c.post(page+"/unreserve", url.Values{})
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	assert.Equal(t, page, p.location, "the address holds no notice")
	assert.Equal(t, "notice.unreserved", p.notice())
	shown := esc("nl", "notice.unreserved")
	assert.Contains(t, shown, "blijft geregistreerd")
	assert.Contains(t, c.get(p.location).body, shown, "the page the form went to")
	assert.NotContains(t, c.get(p.location).body, shown, "not again on a reload")
	assert.NotContains(t, c.get(page+"?notice=notice.unreserved").body, shown, "not from an address")
	assert.Equal(t, "registered", e.document(doc)["state"], "the document stays registered")

	// Left for one page, shown on no other (and gone after it).
	other := e.register("591-0000089-81", false)
	p = c.post("/staff/documents/"+other+"/unreserve", url.Values{})
	require.Equal(t, "notice.unreserved", p.notice())
	assert.NotContains(t, c.get(page).body, shown)
	assert.NotContains(t, c.get(p.location).body, shown)
}
