package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/web"
	"kluis/controller/wire"
	"kluis/deploy/dev/browsertest"
	"kluis/deploy/dev/testenv"
)

// TestConsoleInEveryLanguage takes the console's screenshot set in nl, fr,
// en and de, at desktop (1280x800) and phone (360x740) widths, under
// var/screenshots/console/<lang>/: every page of counter staff and of a
// technician. On each page: the page's language, axe-core clean, nothing
// scrolling sideways, no button or link label cut off at its edges, no
// missing catalogue key, and (in fr, en, de) no Dutch catalogue text left
// on the page. The languages run in parallel, each in its own browser.
func TestConsoleInEveryLanguage(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newConsoleEnv(t)
	ctx := context.Background()
	reserved, slipDoc, expired := e.consoleDocuments(t, 2)
	e.dev.event(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmDoorLeftOpen, Addr: &wire.Address{Board: 0, Channel: 5}})
	_, err := e.pool().Exec(ctx, `INSERT INTO notify_outbox (document_id, kind, state, attempts, next_at, created_at, last_error, gave_up_at)
		VALUES ($1, 'loaded', 'gave_up', 12, now(), now() - interval '1 hour', 'no slip printer', now()),
		($2, 'reminder', 'pending', 2, now() + interval '1 hour', now() - interval '1 hour', 'smtp: 451', NULL)`, slipDoc, expired)
	require.NoError(t, err)

	// Dutch catalogue texts that read differently in each other language:
	// found on a French, English or German page, they were not translated.
	dutch := map[string][]string{}
	for _, l := range web.Languages[1:] {
		for _, k := range web.CatalogueKeys() {
			nl := web.Text("nl", k)
			// "Nederlands" is in every language's switch (each language
			// named in its own).
			if nl != web.Text("nl", "lang.name") && len([]rune(nl)) >= 10 && !strings.ContainsAny(nl, "{") && nl != web.Text(l, k) {
				dutch[l] = append(dutch[l], nl)
			}
		}
	}

	base := e.b.URL("")
	// One browser per language (its own cookies: the language and the
	// session), the languages in parallel on the one backend.
	for _, l := range web.Languages {
		t.Run(l, func(t *testing.T) {
			t.Parallel()
			consoleInLanguage(t, e, l, base, dutch[l], reserved, slipDoc, expired)
		})
	}
}

