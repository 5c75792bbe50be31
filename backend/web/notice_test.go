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

// TestNoticeNumberIsACompartmentNumber: a notice's {n} comes from the
// query (the redirect after a form writes the compartment's number), so
// a link could put a stranger's sentence into the console's own notice
// ("Compartment 3 is open. Your password expired, call ..."): found
// black-box. Now a notice whose {n} is not a compartment number is not
// shown at all; the genuine one still is.
func TestNoticeNumberIsACompartmentNumber(t *testing.T) {
	e := newEnv(t, server.Options{})
	tech := e.client()
	tech.login(auth.RoleTechnician)
	page := "/staff/devices/" + lockerID + "?lang=en&notice="

	p := tech.get(page + "notice.opened&n=3")
	require.Equal(t, http.StatusOK, p.status)
	assert.Contains(t, p.body, esc("en", "notice.opened", "n", 3))

	forged := "3 is open. SECURITY NOTICE: your password expired, call +32 470 12 34 56 now. Compartment 3"
	for _, k := range []string{"notice.opened", "notice.comp_out_of_service", "notice.comp_in_service"} {
		for _, n := range []string{forged, "", "0", "03", "12345", "-1", "3 "} {
			p := tech.get(page + k + "&n=" + url.QueryEscape(n))
			require.Equal(t, http.StatusOK, p.status)
			assert.NotContains(t, p.body, "SECURITY NOTICE", "%s n=%q", k, n)
			assert.NotContains(t, p.body, `class="notice"`, "%s n=%q", k, n)
		}
	}
}
