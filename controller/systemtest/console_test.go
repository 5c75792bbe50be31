package systemtest

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"kluis/backend/web"
	"kluis/deploy/dev/browsertest"
)

// TestConsole drives the staff console and the technician dashboard of the
// real kluis-backend binary in headless Chromium, with the real kluisd and
// kluis-sim behind it: a staff member signs in, registers a document typing
// its number as a barcode scanner does, sees it reserved on the device's
// map, the device loads it (kiosk staff login and the simulator's door),
// the map shows it loaded without a reload and the pickup slip prints; a
// staff sign-in shows no remote open and a forged post of one gets 403, a
// post without the CSRF token too; a technician sees a door-left-open
// alarm appear on the fleet page without a reload after opening a
// compartment remotely with a reason and a confirmation, and the simulator
// shows exactly one pulse. axe-core checks every page at desktop and phone
// widths; screenshots go to var/screenshots/console/e2e.
func TestConsole(t *testing.T) {
	if testing.Short() {
		t.Skip("system test: starts the backend, the simulator and two kluisd")
	}
	parallelWorld(t)
	w := newWorld(t)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	users := map[string]string{"staff": "console.staff", "technician": "console.tech"}
	pass := "Console-" + randomHex(8)
	for role, name := range users {
		must(w.admin.Do(ctx, http.MethodPost, "/api/v1/users", map[string]string{"username": name, "password": pass, "role": role}, nil))
	}
	b := browsertest.New(t, browsertest.Options{})
	desktop := b.NewTab(t, 1280, 800)
	phone := b.NewTab(t, 360, 740)
	base := w.apiBase
	tx := func(key string, kv ...any) string {
		s := web.Text("nl", key, kv...)
		if s == "" {
			t.Fatalf("no catalogue text %q", key)
		}
		return s
	}
	eval := func(tab *browsertest.Tab, expr string) string {
		t.Helper()
		s, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return s
	}
	// check opens path in both tabs, waits for cond, runs axe and keeps a
	// screenshot; the desktop tab stays on the page.
	check := func(path, name, cond string) {
		t.Helper()
		for _, v := range []struct {
			tab  *browsertest.Tab
			size string
		}{{phone, "phone"}, {desktop, "desktop"}} {
			v.tab.Do(t, chromedp.Navigate(base+path))
			v.tab.WaitFor(t, cond, 15*time.Second)
			v.tab.CheckAxe(t, name+" "+v.size)
			v.tab.Screenshot(t, "console/e2e/"+name+"-"+v.size)
		}
	}
	signIn := func(user string) {
		t.Helper()
		desktop.Do(t, chromedp.Navigate(base+"/staff/login"))
		desktop.WaitFor(t, `!!document.querySelector("#username")`, 15*time.Second)
		desktop.Do(t, chromedp.Click(chromedp.CSS("#username")), chromedp.KeyEvent(user),
			chromedp.Click(chromedp.CSS("#password")), chromedp.KeyEvent(pass), chromedp.Click(chromedp.CSS("form button[type=submit]")))
		desktop.WaitFor(t, `location.pathname !== "/staff/login"`, 15*time.Second)
	}

	check("/staff/login", "login", `!!document.querySelector("#username")`)
	signIn(users["staff"])

	// Register: the scanner types the number and Enter.
	number := "591-" + w.runID + "-77"
	desktop.Do(t, chromedp.Navigate(base+"/staff/documents/new"))
	desktop.WaitFor(t, `document.activeElement && document.activeElement.id === "f-number"`, 15*time.Second)
	desktop.CheckAxe(t, "register desktop")
	desktop.Do(t, chromedp.KeyEvent(number+"\r"))
	desktop.WaitFor(t, `document.activeElement.id === "f-holder_first_name"`, 5*time.Second)
	if p := eval(desktop, `location.pathname`); p != "/staff/documents/new" {
		t.Fatalf("the scanner's Enter sent the form: at %s", p)
	}
	desktop.Do(t, chromedp.KeyEvent("Lotte"), chromedp.SendKeys(chromedp.CSS("#f-holder_last_name"), "Claes"),
		chromedp.Click(chromedp.CSS("#f-holder_birth_date")), chromedp.KeyEvent("15\t6\t1988"),
		chromedp.Click(chromedp.CSS("#c-none")), chromedp.SetValue(chromedp.CSS("#f-device_id"), lockerID))
	desktop.Screenshot(t, "console/e2e/register-filled-desktop")
	desktop.Do(t, chromedp.Click(chromedp.CSS(`form button[type=submit].primary`)))
	desktop.WaitFor(t, `location.pathname.startsWith("/staff/documents/") && !!document.querySelector(".state-line")`, 15*time.Second)
	if s := desktop.Text(t, ".state-line"); !strings.Contains(s, tx("state.reserved")) {
		t.Fatalf("after registering the document page says %q", s)
	}
	id := strings.TrimPrefix(eval(desktop, `location.pathname`), "/staff/documents/")
	d := &doc{document: document{ID: id}, kind: "eid", number: number, device: lockerID, label: "eid " + number}
	w.compOf(d)
	n := d.comp.Number
	check("/staff/documents/"+id, "document-reserved", `!!document.querySelector(".timeline")`)

	// Reserved on the map; then the device loads it, and the map follows.
	compSel := fmt.Sprintf(`svg.map g[data-comp="%d"]`, n)
	check(fmt.Sprintf("/staff/devices/%s?c=%d", lockerID, n), "device-reserved",
		fmt.Sprintf(`!!document.querySelector(%q)`, compSel+".st-reserved"))
	desktop.Do(t, chromedp.Evaluate[chromedp.Void](`window.sameDocument = true`))
	time.Sleep(1500 * time.Millisecond) // the live stream is open
	node := w.nodes[lockerID]
	p0 := w.pulseCount(lockerID)
	if s := w.kioskPost(node, "/kiosk/v1/staff/login", map[string]string{"pin": w.staffPIN}); s.State != "staff" {
		t.Fatalf("staff login at the kiosk: %s (%s)", s.State, s.Message)
	}
	if s := w.kioskPost(node, "/kiosk/v1/staff/load", map[string]string{"document_number": number}); s.State != "loading" {
		t.Fatalf("staff load at the kiosk: %s (%s)", s.State, s.Message)
	}
	w.waitDoor(lockerID, d.comp.Board, d.comp.Channel, true)
	time.Sleep(humanPause)
	w.act(lockerID, d.comp.Board, d.comp.Channel, "put", url.Values{"label": {d.label}})
	time.Sleep(humanPause)
	w.act(lockerID, d.comp.Board, d.comp.Channel, "close", nil)
	w.waitScreen(node, "loaded")
	w.exactlyOnePulse(lockerID, p0, d.comp.Board, d.comp.Channel)
	w.kioskPost(node, "/kiosk/v1/staff/logout", nil)
	desktop.WaitFor(t, fmt.Sprintf(`!!document.querySelector(%q)`, compSel+".st-loaded"), 20*time.Second)
	if eval(desktop, `String(window.sameDocument === true)`) != "true" {
		t.Fatal("the map was reloaded instead of updated")
	}
	desktop.Screenshot(t, "console/e2e/device-loaded-live-desktop")
	w.waitState(d, "notified") // the slip is the holder's message

	// The slip, from the document page, printed.
	desktop.Do(t, chromedp.Navigate(base+"/staff/documents/"+id))
	desktop.WaitFor(t, `!!document.querySelector('a[href$="/slip"]')`, 15*time.Second)
	if s := desktop.Text(t, ".state-line"); !strings.Contains(s, tx("state.notified")) {
		t.Fatalf("after loading the document page says %q", s)
	}
	desktop.Do(t, chromedp.Click(chromedp.CSS(`a[href$="/slip"]`)))
	desktop.WaitFor(t, `!!document.querySelector("article.slip img.slip-qr")`, 15*time.Second)
	desktop.CheckAxe(t, "slip desktop")
	pin := desktop.Text(t, "article.slip .slip-pin")
	if len(strings.ReplaceAll(pin, " ", "")) < 6 {
		t.Fatalf("no PIN on the slip: %q", pin)
	}
	desktop.Do(t, chromedp.Click(chromedp.CSS(`nav.papers a[href="?paper=80mm"]`)))
	desktop.WaitFor(t, `location.search === "?paper=80mm"`, 15*time.Second)
	// The print stylesheet (media="print") loads after the page is shown:
	// wait for it, or the check below may read the page without it.
	desktop.WaitFor(t, `[...document.styleSheets].some(s => (s.href || "").endsWith("/print-80mm.css"))`, 15*time.Second)
	if _, err := chromedp.Call(desktop.Ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"}); err != nil {
		t.Fatal(err)
	}
	if eval(desktop, `getComputedStyle(document.querySelector("header.top")).display`) != "none" {
		t.Fatal("the header is printed with the slip")
	}
	desktop.Screenshot(t, "console/e2e/slip-80mm-printed")
	pdf, err := chromedp.Run(desktop.Ctx, chromedp.PrintToPDF(chromedp.PDFPreferCSSPageSize()))
	if err != nil || !strings.HasPrefix(string(pdf), "%PDF") {
		t.Fatalf("print to PDF: %v", err)
	}
	if _, err := chromedp.Call(desktop.Ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: ""}); err != nil {
		t.Fatal(err)
	}
	phone.Do(t, chromedp.Navigate(base+"/staff/documents/"+id+"/slip"))
	phone.WaitFor(t, `!!document.querySelector("article.slip img.slip-qr")`, 15*time.Second)
	phone.CheckAxe(t, "slip phone")
	phone.Screenshot(t, "console/e2e/slip-phone")

	// Staff cannot open remotely: no button, a forged post is refused, and
	// a post without the CSRF token too.
	free := n%lockerDoors + 1
	check("/staff/devices/"+lockerID, "device-staff", `!!document.querySelector("svg.map")`)
	if c := eval(desktop, `String(document.querySelectorAll('a[href*="/open"]').length)`); c != "0" {
		t.Fatalf("staff see %s remote open buttons", c)
	}
	p0 = w.pulseCount(lockerID)
	post := func(path string, form map[string]string) string {
		t.Helper()
		js := fmt.Sprintf(`(async function(){var f=new URLSearchParams(%s);var t=document.querySelector('input[name="csrf"]');
			if (%t) { f.set("csrf", t.value); }
			var r = await fetch(%q, {method: "POST", body: f, redirect: "manual"}); return String(r.status)})()`,
			toJSON(form), form["csrf"] == "use-page-token", path)
		s, err := chromedp.Run(desktop.Ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	openPath := fmt.Sprintf("/staff/devices/%s/compartments/%d/open", lockerID, free)
	if s := post(openPath, map[string]string{"csrf": "use-page-token", "reason": "forged", "confirm": "yes"}); s != "403" {
		t.Fatalf("a staff member's forged remote open answered %s, want 403", s)
	}
	if s := post("/staff/documents/"+id+"/reissue", map[string]string{}); s != "403" {
		t.Fatalf("a post without the CSRF token answered %s, want 403", s)
	}
	w.noPulse(lockerID, p0)
	if got, err := w.staff.Document(ctx, d.ID); err != nil || got.State != "notified" {
		t.Fatalf("after the refused posts the document is %q (%v)", got.State, err)
	}
	check("/staff/documents", "documents", `!!document.querySelector("h1")`)

	// A technician: the fleet on the phone, remote open on the desktop.
	desktop.Do(t, chromedp.Navigate(base+"/staff/devices"))
	desktop.WaitFor(t, `!!document.querySelector("header form button")`, 15*time.Second)
	desktop.Do(t, chromedp.Click(chromedp.CSS(`header form button`)))
	desktop.WaitFor(t, `location.pathname === "/staff/login"`, 15*time.Second)
	signIn(users["technician"])
	check("/staff/devices/"+lockerID, "device", `!!document.querySelector("svg.map")`)
	check("/staff/devices", "devices", `document.querySelectorAll("#fleet-rows tr[data-status]").length === 2`)
	phone.Do(t, chromedp.Evaluate[chromedp.Void](`window.sameDocument = true`))
	desktop.Do(t, chromedp.Navigate(base+"/staff/devices/"+lockerID))
	desktop.WaitFor(t, `!!document.querySelector("svg.map")`, 15*time.Second)
	desktop.Do(t, chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[href=%q]`, openPath))))
	desktop.WaitFor(t, `!!document.querySelector("#reason")`, 15*time.Second)
	desktop.CheckAxe(t, "open-reason desktop")
	desktop.Screenshot(t, "console/e2e/open-reason-desktop")
	desktop.Do(t, chromedp.Click(chromedp.CSS("#reason")), chromedp.KeyEvent("ticket "+w.runID), chromedp.Click(chromedp.CSS("button.primary")))
	desktop.WaitFor(t, `!!document.querySelector(".confirm")`, 15*time.Second)
	desktop.CheckAxe(t, "open-confirm desktop")
	desktop.Screenshot(t, "console/e2e/open-confirm-desktop")
	if got := w.pulsesSince(lockerID, p0); len(got) != 0 {
		t.Fatalf("pulses before the confirmation: %+v", got)
	}
	desktop.Do(t, chromedp.Click(chromedp.CSS("form button.danger")))
	desktop.WaitFor(t, `location.pathname === "/staff/devices/`+lockerID+`" && !!document.querySelector(".notice")`, 30*time.Second)
	if s := desktop.Text(t, ".notice"); s != tx("notice.opened", "n", free) {
		t.Fatalf("after the remote open the page says %q", s)
	}
	w.waitDoor(lockerID, 0, free-1, true)
	w.exactlyOnePulse(lockerID, p0, 0, free-1)
	// The door stays open: the alarm appears on the phone's fleet page.
	phone.WaitText(t, "#fleet-rows", tx("alarm.at_compartment", "alarm", tx("alarm.door_left_open"), "n", free), 20*time.Second)
	if eval(phone, `String(window.sameDocument === true)`) != "true" {
		t.Fatal("the fleet page was reloaded instead of updated")
	}
	phone.CheckAxe(t, "devices with an alarm phone")
	phone.Screenshot(t, "console/e2e/devices-alarm-phone")
	desktop.WaitFor(t, fmt.Sprintf(`!!document.querySelector('svg.map g[data-comp="%d"].door-open.alarmed')`, free), 20*time.Second)
	desktop.CheckAxe(t, "device with an alarm desktop")
	desktop.Screenshot(t, "console/e2e/device-alarm-desktop")
	w.waitAudit(lockerID, "compartment.remote_open", "")
	time.Sleep(humanPause)
	w.act(lockerID, 0, free-1, "close", nil)
	phone.WaitFor(t, `!document.querySelector("#fleet-rows .alarm") || !document.querySelector("#fleet-rows").innerText.includes(`+
		fmt.Sprintf("%q", tx("alarm.door_left_open"))+`)`, 20*time.Second)
	w.allShut(lockerID)
}

func toJSON(m map[string]string) string {
	var b strings.Builder
	b.WriteString("{")
	first := true
	for k, v := range m {
		if k == "csrf" && v == "use-page-token" {
			continue
		}
		if !first {
			b.WriteString(",")
		}
		first = false
		fmt.Fprintf(&b, "%q:%q", k, v)
	}
	b.WriteString("}")
	return b.String()
}