// consoleInLanguage is TestConsoleInEveryLanguage in language l, with its
// own browser; dutch are the Dutch texts that must not be on its pages.
func consoleInLanguage(t *testing.T, e *env, l, base string, dutch []string, reserved, slipDoc, expired string) {
	b := browsertest.New(t, browsertest.Options{Timeout: 15 * time.Minute})
	desktop := b.NewTab(t, 1280, 800)
	phone := b.NewTab(t, 360, 740)
	check := func(path, name, wait string) {
		t.Helper()
		for _, v := range []struct {
			tab  *browsertest.Tab
			size string
		}{{desktop, "desktop"}, {phone, "phone"}} {
			v.tab.Do(t, chromedp.Navigate(base+path))
			v.tab.WaitFor(t, wait, 10*time.Second)
			what := l + " " + name + " " + v.size
			assert.Equal(t, l, evalString(t, v.tab, `document.documentElement.lang`), what)
			v.tab.CheckAxe(t, what)
			noSideScroll(t, v.tab, what)
			noClippedLabels(t, v.tab, what)
			if v.size == "desktop" {
				noBrokenWords(t, v.tab, what)
			}
			text := evalString(t, v.tab, `document.body.innerText`)
			assert.NotContains(t, text, "⟦", "%s: a catalogue key without text", what)
			for _, nl := range dutch {
				assert.NotContains(t, text, nl, "%s: Dutch text left untranslated", what)
			}
			if l == "fr" {
				// A non-breaking space before : ? ! ; (no line starts with ":"),
				// also in the labels a phone shows before each cell of a card.
				assert.Empty(t, frenchPlainSpace.FindAllString(text, 5), "%s: a plain space before a French punctuation mark", what)
				if v.size == "phone" {
					labels := evalString(t, v.tab, `Array.prototype.filter.call(document.querySelectorAll("table td[data-label], table th[data-label]"), function(c){ return c.offsetParent !== null; })
						.map(function(c){ return getComputedStyle(c, "::before").content; }).filter(function(s){ return s !== "none" && !/\u00a0: "$/.test(s); }).join(" | ")`)
					assert.Empty(t, labels, "%s: card labels without a non-breaking space before the colon", what)
				}
			}
			v.tab.Screenshot(t, "console/"+l+"/"+name+"-"+v.size)
		}
	}
	// The language is chosen on the login page and kept (a cookie).
	desktop.Do(t, chromedp.Navigate(base+"/staff/login?lang="+l))
	desktop.WaitFor(t, `!!document.querySelector("#username")`, 10*time.Second)
	check("/staff/login", "login", `!!document.querySelector("#username")`)
	login(t, desktop, base, e.users[auth.RoleStaff], password(auth.RoleStaff))

	check("/staff/documents", "documents", `!!document.querySelector("#h-undelivered")`)
	check("/staff/documents?q=dubois", "documents-search", `!!document.querySelector("#h-results")`)
	check("/staff/documents/new", "register", `!!document.querySelector("#f-number")`)
	for _, v := range []*browsertest.Tab{desktop, phone} {
		v.Do(t, chromedp.Navigate(base+"/staff/documents/new"))
		v.WaitFor(t, `!!document.querySelector("#f-number")`, 10*time.Second)
		v.Do(t, chromedp.Click(chromedp.CSS(`form button[type=submit].primary`)))
		v.WaitFor(t, `!!document.querySelector(".error-summary")`, 10*time.Second)
	}
	desktop.CheckAxe(t, l+" register-errors desktop")
	noClippedLabels(t, desktop, l+" register-errors desktop")
	desktop.Screenshot(t, "console/"+l+"/register-errors-desktop")
	phone.CheckAxe(t, l+" register-errors phone")
	noSideScroll(t, phone, l+" register-errors phone")
	phone.Screenshot(t, "console/"+l+"/register-errors-phone")
	check("/staff/documents/"+reserved, "document-reserved", `!!document.querySelector(".timeline")`)
	check("/staff/documents/"+slipDoc, "document-ready", `!!document.querySelector(".timeline")`)
	check("/staff/documents/"+expired, "document-expired", `!!document.querySelector(".timeline")`)
	check("/staff/devices", "devices-staff", `!!document.querySelector("#fleet-rows tr")`)
	check("/staff/devices/"+lockerID+"?c=2", "device-staff", `!!document.querySelector("svg.map")`)
	check("/staff/nowhere", "not-found", `!!document.querySelector(".error-summary")`)
	check("/staff/account/kiosk-pin", "kiosk-pin", `!!document.querySelector("#kiosk_pin")`)

	desktop.Do(t, chromedp.Navigate(base+"/staff/devices"))
	desktop.WaitFor(t, `!!document.querySelector("header form button")`, 10*time.Second)
	desktop.Do(t, chromedp.Click(chromedp.CSS(`header form button`)))
	desktop.WaitFor(t, `location.pathname === "/staff/login"`, 10*time.Second)
	login(t, desktop, base, e.users[auth.RoleTechnician], password(auth.RoleTechnician))
	check("/staff/devices", "devices", `!!document.querySelector("#fleet-rows tr")`)
	check("/staff/devices/"+lockerID, "device", `!!document.querySelector("svg.map")`)
	for _, v := range []*browsertest.Tab{desktop, phone} {
		deviceReadsApart(t, v, l)
	}
	check("/staff/devices/"+autoID, "device-never-connected", `!!document.querySelector("svg.map")`)
	check("/staff/devices/"+lockerID+"/compartments/3/open", "open-reason", `!!document.querySelector("#reason")`)
	check("/staff/devices/"+lockerID+"/compartments/6/service", "compartment-service", `!!document.querySelector("#reason")`)
	check("/staff/devices/"+lockerID+"/service", "device-service", `!!document.querySelector("#reason")`)
	// An open alarm's acknowledgement form (the door left open raised above).
	var ackID string
	pool := e.pool()
	testenv.Eventually(t, "the door left open stored", func() bool {
		return pool.QueryRow(context.Background(), `SELECT event_id FROM device_events WHERE device_id = $1 AND kind = 'alarm'
			AND payload->>'alarm' = 'door_left_open' LIMIT 1`, lockerID).Scan(&ackID) == nil
	})
	check("/staff/devices/"+lockerID+"/alarms/"+ackID+"/ack", "alarm-ack", `!!document.querySelector("#note")`)

	desktop.Do(t, chromedp.Navigate(base+"/staff/devices"))
	desktop.WaitFor(t, `!!document.querySelector("header form button")`, 10*time.Second)
	desktop.Do(t, chromedp.Click(chromedp.CSS(`header form button`)))
	desktop.WaitFor(t, `location.pathname === "/staff/login"`, 10*time.Second)
}

