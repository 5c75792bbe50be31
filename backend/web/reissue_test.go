package web_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/server"
)

// The console's re-issue says the old code no longer works only while the
// document's device is online (it gets the code sync at once); with the
// device offline it says, in the confirmation and its hint before and in
// the notice after, that the old code still opens the compartment there
// until the device reconnects (docs/security.md, "Offline codes and
// the compartment's contents", scenario (b)).
func TestReissueSaysTheOldCodeStillOpensAnOfflineDevice(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	doc := e.register("591-0000009-09", false)
	require.NoError(t, e.b.Call(context.Background(), "POST", "/api/v1/documents/"+doc+"/load", nil, nil))
	c := e.client()
	c.login(auth.RoleStaff)
	require.Equal(t, 200, c.get("/staff/documents/"+doc).status)
	// Online: the confirmation and the hint say the old codes stop working.
	for _, path := range []string{"/staff/documents/" + doc + "?confirm=reissue", "/staff/documents/" + doc} {
		body := c.get(path).body
		assert.Contains(t, body, "De oude QR-code en pincode werken dan niet meer. De houder", path)
		assert.NotContains(t, body, "behalve op het toestel zelf", path)
	}

	p := c.post("/staff/documents/"+doc+"/reissue", url.Values{"confirm": {"yes"}})
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	assert.Equal(t, "notice.reissued", p.notice())
	assert.NotContains(t, p.location, "reissued_offline", "the device is online")

	e.goOffline()
	// Offline: they say the old code still opens the compartment there
	// until the device reconnects, in every language.
	for _, v := range []struct{ lang, text string }{
		{"nl", "behalve op het toestel zelf: dat is nu offline, en tot het weer verbinding heeft opent de oude code het vak daar nog"},
		{"fr", "sauf sur l'appareil lui-même\u00a0: il est hors ligne, et jusqu'à ce qu'il se reconnecte, l'ancien code y ouvre encore le casier"},
		{"en", "except at the device itself: it is offline now, and until it reconnects the old code still opens the compartment there"},
		{"de", "außer am Gerät selbst: Es ist jetzt offline, und bis es wieder verbunden ist, öffnet der alte Code dort noch das Fach"},
	} {
		for _, path := range []string{"/staff/documents/" + doc + "?confirm=reissue&lang=" + v.lang, "/staff/documents/" + doc + "?lang=" + v.lang} {
			body := c.get(path).body
			assert.Contains(t, html.UnescapeString(body), v.text, path)
		}
	}
	require.Equal(t, 200, c.get("/staff/documents/"+doc+"?lang=nl").status)
	p = c.post("/staff/documents/"+doc+"/reissue", url.Values{"confirm": {"yes"}})
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	assert.Equal(t, "notice.reissued_offline", p.notice())
	assert.Contains(t, c.get(p.location).body, "opent de oude code het vak daar nog")

	// A holder without e-mail or phone: the notice also says to print the
	// new slip.
	slip := e.registerWith(map[string]any{"kind": "passport", "number": "EP0000099", "holder_first_name": "Marie",
		"holder_last_name": "Dubois", "holder_birth_date": "1975-11-30", "language": "fr", "no_contact": true, "site_id": siteID})
	require.NoError(t, e.b.Call(context.Background(), "POST", "/api/v1/documents/"+slip+"/load", nil, nil))
	p = c.post("/staff/documents/"+slip+"/reissue", url.Values{"confirm": {"yes"}})
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	body := c.get(p.location).body
	assert.Contains(t, body, "opent de oude code het vak daar nog")
	assert.Contains(t, body, "Druk het nieuwe afhaalbewijs af")
}
