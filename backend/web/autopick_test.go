package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/server"
)

// "Kluis laten kiezen" (no device) never chooses the automaton a1 that
// never connected, although it comes first by id: it chooses the online
// locker k1. With k1 offline the document is registered and the console
// says that no machine online now has a free compartment, instead of
// picking a broken one; naming a1 by hand still reserves there.
func TestLetKluisChooseOnlyOnlineDevices(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	staff := e.client()
	staff.login(auth.RoleStaff)
	register := func(number, device string) (string, page) {
		t.Helper()
		form := url.Values{"kind": {"passport"}, "number": {number}, "holder_first_name": {"Marie"}, "holder_last_name": {"Dubois"},
			"holder_birth_date_day": {"30"}, "holder_birth_date_month": {"11"}, "holder_birth_date_year": {"1975"}, "language": {"fr"},
			"contact": {"none"}, "site_id": {siteID}, "device_id": {device}}
		p := staff.post("/staff/documents", form)
		require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
		id := strings.TrimPrefix(strings.SplitN(p.location, "?", 2)[0], "/staff/documents/")
		return id, staff.get(p.location)
	}
	id, _ := register("EP 1000001", "")
	d := e.document(id)
	assert.Equal(t, "reserved", d["state"])
	assert.Equal(t, lockerID, d["device_id"], "the online locker, not the never-connected automaton")

	e.goOffline()
	id, p := register("EP 1000002", "")
	d = e.document(id)
	assert.Equal(t, "registered", d["state"], "no device chosen")
	assert.Nil(t, d["device_id"])
	assert.Contains(t, p.body, "geen enkele automaat die nu online is en werkt heeft een passend vak vrij")

	// Named by hand, a device that cannot serve now: asked first,
	// nothing registered; confirmed, reserved there.
	form := url.Values{"kind": {"passport"}, "number": {"EP 1000003"}, "holder_first_name": {"Marie"}, "holder_last_name": {"Dubois"},
		"holder_birth_date_day": {"30"}, "holder_birth_date_month": {"11"}, "holder_birth_date_year": {"1975"}, "language": {"fr"},
		"contact": {"none"}, "site_id": {siteID}, "device_id": {autoID}}
	p = staff.post("/staff/documents", form)
	require.Equal(t, http.StatusOK, p.status, snippet(p.body))
	assert.Contains(t, p.body, `id="unfit-confirm"`)
	form.Set("confirm_unfit", autoID)
	p = staff.post("/staff/documents", form)
	require.Equal(t, http.StatusSeeOther, p.status, snippet(p.body))
	id = strings.TrimPrefix(strings.SplitN(p.location, "?", 2)[0], "/staff/documents/")
	d = e.document(id)
	assert.Equal(t, "reserved", d["state"], "a device named by staff and confirmed is reserved, online or not")
	assert.Equal(t, autoID, d["device_id"])
}