// noClippedLabels fails t when the text of a visible button, link or
// table heading reaches past the control's edges (a label cut off).
func noClippedLabels(t *testing.T, tab *browsertest.Tab, name string) {
	t.Helper()
	clipped := evalString(t, tab, `(function(){
		var out = [];
		document.querySelectorAll("button, a, .btn, th, label, summary").forEach(function(b){
			if (b.offsetParent === null || b.clientWidth === 0) { return; } // hidden, or inline (nothing to cut it off)
			var r = document.createRange();
			r.selectNodeContents(b);
			var t = r.getBoundingClientRect(), o = b.getBoundingClientRect();
			if (t.width === 0) { return; }
			var left = o.left + b.clientLeft, right = left + b.clientWidth;
			if (t.left < left - 0.5 || t.right > right + 0.5) {
				out.push(b.textContent.trim().slice(0, 40) + " (" + Math.round(t.width) + " px in " + b.clientWidth + ")");
			}
		});
		return out.join("; ");
	})()`)
	assert.Empty(t, clipped, fmt.Sprintf("%s: labels cut off", name))
}

// noBrokenWords fails t when a word in a table cell is split over two
// lines ("Stadhui" / "s"): cells wrap between words.
func noBrokenWords(t *testing.T, tab *browsertest.Tab, name string) {
	t.Helper()
	broken := evalString(t, tab, `(function(){
		var out = [];
		document.querySelectorAll("table td, table th").forEach(function(cell){
			if (cell.offsetParent === null) { return; }
			var w = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
			for (var n = w.nextNode(); n; n = w.nextNode()) {
				var re = /[\p{L}\p{N}]+/gu, m;
				while ((m = re.exec(n.data)) !== null) {
					var r = document.createRange();
					r.setStart(n, m.index);
					r.setEnd(n, m.index + m[0].length);
					var tops = {};
					Array.prototype.forEach.call(r.getClientRects(), function(q){ if (q.width > 0) { tops[Math.round(q.top)] = 1; } });
					if (Object.keys(tops).length > 1) { out.push(m[0]); }
				}
			}
		});
		return out.join(", ");
	})()`)
	assert.Empty(t, broken, fmt.Sprintf("%s: words split over two lines in a table", name))
}

// frenchPlainSpace is a plain space before a French double punctuation
// mark, where a line can break.
var frenchPlainSpace = regexp.MustCompile(`.{0,20} [:?!;]`)

// deviceReadsApart checks a device page (with an active alarm) in
// language l: an alarm's time is set apart from its compartment number
// ("Door left open, compartment 6 (since 01:02:47)", not "compartment 6
// 01:02:47") and on one line, and the status list and its out-of-service button, the map
// with its legend and the compartments below, do not touch.
func deviceReadsApart(t *testing.T, tab *browsertest.Tab, l string) {
	t.Helper()
	since, _, _ := strings.Cut(web.Text(l, "device.since"), "{time}")
	times := evalString(t, tab, `JSON.stringify(Array.prototype.map.call(document.querySelectorAll("#device-status li.alarm time"), function(e){ return e.textContent; }))`)
	var got []string
	require.NoError(t, json.Unmarshal([]byte(times), &got))
	require.NotEmpty(t, got, "%s: no alarm on the device page", l)
	for _, s := range got {
		assert.True(t, strings.HasPrefix(s, "("+since) && strings.HasSuffix(s, ")") && len(s) > len(since)+2,
			"%s: alarm time %q, want it as (%s…)", l, s, since)
	}
	split := evalInt(t, tab, `Array.prototype.filter.call(document.querySelectorAll("#device-status li.alarm time"), function(e){
		var tops = {};
		Array.prototype.forEach.call(e.getClientRects(), function(r){ if (r.width > 0) { tops[Math.round(r.top)] = 1; } });
		return Object.keys(tops).length > 1;
	}).length`)
	assert.Zero(t, split, "%s: an alarm's time split over two lines", l)
	for _, p := range [][2]string{
		{`document.getElementById("device-status")`, `document.querySelector("#h-status").parentElement.querySelector(":scope > p > a.button")`},
		{`document.querySelector(".map-wrap")`, `document.getElementById("device-comps")`},
	} {
		gap := evalInt(t, tab, `Math.floor(`+p[1]+`.getBoundingClientRect().top - `+p[0]+`.getBoundingClientRect().bottom)`)
		assert.GreaterOrEqual(t, gap, 12, "%s: %s touches %s (%d px apart)", l, p[0], p[1], gap)
	}
}
