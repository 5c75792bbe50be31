package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// technicianSignedIn is a backend (newEnv) and a technician signed in to
// its console.
func technicianSignedIn(t *testing.T) (*env, *client) {
	e := newEnv(t, server.Options{})
	tech := e.client()
	tech.login(auth.RoleTechnician)
	return e, tech
}

// TestNoticeNumberIsACompartmentNumber: a notice's {n} was taken from the
// query, so a link could put a stranger's sentence into the console's own
// notice ("Compartment 3 is open. Your password expired, call ..."):
// found black-box. Notices are no longer read from the address at all
// (they travel in the one-shot cookie the redirect after a form sets,
// TestNoticeShownOnce), and a notice whose {n} is not a compartment
// number is not shown even from that cookie (planted, say).
func TestNoticeNumberIsACompartmentNumber(t *testing.T) {
	t.Parallel() // its own backend and database
	e, tech := technicianSignedIn(t)
	path := "/staff/devices/" + lockerID
	page := path + "?lang=en&notice="

	p := tech.get(page + "notice.opened&n=3")
	require.Equal(t, http.StatusOK, p.status)
	assert.NotContains(t, p.body, `class="notice"`, "the address carries no notice")

	plant := func(k, n string) {
		tech.hc.Jar.SetCookies(mustURL(e.b.URL("/staff/")), []*http.Cookie{{Name: "kluis_staff_notice", Path: "/staff/",
			Value: url.Values{"key": {k}, "path": {path}, "n": {n}}.Encode()}})
	}
	plant("notice.opened", "3")
	assert.Contains(t, tech.get(path+"?lang=en").body, esc("en", "notice.opened", "n", 3), "a compartment number")

	forged := "3 is open. SECURITY NOTICE: your password expired, call +32 470 12 34 56 now. Compartment 3"
	for _, k := range []string{"notice.opened", "notice.comp_out_of_service", "notice.comp_in_service"} {
		for _, n := range []string{forged, "", "0", "03", "12345", "-1", "3 "} {
			p := tech.get(page + k + "&n=" + url.QueryEscape(n))
			require.Equal(t, http.StatusOK, p.status)
			assert.NotContains(t, p.body, "SECURITY NOTICE", "%s n=%q", k, n)
			assert.NotContains(t, p.body, `class="notice"`, "%s n=%q", k, n)
			plant(k, n)
			p = tech.get(path + "?lang=en")
			assert.NotContains(t, p.body, "SECURITY NOTICE", "%s n=%q (cookie)", k, n)
			assert.NotContains(t, p.body, `class="notice"`, "%s n=%q (cookie)", k, n)
		}
	}
}

// TestDeviceReportedNamesAreEscaped: the software a device reports in its
// presence and the firmware of its boards in a heartbeat are the
// device's word, bounded by the wire in length only. Found black-box with
// a device's password: a presence saying "kluisd 1.4.2 \u202Eexe.gnp"
// read "kluisd 1.4.2 png.exe" on the fleet page. The console now shows
// such characters escaped (\u{202E}), on the fleet page and the device's.
func TestDeviceReportedNamesAreEscaped(t *testing.T) {
	t.Parallel() // its own backend and database
	e, tech := technicianSignedIn(t)
	e.dev.publish(wire.KindPresence, &wire.Presence{V: 1, State: wire.Online, Software: "kluisd 1.4.2 \u202Eexe.gnp"})
	e.dev.publish(wire.KindHeartbeat, &wire.Heartbeat{V: 1, At: time.Now().UTC(), UptimeS: 60,
		Boards: []wire.BoardHealth{{Address: 0, Online: true, Firmware: "fw \u202E1.2"}}, Software: "kluisd 1.4.2 \u202Eexe.gnp"})
	testenv.Eventually(t, "the new software and firmware shown", func() bool {
		body := tech.get("/staff/devices/" + lockerID).body
		return strings.Contains(body, "exe.gnp") && strings.Contains(body, "1.2")
	})
	for _, path := range []string{"/staff/devices", "/staff/devices/" + lockerID} {
		body := tech.get(path).body
		assert.False(t, strings.ContainsRune(body, '\u202E'), "%s shows a direction override", path)
		assert.True(t, strings.Contains(body, `kluisd 1.4.2 \u{202E}exe.gnp`), "%s: the software escaped", path)
		assert.True(t, strings.Contains(body, `fw \u{202E}1.2`), "%s: the firmware escaped", path)
	}
}
