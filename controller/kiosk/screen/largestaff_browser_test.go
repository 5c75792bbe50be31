package screen_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"kluis/controller/engine"
	"kluis/controller/wire"
)

// TestLargeStaffScreensFitTheSmallPanel: large text stays on when a
// citizen leaves the kiosk (until the idle return) and nothing turns it
// off at the staff login, so staff meet it. At 800x480 in every language
// a citizen taps "Large text", then staff tap "Staff" (real clicks): the
// page is still at the large size, and the staff screens fit without
// scrolling, with the footer's help line (1777) on the screen, their
// texts at the large size, axe-core clean: the staff PIN keypad (a PIN
// typed, then the "at least 4 digits" error), the menu with all four
// choices, the PIN lockout lifted, loading and taking back a document,
// the technician's test and diagnostics and a door open for a test;
// screenshots var/screenshots/kiosk/800x480-large/<lang>/staff-*-large.png.
func TestLargeStaffScreensFitTheSmallPanel(t *testing.T) {
	r, m := onSmallPanelLarge(t, false)
	ctx := context.Background()
	m.tapLarge()
	fits := func(name, id string, e expect, texts string) {
		t.Helper()
		m.check(name+"-large", id, e)
		m.each(name+" with large text", func(mt *mtab) error {
			if err := waitJS(mt, `document.documentElement.classList.contains("large")`); err != nil {
				return fmt.Errorf("large text gone at the staff screen: %w", err)
			}
			return fitsLarge(m.cat, mt, texts)
		})
	}
	common := func(id string) string {
		return "#" + id + " h1, #" + id + " p:not([hidden]), #" + id + " label, #" + id + " button:not([hidden])"
	}

	m.click(`footer [data-act=staff-login]`)
	m.shown("v-staff-login")
	m.keys("123456789012") // the longest PIN the keypad takes
	fits("staff-login", "v-staff-login", expect{h1: "staff.login.title"}, common("v-staff-login"))
	m.click(`#v-staff-login [data-act=reveal]`)
	m.typed("the staff PIN shown", "staff-pin", "123456789012", "true", "", "")
	fits("staff-login-shown", "v-staff-login", expect{h1: "staff.login.title"}, common("v-staff-login"))
	m.click(`#v-staff-login [data-act=reveal]`)
	m.clicks(`#v-staff-login [data-key=del]`, 10)
	m.click(`#v-staff-login [data-key=ok]`)
	m.each("the short PIN's error", func(mt *mtab) error {
		return waitJS(mt, `!document.querySelector("#v-staff-login [data-err=short]").hidden`)
	})
	fits("staff-login-short", "v-staff-login", expect{h1: "staff.login.title"}, common("v-staff-login"))

	exp := time.Now().Add(time.Hour)
	r.be.set(func() {
		r.be.staff["login:BADGE-AN"] = wire.StaffResponse{Result: wire.StaffOK, Session: "s1", StaffID: "17", StaffName: "An Peeters-Vandenbroucke", Expires: &exp, Role: wire.RoleAdmin}
		r.be.staff["clear_lockout:"] = wire.StaffResponse{Result: wire.StaffOK}
		r.be.staff["reserve:591-0008"] = wire.StaffResponse{Result: wire.StaffOK, DocumentID: "d8", Addr: &wire.Address{Channel: 7}}
		r.be.staff["retrieve:591-0008"] = wire.StaffResponse{Result: wire.StaffOK, DocumentID: "d8", Addr: &wire.Address{Channel: 7}}
		r.be.staff["test_open:"] = wire.StaffResponse{Result: wire.StaffOK}
	})
	if _, err := r.e.StaffLogin(ctx, "BADGE-AN", "", "en"); err != nil {
		t.Fatal(err)
	}
	fits("staff-menu", "v-staff-menu", expect{h1: "staff.menu.title"}, common("v-staff-menu"))
	m.each("all four choices", func(mt *mtab) error {
		return waitJS(mt, `document.querySelectorAll("#v-staff-menu .menu button:not([hidden])").length === 4`)
	})
	// The menu offers no "Back to the menu" (it is the menu); "Log out" stays.
	m.each("no back to the menu on the menu", func(mt *mtab) error {
		return waitJS(mt, `document.querySelector("footer [data-act=staff-menu]").hidden && !document.querySelector("footer [data-act=logout]").hidden`)
	})

	// One tab's click lifts the lockout for the device; every tab follows.
	if err := do(m.tabs[0], chromedp.Click(chromedp.CSS(`#v-staff-menu [data-act=unlock]`), chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	fits("staff-lockout_cleared", "s-lockout_cleared", expect{h1: "title.lockout_cleared", msg: "state.lockout_cleared"}, common("s-lockout_cleared"))
	m.click(`#s-lockout_cleared [data-act=staff-menu]`)

	m.click(`#v-staff-menu [data-act=load]`)
	m.shown("v-staff-load")
	m.keys("591-0008")
	fits("staff-load", "v-staff-load", expect{h1: "staff.load"}, common("v-staff-load")+", #doc-load")
	m.each("the number typed", func(mt *mtab) error { return waitJS(mt, `document.querySelector("#doc-load").value === "591-0008"`) })
	// doorOf: staff's fn opens compartment 8 (channel 7); the open door's
	// screen (open), then, the door closed with the item placed or not,
	// the result's (done) fit.
	doorOf := func(fn func(context.Context, string, string) (engine.Screen, error), open, done string, placed bool) {
		t.Helper()
		o := r.opens(7)
		if _, err := fn(ctx, "591-0008", "en"); err != nil {
			t.Fatal(err)
		}
		r.waitOpened(7, o)
		fits("staff-"+open, "s-"+open, expect{h1: "title.door_open", msg: "state." + open, n: 8}, common("s-"+open))
		r.close(7, placed)
		fits("staff-"+done, "s-"+done, expect{h1: "title." + done, msg: "state." + done, n: 8}, common("s-"+done))
	}
	doorOf(r.e.StaffLoad, "loading", "loaded", true)

	m.click(`footer [data-act=staff-menu]`)
	m.click(`#v-staff-menu [data-act=retrieve]`)
	fits("staff-retrieve", "v-staff-retrieve", expect{h1: "staff.retrieve"}, common("v-staff-retrieve")+", #doc-retrieve")
	doorOf(r.e.StaffRetrieve, "retrieving", "retrieved", false)

	m.click(`footer [data-act=staff-menu]`)
	m.click(`#v-staff-menu [data-act=tech]`)
	m.each("diagnostics", func(mt *mtab) error {
		return waitJS(mt, `!!document.querySelector("[data-act=test-open][data-comp='12']")`)
	})
	fits("staff-tech", "v-tech", expect{h1: "tech.title"}, common("v-tech")+", #v-tech h2, #v-tech th, #v-tech td, #v-tech li")
	// The last compartment's test, in its scrolling region: a real click
	// (scrolled into view as a finger would) in one tab opens its door.
	o := r.opens(11)
	if err := do(m.tabs[0], chromedp.Click(chromedp.CSS(`[data-act=test-open][data-comp='12']`), chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	r.waitOpened(11, o)
	fits("staff-test_open", "s-test_open", expect{h1: "title.test_open", msg: "state.test_open", n: 12}, common("s-test_open"))
	r.close(11, false)
}

// TestLargeStaffResultScreensFitTheSmallPanel: the staff's result screens
// at the large size on the 800x480 panel, as
// TestLargeStaffScreensFitTheSmallPanel does for the menu and the
// technician's screens: a login refused (staff_denied, the 15-minute lock,
// the daily cap), the PIN lockout lifted under the daily cap
// (lockout_capped), a number not found, in the wrong state, no free
// compartment, a load with nothing placed, the lookups paused, a document
// still there after taking it back, a test-open of a compartment the backend
// says holds a citizen's document (test_occupied) and the session ended
// after too many numbers not found (lookups_ended). Each fits without
// scrolling with the footer's help line, its texts at the large size,
// axe-core clean, in four languages; screenshots
// var/screenshots/kiosk/800x480-large/<lang>/staff-*-large.png.
func TestLargeStaffResultScreensFitTheSmallPanel(t *testing.T) {
	r, m := onSmallPanelLargeWith(t, false, rigOptions{lockout: "max_failures: 2, window: 10m, duration: 15m, daily_max_failures: 2, daily_window: 24h"})
	ctx := context.Background()
	m.tapLarge()
	fits := func(name, id string, e expect) {
		t.Helper()
		m.check(name+"-large", id, e)
		m.each(name+" with large text", func(mt *mtab) error {
			if err := waitJS(mt, `document.documentElement.classList.contains("large")`); err != nil {
				return fmt.Errorf("large text gone at the staff screen: %w", err)
			}
			return fitsLarge(m.cat, mt, "#"+id+" h1, #"+id+" p:not([hidden]), #"+id+" button:not([hidden])")
		})
	}
	login := func(badge string) {
		t.Helper()
		if _, err := r.e.StaffLogin(ctx, badge, "", "en"); err != nil {
			t.Fatal(err)
		}
	}
	staffDo := func(fn func(context.Context, string, string) (engine.Screen, error), nr string) {
		t.Helper()
		if _, err := fn(ctx, nr, "en"); err != nil {
			t.Fatal(err)
		}
	}

	// Two wrong PINs: PIN entry locked, by the daily cap too.
	r.pickup(engine.PickupRequest{PIN: "11122233", Lang: "en"})
	r.pickup(engine.PickupRequest{PIN: "44455566", Lang: "en"})
	r.waitState(engine.StateLockedOut)

	burst := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	locked := time.Now().Add(20 * time.Hour).Truncate(time.Second)
	exp := time.Now().Add(time.Hour)
	pauseEnd := time.Now().Add(40 * time.Minute).Truncate(time.Second)
	ended := time.Now().Truncate(time.Second)
	r.be.set(func() {
		r.be.staff["login:BADGE-BURST"] = wire.StaffResponse{Result: wire.StaffDenied, Expires: &burst}
		r.be.staff["login:BADGE-LOCKED"] = wire.StaffResponse{Result: wire.StaffDenied, Expires: &locked}
		r.be.staff["login:BADGE-AN"] = wire.StaffResponse{Result: wire.StaffOK, Session: "s1", StaffID: "17", StaffName: "An Peeters-Vandenbroucke", Expires: &exp, Role: wire.RoleTechnician}
		r.be.staff["clear_lockout:"] = wire.StaffResponse{Result: wire.StaffOK}
		r.be.staff["reserve:591-0009"] = wire.StaffResponse{Result: wire.StaffOK, DocumentID: "d9", Addr: &wire.Address{Channel: 8}}
		r.be.staff["reserve:591-0404"] = wire.StaffResponse{Result: wire.StaffNotFound}
		r.be.staff["reserve:591-0409"] = wire.StaffResponse{Result: wire.StaffWrongState}
		r.be.staff["reserve:591-0000"] = wire.StaffResponse{Result: wire.StaffNoCompartment}
		r.be.staff["reserve:591-0777"] = wire.StaffResponse{Result: wire.StaffDenied, Expires: &pauseEnd}
		r.be.staff["retrieve:591-0010"] = wire.StaffResponse{Result: wire.StaffOK, DocumentID: "d10", Addr: &wire.Address{Channel: 9}}
		r.be.staff["retrieve:591-0666"] = wire.StaffResponse{Result: wire.StaffSessionExpired, Expires: &ended}
		r.be.staff["test_open:"] = wire.StaffResponse{Result: wire.StaffDenied, Addr: &wire.Address{Channel: 11}}
	})

	login("BADGE-NOBODY")
	fits("staff-staff_denied", "s-staff_denied", expect{h1: "title.staff_denied", msg: "state.staff_denied", next: "next.staff.staff_denied"})
	login("BADGE-BURST")
	fits("staff-staff_locked", "s-staff_locked", expect{h1: "title.staff_locked", msg: "state.staff_locked", until: burst})
	login("BADGE-LOCKED")
	fits("staff-staff_locked_today", "s-staff_locked_today", expect{h1: "title.staff_locked", msg: "state.staff_locked_today", until: locked})

	login("BADGE-AN")
	m.check("staff-menu-again", "v-staff-menu", expect{h1: "staff.menu.title"})
	if _, err := r.e.StaffClearLockout(ctx, "en"); err != nil {
		t.Fatal(err)
	}
	fits("staff-lockout_capped", "s-lockout_capped", expect{h1: "title.lockout_capped", msg: "state.lockout_capped", next: "next.staff.lockout_capped"})
	// Its retry line says how long the daily cap still holds (the
	// engine's retry_after_s), not "in 1 minute" whatever it is.
	sc := r.e.Screen()
	if sc.State != engine.StateLockoutCapped || sc.RetryAfterS <= 120 {
		t.Fatalf("screen %s, retry after %d s: want lockout_capped for longer than 2 minutes", sc.State, sc.RetryAfterS)
	}
	m.each("the daily cap's time", func(mt *mtab) error {
		got, err := eval[string](mt, `(function(){ var one = document.querySelector("#s-lockout_capped [data-retry=one]"), many = document.querySelector("#s-lockout_capped [data-retry=many]");
			return one.hidden && !many.hidden ? many.textContent : "one: " + one.textContent; })()`)
		if err != nil {
			return err
		}
		mins := (sc.RetryAfterS - 1 + 59) / 60
		if !strings.Contains(got, fmt.Sprint(mins)) && !strings.Contains(got, fmt.Sprint(mins-1)) {
			return fmt.Errorf("retry line %q, want about %d minutes", got, mins)
		}
		return nil
	})

	staffDo(r.e.StaffLoad, "591-0404")
	fits("staff-not_found", "s-not_found", expect{h1: "title.not_found", msg: "state.not_found", next: "next.staff.not_found"})
	staffDo(r.e.StaffLoad, "591-0409")
	fits("staff-wrong_state", "s-wrong_state", expect{h1: "title.wrong_state", msg: "state.wrong_state", next: "next.staff.wrong_state"})
	staffDo(r.e.StaffLoad, "591-0000")
	fits("staff-no_compartment", "s-no_compartment", expect{h1: "title.no_compartment", msg: "state.no_compartment"})
	o := r.opens(8)
	staffDo(r.e.StaffLoad, "591-0009")
	r.waitOpened(8, o)
	r.close(8, false)
	fits("staff-load_empty", "s-load_empty", expect{h1: "title.load_empty", msg: "state.load_empty", next: "next.staff.load_empty", n: 9})
	staffDo(r.e.StaffLoad, "591-0777")
	fits("staff-lookups_paused", "s-lookups_paused", expect{h1: "title.lookups_paused", msg: "state.lookups_paused", until: pauseEnd})

	r.item(9, true)
	o = r.opens(9)
	staffDo(r.e.StaffRetrieve, "591-0010")
	r.waitOpened(9, o)
	r.close(9, true)
	fits("staff-still_there", "s-still_there", expect{h1: "title.still_there", msg: "state.still_there", next: "next.staff.still_there", n: 10})

	// The backend refuses the test-open: it records a citizen's document
	// in compartment 12, whose item sensor reads empty.
	if _, err := r.e.TestOpen(ctx, 12, "en"); err != nil {
		t.Fatal(err)
	}
	fits("staff-test_occupied", "s-test_occupied", expect{h1: "title.test_occupied", msg: "state.test_occupied", next: "next.staff.test_occupied", n: 12})
	r.waitFor("sensor_disagreement", func() bool {
		for _, a := range r.e.Diagnostics(ctx).Alarms {
			if a.Alarm == wire.AlarmSensorDisagreement && a.Compartment == 12 {
				return true
			}
		}
		return false
	})

	staffDo(r.e.StaffRetrieve, "591-0666")
	fits("staff-lookups_ended", "s-lookups_ended", expect{h1: "title.lookups_ended", msg: "state.lookups_ended"})
}
