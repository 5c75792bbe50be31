package web_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"

	"kluis/backend/auth"
	"kluis/backend/server"
)

// An admin's form for another user's staff PIN (/staff/users/{id}/kiosk-pin,
// no password asked: a reset) took the admin's own id too, so whoever sat
// at an admin's open console set a staff PIN of their choosing on the
// admin (it opens the kiosks as the admin) without the password the
// admin's own form asks for. For one's own id both the form and a post go
// to one's own form (/staff/account/kiosk-pin, the password asked again);
// nothing is changed by such a post.
func TestAdminsOwnPINGoesThroughTheirOwnForm(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	admin := e.client()
	admin.login(auth.RoleAdmin)
	self := fmt.Sprintf("/staff/users/%d/kiosk-pin", e.ids[auth.RoleAdmin])
	p := admin.get(self)
	assert.Equal(t, http.StatusSeeOther, p.status, p.body)
	assert.Equal(t, "/staff/account/kiosk-pin", p.location)
	p = admin.post(self, url.Values{"kiosk_pin": {"48291637"}, "kiosk_pin_again": {"48291637"}})
	assert.Equal(t, http.StatusSeeOther, p.status, p.body)
	assert.Equal(t, "/staff/account/kiosk-pin", p.location)
	assert.Empty(t, p.notice(), "nothing was set")
	assert.NotContains(t, e.audit(fmt.Sprintf("user:%d", e.ids[auth.RoleAdmin])), `"kiosk_pin":"changed"`)

	// Another user's PIN: the admin's reset, as before.
	p = admin.post(fmt.Sprintf("/staff/users/%d/kiosk-pin", e.ids[auth.RoleStaff]), url.Values{"kiosk_pin": {"48291637"}, "kiosk_pin_again": {"48291637"}})
	assert.Equal(t, http.StatusSeeOther, p.status, p.body)
	assert.Equal(t, "notice.kiosk_pin_set", p.notice())
	assert.Contains(t, e.audit(fmt.Sprintf("user:%d", e.ids[auth.RoleStaff])), `"kiosk_pin":"changed"`)
}

// A console request a role may not make (the console draws no button for
// it, so it is made by hand) is audited access.denied with the user, the
// role and the console's action, as the API's refusals are.
func TestConsoleRoleRefusalsAreAudited(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	tech := e.client()
	tech.login(auth.RoleTechnician)
	assert.Equal(t, http.StatusForbidden, tech.get("/staff/documents").status)
	p := tech.post(fmt.Sprintf("/staff/users/%d/kiosk-pin", e.ids[auth.RoleStaff]), url.Values{"kiosk_pin": {"48291637"}, "kiosk_pin_again": {"48291637"}})
	assert.Equal(t, http.StatusForbidden, p.status)
	trail := e.audit(fmt.Sprintf("user:%d", e.ids[auth.RoleTechnician]))
	assert.Contains(t, trail, `"action":"access.denied"`)
	assert.Contains(t, trail, `"details":{"action":"documents.list","role":"technician","via":"console"}`)
	assert.Contains(t, trail, `"details":{"action":"users.kiosk_pin","role":"technician","via":"console"}`)
	assert.NotContains(t, trail, "48291637")
}
