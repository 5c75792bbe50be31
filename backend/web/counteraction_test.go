package web_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/store"
	"kluis/deploy/dev/testenv"
)

// expiredDoc registers a residence card on the locker, loads it and waits
// until the housekeeping expired it (in an env of newConsoleEnv).
func (e *env) expiredDoc(number string) string {
	e.t.Helper()
	id := e.registerWith(map[string]any{"kind": string(store.ResidenceCard), "number": number, "holder_first_name": "Ahmed",
		"holder_last_name": "El Amrani", "holder_birth_date": "1990-02-03", "language": "en", "email": "a@example.org", "site_id": siteID})
	require.NoError(e.t, e.b.Call(context.Background(), "POST", "/api/v1/documents/"+id+"/load", nil, nil))
	testenv.Eventually(e.t, "the residence card to expire", func() bool { return e.document(id)["state"] == "expired" })
	return id
}

// An expired document taken out of its compartment without the kiosk (a
// technician opened it) is recorded from its page as back at the counter
// (retrieve) or as handed over to its holder there (collect): each asks
// first, naming the holder; without the confirmation nothing changes;
// confirmed, the state, a free compartment and an audit record by the
// staff member follow. A technician has neither button and is refused.
func TestCounterRecordsAnExpiredDocumentAtTheCounter(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newConsoleEnv(t)
	c := e.client()
	c.login(auth.RoleStaff)
	for i, v := range []struct{ action, state, notice, confirm string }{
		{"retrieve", "retrieved", "notice.retrieved", "Noteren dat het document van Ahmed El Amrani terug aan de balie is?"},
		{"collect", "collected", "notice.handed_over", "Noteren dat Ahmed El Amrani het document aan de balie gekregen heeft?"},
	} {
		id := e.expiredDoc(fmt.Sprintf("B0000071%d", i))
		n := e.compartmentOf(id)
		body := html.UnescapeString(c.get("/staff/documents/" + id).body)
		assert.Contains(t, body, `action="/staff/documents/`+id+`/retrieve"`)
		assert.Contains(t, body, `action="/staff/documents/`+id+`/collect"`)
		assert.NotContains(t, body, `id="counter-confirm"`)

		// Asked, not confirmed: nothing changes.
		p := c.post("/staff/documents/"+id+"/"+v.action, url.Values{})
		require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
		assert.Equal(t, "/staff/documents/"+id+"?confirm="+v.action, p.location)
		body = html.UnescapeString(c.get(p.location).body)
		assert.Contains(t, body, v.confirm)
		assert.Contains(t, body, `id="counter-confirm"`)
		assert.Equal(t, "expired", e.document(id)["state"], "nothing before the confirmation")
		assert.NotContains(t, e.audit("document:"+id), "document."+v.action)

		p = c.post("/staff/documents/"+id+"/"+v.action, url.Values{"confirm": {"yes"}})
		require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
		assert.Equal(t, v.notice, p.notice())
		assert.Equal(t, v.state, e.document(id)["state"])
		audit := e.audit("document:" + id)
		assert.Contains(t, audit, `"action":"document.`+v.action+`"`)
		assert.Contains(t, audit, fmt.Sprintf(`"actor":"user:%d"`, e.ids[auth.RoleStaff]), "who recorded it")
		var comp struct {
			Compartments []struct {
				Number int    `json:"number"`
				State  string `json:"state"`
			} `json:"compartments"`
		}
		require.NoError(t, e.b.Call(context.Background(), "GET", "/api/v1/devices/"+lockerID, nil, &comp))
		for _, cp := range comp.Compartments {
			if cp.Number == n {
				assert.Equal(t, "free", cp.State, "the compartment is free again")
			}
		}
		// Done: no more counter buttons, and a second post is refused.
		body = c.get("/staff/documents/" + id).body
		assert.NotContains(t, body, `id="a-counter"`)
		assert.Equal(t, http.StatusConflict, c.post("/staff/documents/"+id+"/"+v.action, url.Values{"confirm": {"yes"}}).status)
	}

	// A technician: no buttons, and the post is refused.
	id := e.expiredDoc("B00000719")
	tech := e.client()
	tech.login(auth.RoleTechnician)
	assert.NotContains(t, tech.get("/staff/documents/"+id).body, `id="a-counter"`)
	assert.Equal(t, http.StatusForbidden, tech.post("/staff/documents/"+id+"/retrieve", url.Values{"confirm": {"yes"}}).status)
	assert.Equal(t, "expired", e.document(id)["state"])
}
