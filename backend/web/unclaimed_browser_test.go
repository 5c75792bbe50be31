package web_test

import (
	"context"
	"html"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/store"
	"kluis/backend/web"
	"kluis/deploy/dev/browsertest"
	"kluis/deploy/dev/testenv"
)

// shiftedClock is the real time moved on by what Skip added.
type shiftedClock struct{ by atomic.Int64 }

func (c *shiftedClock) Now() time.Time       { return time.Now().Add(time.Duration(c.by.Load())) }
func (c *shiftedClock) Skip(d time.Duration) { c.by.Add(int64(d)) }

// A document nobody collected does not vanish when the unclaimed retention
// erases its holder's data: the console still shows it in its state and
// compartment, says why the data is gone (not the ordinary retention of a
// finished document), lists the erasure in its history, still offers the
// retrieval, and offers no reservation of a registered one (nobody could
// be told); the API shows purged_at without closed_at. The page passes
// axe-core in Chromium.
func TestConsoleShowsADocumentErasedUnclaimed(t *testing.T) {
	t.Parallel() // its own backend and database
	clock := &shiftedClock{}
	e := newEnv(t, server.Options{Clock: clock.Now, HousekeepEvery: 200 * time.Millisecond,
		PickupPeriods:      map[store.DocumentKind]time.Duration{store.ResidenceCard: time.Second},
		UnclaimedRetention: 7 * 24 * time.Hour})
	registered := e.registerOnly("591-0000071-71", false)
	expired := e.registerWith(map[string]any{"kind": "residence_card", "number": "B0000072", "holder_first_name": "Ahmed",
		"holder_last_name": "El Amrani", "holder_birth_date": "1990-02-03", "language": "en", "email": "a@example.org", "site_id": siteID})
	require.NoError(t, e.b.Call(context.Background(), "POST", "/api/v1/documents/"+expired+"/load", nil, nil))
	testenv.Eventually(t, "the residence card to expire", func() bool { return e.document(expired)["state"] == "expired" })
	require.Nil(t, e.document(expired)["purged_at"], "within the retention")

	clock.Skip(8 * 24 * time.Hour)
	e.signInAgain() // the admin's session ended with the eight days
	testenv.Eventually(t, "the unclaimed documents to be purged", func() bool {
		return e.document(expired)["purged_at"] != nil && e.document(registered)["purged_at"] != nil
	})
	var purgedCodes int
	require.NoError(t, e.pool().QueryRow(context.Background(), `SELECT count(*) FROM codes WHERE document_id = $1
		AND purged_at IS NOT NULL AND dob_digest IS NULL AND length(offline_verifier) = 0`, expired).Scan(&purgedCodes))
	assert.Equal(t, 1, purgedCodes, "its code's birth-date digests went too")
	d := e.document(expired)
	assert.Equal(t, "expired", d["state"], "still in its compartment")
	assert.Nil(t, d["closed_at"])
	assert.Nil(t, d["holder_last_name"])
	assert.Nil(t, d["email"])

	c := e.client()
	c.login(auth.RoleStaff)
	for _, lang := range []string{"nl", "fr", "en", "de"} {
		body := html.UnescapeString(c.get("/staff/documents/" + expired + "?lang=" + lang).body)
		assert.Contains(t, body, web.Text(lang, "document.purged_unclaimed"), lang)
		assert.NotContains(t, body, web.Text(lang, "document.purged"), lang)
		assert.Contains(t, body, web.Text(lang, "history.purge"), lang)
		assert.Equal(t, 3, strings.Count(body, "<dd>"+web.Text(lang, "doc.purged")+"</dd>"), "%s: the holder, the date of birth and the contact say erased, not blank", lang)
		assert.Contains(t, body, web.Text(lang, "document.retrieve"), lang, "staff still take it back")
		assert.NotContains(t, body, "El Amrani", lang)

		body = html.UnescapeString(c.get("/staff/documents/" + registered + "?lang=" + lang).body)
		assert.Contains(t, body, web.Text(lang, "document.purged_unclaimed"), lang)
		assert.NotContains(t, body, `/reserve"`, lang, "no reservation of a purged document")
		assert.Contains(t, body, `/cancel"`, lang, "it can be cancelled")
		assert.NotContains(t, body, "Peeters", lang)
	}
	err := e.b.Call(context.Background(), "POST", "/api/v1/documents/"+registered+"/reserve", map[string]string{"device_id": lockerID}, nil)
	require.ErrorContains(t, err, "409")

	// In Chromium: the page passes axe-core and does not scroll sideways,
	// on a desktop and a phone (screenshots under var/screenshots/console/).
	b := browsertest.New(t, browsertest.Options{})
	desktop, phone := b.NewTab(t, 1280, 800), b.NewTab(t, 360, 740)
	base := e.b.URL("")
	login(t, desktop, base, e.users[auth.RoleStaff], password(auth.RoleStaff)) // the tabs share its cookie
	checkBoth(t, desktop, phone, base+"/staff/documents/"+expired+"?lang=fr", "document-erased-unclaimed", `!!document.querySelector("#purged")`)

	// Taken back after the erasure: the page still says why the data went.
	require.NoError(t, e.b.Call(context.Background(), "POST", "/api/v1/documents/"+expired+"/retrieve", nil, nil))
	body := html.UnescapeString(c.get("/staff/documents/" + expired + "?lang=en").body)
	assert.Contains(t, body, web.Text("en", "document.purged_unclaimed"))
}
