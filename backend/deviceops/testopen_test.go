package deviceops_test

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/auth"
	"kluis/backend/store"
	"kluis/controller/wire"
)

// A technician's test-open at the kiosk is for an empty compartment: the
// REST API refuses a technician's remote open of a compartment holding a
// document (compartment_occupied), and technicians see no documents. The
// backend answered ok to staff/req test_open for any compartment of the
// device, so only kluisd's item sensor stood between a technician and a
// citizen's identity card (a thin card the sensor misses, a sensor that
// reads wrong). The backend knows the document is there: it now answers
// denied, audited kiosk.denied with the document; an admin may still,
// audited with the document (as an admin's remote open).
func TestKioskTestOpenOfAnOccupiedCompartmentIsForAdmins(t *testing.T) {
	e, ask, session := techLoggedInAtK1(t)
	doc, _ := e.loaded(store.EID, "591-1234567-89", "k1")
	c, err := store.GetCompartment(e.ctx, e.st.Pool(), doc.CompartmentID)
	require.NoError(t, err)
	occupied := &wire.Address{Board: c.Board, Channel: c.Channel}

	denied := ask("k1", wire.StaffRequest{Op: wire.StaffTestOpen, Session: session, Addr: occupied})
	assert.Equal(t, wire.StaffDenied, denied.Result, "a technician test-opens empty compartments only")
	// The denial names the compartment (addr): the kiosk says a citizen's
	// document is there, not the refusal of a role.
	assert.Equal(t, occupied, denied.Addr, "an occupied compartment's denial carries its addr")
	assert.Equal(t, wire.StaffOK, ask("k1", wire.StaffRequest{Op: wire.StaffTestOpen, Session: session,
		Addr: &wire.Address{Board: 0, Channel: 1}}).Result, "an empty one still opens")

	as := e.kioskAuth(t)
	admin, err := as.CreateUser(e.ctx, "kiosk-admin", "a long enough password", auth.RoleAdmin)
	require.NoError(t, err)
	pin := "61528374"
	require.NoError(t, as.SetKioskCredentials(e.ctx, admin.ID, &pin, nil))
	login := ask("k1", wire.StaffRequest{Op: wire.StaffLogin, PIN: pin})
	require.Equal(t, wire.StaffOK, login.Result)
	assert.Equal(t, wire.StaffOK, ask("k1", wire.StaffRequest{Op: wire.StaffTestOpen, Session: login.Session, Addr: occupied}).Result)

	recs, err := audit.List(e.ctx, e.st.Pool(), audit.ListOptions{Subject: "device:k1"})
	require.NoError(t, err)
	var got []string
	for _, r := range recs {
		if r.Action == "kiosk.test_open" || r.Action == "kiosk.denied" {
			got = append(got, r.Action+" "+string(r.Details))
		}
	}
	n := c.Number
	assert.Equal(t, []string{
		`kiosk.denied {"compartment":` + strconv.Itoa(n) + `,"document":"` + doc.ID + `","op":"test_open","reason":"occupied","role":"technician"}`,
		`kiosk.test_open {"compartment":2}`,
		`kiosk.test_open {"compartment":` + strconv.Itoa(n) + `,"document":"` + doc.ID + `","occupied":true}`,
	}, got)
}
