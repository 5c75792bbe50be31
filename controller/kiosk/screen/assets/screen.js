// Kluis kiosk screen: shows the section for the engine's state, follows it
// live (server-sent events, long polling as the fallback), captures
// keyboard-wedge scanners, drives the keypads and goes back to the start
// screen and the default language when idle. It holds no text: everything
// a person reads is in the page, rendered from the catalogue.
(function () {
  "use strict";

  var root = document.documentElement;
  var body = document.body;
  var lang = root.lang;
  var defaultLang = root.getAttribute("data-default-lang");
  var build = root.getAttribute("data-build");
  var idleMS = parseInt(root.getAttribute("data-idle-ms"), 10) || 120000;
  var leftOpenMS = parseInt(root.getAttribute("data-left-open-ms"), 10) || 0;
  var large = root.classList.contains("large");
  var automaton = root.getAttribute("data-kind") === "automaton";
  // What the page says of the counter's closed dates holds until then
  // (0: nothing of the kind): the page is loaded again at the idle
  // return after it.
  var freshUntil = parseInt(root.getAttribute("data-fresh-until"), 10) || 0;
  function stale() { return freshUntil > 0 && Date.now() >= freshUntil; }

  // States in which something is happening at the device: no idle reset.
  var BUSY = { verifying: 1, presenting: 1, open: 1, loading: 1, retrieving: 1, test_open: 1 };
  var STAFF_VIEWS = { "staff-menu": 1, "staff-load": 1, "staff-retrieve": 1, tech: 1 };
  // The staff views only some roles may use (the backend decides anyway):
  // counter staff load and retrieve, technicians test-open, admins both.
  var VIEW_ROLES = { "staff-load": "staff,admin", "staff-retrieve": "staff,admin", tech: "technician,admin" };
  // A door open this long is left open: "the door is still open".
  var LEFT_OPEN = { open: 1, loading: 1, retrieving: 1, test_open: 1 };

  var cur = {
    state: body.getAttribute("data-state"),
    seq: parseInt(body.getAttribute("data-seq"), 10) || 0,
    at: parseInt(body.getAttribute("data-at"), 10) || 0,
    compartment: parseInt(body.getAttribute("data-n"), 10) || 0,
    staff: body.getAttribute("data-staff") || "",
    role: body.getAttribute("data-role") || "",
    retryUntil: parseInt(body.getAttribute("data-retry-until"), 10) || 0,
    method: body.getAttribute("data-method") || "",
    lastTry: parseInt(body.getAttribute("data-last-try-s"), 10) || 0,
    messages: null
  };
  var view = cur.staff ? "staff-menu" : "start"; // the person's own screen
  // A language chosen on the PIN keypad keeps the keypad (the link adds
  // #pin; the digits typed are not carried: they never leave this script).
  var keepPad = !cur.staff && window.location.hash === "#pin";
  if (keepPad) {
    view = "pin";
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  var dismissed = 0;  // state sections up to this seq were left with "start again"
  var shown = body.getAttribute("data-show");
  var offline = false;
  var lastOp = "load";

  // Secrets typed at the keypads live only here, never in the page or URL.
  var pin = "";
  var staffPin = "";
  var birth = { d: "", m: "", y: "" };
  var field = "d";
  // reveal: the typed PIN shows as digits instead of dots (the toggle
  // beside it); every new PIN starts masked. Masked, the digits are
  // nowhere in the page.
  var reveal = false;

  function roleMay(roles) { return roles.split(",").indexOf(cur.role || "staff") >= 0; }

  function $(sel, from) { return (from || document).querySelector(sel); }
  function $$(sel, from) { return Array.prototype.slice.call((from || document).querySelectorAll(sel)); }

  // ---- what to show ------------------------------------------------------

  function target() {
    if (offline) { return "v-offline"; }
    var st = cur.state;
    if (cur.staff) {
      if (!STAFF_VIEWS[view] || (VIEW_ROLES[view] && !roleMay(VIEW_ROLES[view]))) { view = "staff-menu"; }
    } else if (STAFF_VIEWS[view]) {
      view = "start";
    }
    // A door left open is said even after "start again" or "back to the
    // menu": nobody walks away from an open door without being told.
    if (LEFT_OPEN[st] && leftOpenMS > 0 && Date.now() >= cur.at + leftOpenMS) { return "s-left_open"; }
    if (cur.seq > dismissed) {
      if (st === "need_birth_date") { return "v-birth"; }
      if (st !== "idle" && st !== "staff") {
        return $("#s-" + st) ? "s-" + st : "s-error";
      }
    }
    if (view === "birth" && st !== "need_birth_date") { view = "start"; }
    return "v-" + view;
  }

  function fill() {
    var n = String(cur.compartment || 0);
    $$("[data-fill=n]").forEach(function (el) { el.textContent = n; });
    $$("[data-fill=s]").forEach(function (el) { el.textContent = cur.staff; });
    $$("[data-tpl-aria]").forEach(function (el) {
      el.setAttribute("aria-label", el.getAttribute("data-tpl-aria").split("{n}").join(n));
    });
    var sec = $("#s-" + cur.state);
    if (sec && cur.messages && cur.messages[lang]) {
      var msg = $("[data-msg]", sec);
      if (msg) { msg.textContent = cur.messages[lang]; }
    }
    retryText();
    lastTryText();
    $$(".device .comp").forEach(function (g) {
      var c = g.getAttribute("data-comp");
      g.classList.toggle("hl", automaton ? cur.compartment > 0 : c === n);
    });
  }

  function retryText() {
    if (!cur.retryUntil) { return; }
    var m = Math.max(1, Math.ceil((cur.retryUntil - Date.now() - 1000) / 60000));
    $$("[data-fill=m]").forEach(function (el) { el.textContent = String(m); });
    $$("[data-retry]").forEach(function (el) {
      el.hidden = (el.getAttribute("data-retry") === "one") !== (m === 1);
    });
  }

  // lastTryText says, after the second-to-last wrong PIN, how long one
  // more locks PIN entry: minutes rounded up, hours from two hours (as
  // the page's lastTry does).
  function lastTryText() {
    var e = $("[data-last-try]");
    if (!e) { return; }
    e.hidden = !(cur.state === "wrong_code" && cur.lastTry > 0);
    if (e.hidden) { return; }
    var m = Math.ceil(cur.lastTry / 60), key = "data-plural";
    if (m <= 1) { m = 1; key = "data-single"; } else if (m >= 120) { m = Math.ceil(m / 60); key = "data-hours"; }
    e.textContent = e.getAttribute(key).split("{m}").join(String(m));
  }

  function render(focus) {
    var id = target();
    var changed = id !== shown;
    $$("main .view").forEach(function (sec) { sec.hidden = sec.id !== id; });
    shown = id;
    var sec = document.getElementById(id);
    var fig = $("#drawing");
    fig.hidden = !(sec && sec.hasAttribute("data-drawing") && cur.compartment > 0);
    fill();
    var staffMode = !!cur.staff;
    $$("[data-roles]").forEach(function (b) { b.hidden = !roleMay(b.getAttribute("data-roles")); });
    // After a refused PIN "Try again" is the PIN keypad: typing the PIN
    // instead is offered only after a refused QR code.
    $$("[data-after]").forEach(function (b) { b.hidden = cur.method === "pin"; });
    // "Start again" is not offered where it would do nothing: on the start
    // screen, while the code is checked or a door is open for the citizen
    // (the engine goes on; the screen would only hide which door), or
    // where the screen's own "Try again" does the same.
    var ownRestart = id === "v-start" || id === "s-left_open" || (!cur.staff && !!BUSY[cur.state] && id.indexOf("s-") === 0) ||
      !!(sec && sec.hasAttribute("data-own-restart"));
    // "Back to the menu" is not offered on the menu itself, nor twice on
    // a screen that has its own.
    var ownMenu = id === "v-staff-menu" || !!(sec && $("[data-act=staff-menu]", sec));
    $$("footer [data-when]").forEach(function (b) {
      var w = b.getAttribute("data-when");
      b.hidden = offline || (w === "staff" ? !staffMode || (ownMenu && b.getAttribute("data-act") === "staff-menu") :
        w === "citizen" ? staffMode || ownRestart : id !== "v-start");
    });
    if (changed) {
      clearErrors();
      if (id === "v-tech") { loadTech(); }
      if (id === "v-staff-load" || id === "v-staff-retrieve") {
        var input = $("input", sec);
        input.value = "";
        input.focus();
      } else if (sec && focus !== false) {
        var h = $("h1", sec);
        if (h) { h.focus({ preventScroll: true }); }
      }
      announce(sec);
    }
    // The warning before the idle return goes with the screen it was
    // for, at once (not at the next tick): none on the start screen.
    idleWarn();
  }

  function announce(sec) {
    var a = $("#announce");
    if (!sec || !a) { return; }
    var h = $("h1", sec);
    var m = $(".msg, p", sec);
    a.textContent = (h ? h.textContent : "") + (m ? ". " + m.textContent : "");
  }

  // apply takes a screen from the server; fresh is true for the first one
  // after a (re)connection (kluisd may have restarted: its seq starts again).
  function apply(s, fresh) {
    if (!s || typeof s.seq !== "number") { return; }
    if (!fresh && s.seq <= cur.seq) { return; }
    var was = cur;
    cur = {
      state: s.state, seq: s.seq, at: Date.parse(s.at) || Date.now(),
      compartment: s.compartment || 0, staff: s.staff || "", role: s.staff_role || "", messages: s.messages,
      method: s.method || "", lastTry: s.last_try_lock_s || 0,
      retryUntil: (s.state === "locked_out" || s.state === "lockout_capped") && s.retry_after_s ? Date.parse(s.at) + s.retry_after_s * 1000 : 0,
      idleUntil: s.idle_until ? Date.parse(s.idle_until) || 0 : 0, idleFinal: !!s.idle_final
    };
    if (fresh && s.seq < was.seq) { dismissed = 0; }
    // kluisd's return to idle (timeouts.session) from a citizen's screen
    // still shown (the date-of-birth keypad, a result) ends it: the start
    // screen, nothing typed kept; not the keypad the person came from
    // (the PIN keypad with the PIN still in it). A screen already left
    // ("Try again", "Start again") keeps what the person does now.
    var ended = !cur.staff && s.state === "idle" && was.seq > dismissed && was.state !== "idle" && was.state !== "staff";
    if (ended) { view = "start"; }
    if (ended || (s.state !== "need_birth_date" && s.state !== "verifying" && s.state !== "idle")) { forget(); }
    watchDoor();
    if (was.staff && !cur.staff) { view = "start"; staffPin = ""; }
    if (s.state !== was.state || s.seq !== was.seq) {
      if (s.state !== "idle") { activity(); }
    }
    render();
  }

  // watchDoor shows "the door is still open" when its time comes.
  var doorTimer = null;
  function watchDoor() {
    if (doorTimer) { clearTimeout(doorTimer); doorTimer = null; }
    if (!LEFT_OPEN[cur.state] || leftOpenMS <= 0) { return; }
    var wait = cur.at + leftOpenMS - Date.now();
    if (wait > 0) { doorTimer = setTimeout(function () { doorTimer = null; render(); }, wait + 50); }
  }

  function forget() {
    pin = ""; staffPin = ""; birth = { d: "", m: "", y: "" }; field = "d";
    reveal = false;
    showTyped();
  }

  function goView(v) {
    view = v;
    dismissed = cur.seq;
    render();
  }

  // ---- the server ----------------------------------------------------------

  // go navigates only when kluisd answers, so the kiosk never ends on the
  // browser's error page while kluisd restarts.
  function go(url) {
    fetch(url, { method: "HEAD", cache: "no-store" }).then(function (r) {
      if (r.ok) { window.location.assign(url); } else { setTimeout(function () { go(url); }, 2000); }
    }, function () { setTimeout(function () { go(url); }, 2000); });
  }

  function post(path, data) {
    return fetch(path, {
      method: "POST", cache: "no-store",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(data)
    }).then(function (r) {
      if (!r.ok) { var e = new Error("HTTP " + r.status); e.status = r.status; throw e; }
      return r.json();
    }).then(function (s) { apply(s, false); return s; });
  }

  var offlineTimer = null;
  function lost() {
    if (offlineTimer || offline) { return; }
    offlineTimer = setTimeout(function () { offlineTimer = null; offline = true; render(); }, 3000);
  }
  function found() {
    if (offlineTimer) { clearTimeout(offlineTimer); offlineTimer = null; }
    if (offline) { offline = false; render(false); }
  }

  function checkBuild(b) {
    if (b && b !== build) { go(window.location.href); }
  }

  var failures = 0;
  function connect() {
    if (!window.EventSource) { poll(); return; }
    var es = new EventSource("/kiosk/v1/events");
    var fresh = true;
    es.addEventListener("hello", function (e) {
      fresh = true;
      try { checkBuild(JSON.parse(e.data).build); } catch (err) { /* keep going */ }
    });
    es.addEventListener("screen", function (e) {
      failures = 0;
      found();
      var s;
      try { s = JSON.parse(e.data); } catch (err) { return; }
      apply(s, fresh);
      fresh = false;
    });
    es.onerror = function () {
      lost();
      if (es.readyState === 2) { // closed for good: try again, then long polling
        es.close();
        failures++;
        setTimeout(failures > 3 ? poll : connect, 1000);
      }
    };
  }

  function poll() {
    fetch("/kiosk/v1/session?wait=" + cur.seq, { cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      checkBuild(r.headers.get("X-Kluis-Build"));
      return r.json();
    }).then(function (s) {
      found();
      apply(s, true);
      poll();
    }, function () {
      lost();
      setTimeout(poll, 1000);
    });
  }

  // ---- idle ----------------------------------------------------------------

  var idleTimer = null;
  var idleAt = 0; // when the script returns to the start without a touch
  function activity() {
    if (idleTimer) { clearTimeout(idleTimer); }
    idleTimer = setTimeout(idle, idleMS);
    idleAt = Date.now() + idleMS;
    idleWarn();
  }

  // touched is a person's touch or key: the page's idle timer starts
  // again, and kluisd hears of it (tell) so that it does not end the
  // screen it shows (the date-of-birth keypad) while someone still types.
  function touched() {
    activity();
    tell(false);
  }
  // tell reports activity on the screen kluisd returns by itself
  // (POST /kiosk/v1/activity, the screen's seq, nothing typed) at most
  // once every TELL_MS, and once more at the end of that time for a touch
  // held back; now (the "I am still here" button) at once. kluisd puts
  // the screen's idle return off (at most 10 minutes after the screen
  // came) and answers with its new idle_until.
  var TELL_MS = Math.min(10000, Math.floor(idleMS / 4));
  var toldAt = 0, tellTimer = null;
  function tell(now) {
    if (offline || !kluisdReturns()) { return; }
    var wait = toldAt + TELL_MS - Date.now();
    if (wait > 0 && !now) {
      if (!tellTimer) { tellTimer = setTimeout(function () { tellTimer = null; tell(false); }, wait); }
      return;
    }
    if (tellTimer) { clearTimeout(tellTimer); tellTimer = null; }
    toldAt = Date.now();
    var seq = cur.seq;
    fetch("/kiosk/v1/activity", {
      method: "POST", cache: "no-store",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ seq: seq })
    }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    }).then(function (s) {
      if (s && s.seq === cur.seq) {
        cur.idleUntil = s.idle_until ? Date.parse(s.idle_until) || 0 : 0;
        cur.idleFinal = !!s.idle_final;
        idleWarn();
      } else {
        apply(s, false);
      }
    }, function () {});
  }

  // The warning before the idle return, WARN_MS before it: the seconds
  // left count down on the screen; a screen reader hears the warning once.
  var WARN_MS = Math.min(30000, Math.floor(idleMS / 4));
  // kluisd brings a citizen's screen back to the start timeouts.session
  // after it came or after the last touch the page told it of (tell),
  // at most 10 minutes after it came (idle_final: a touch keeps it no
  // longer).
  function kluisdReturns() {
    return cur.seq > dismissed && !cur.staff && cur.state !== "idle" && cur.state !== "staff" && !BUSY[cur.state];
  }
  function idleWarn() {
    var w = $("#idle-warn");
    if (!w) { return; }
    var at = idleAt, kept = true;
    var kAt = cur.idleUntil || cur.at + idleMS;
    if (kluisdReturns() && kAt <= at) { at = kAt; kept = !cur.idleFinal; }
    var left = at - Date.now();
    // Nothing to warn of on the start screen (at most its language goes
    // back to the default), for staff (logged out by kluisd) or while
    // something happens.
    if (offline || cur.staff || BUSY[cur.state] || shown === "v-start" || left > WARN_MS || left <= 0) {
      if (!w.hidden) { w.hidden = true; $("[data-idle-said]", w).textContent = ""; }
      return;
    }
    var secs = Math.ceil(left / 1000);
    var tpl = $("[data-idle-shown]", w).getAttribute(secs === 1 ? "data-tpl-one" : "data-tpl");
    var text = tpl.split("{n}").join(String(secs));
    $("[data-idle-shown]", w).textContent = text;
    $("[data-act=stay]", w).hidden = !kept;
    if (w.hidden) {
      w.hidden = false;
      $("[data-idle-said]", w).textContent = text;
    }
  }
  function idle() {
    idleTimer = null;
    if (BUSY[cur.state] || cur.staff || offline) { activity(); return; }
    forget();
    var home = lang === defaultLang && !large && !stale();
    if (home) {
      view = "start";
      dismissed = cur.seq;
      render();
      return;
    }
    go("/");
  }

  // ---- keypads -------------------------------------------------------------

  function group(s) { return s.replace(/(.{3})(?=.)/g, "$1 "); }
  function masked(s) { return reveal ? s : s.replace(/./g, "\u2022"); }

  // say is what a screen reader reads of a typed PIN (the dots are
  // hidden from it): how many digits, and which while they are shown,
  // one by one; from the catalogue's templates on the element.
  function say(pad, s) {
    var e = $("[data-say=" + pad + "]");
    if (!e) { return; }
    var n = s.length;
    var t = n === 0 ? e.getAttribute("data-none") : n === 1 ? e.getAttribute("data-one") :
      e.getAttribute("data-many").split("{n}").join(String(n));
    if (reveal && n > 0) { t += ". " + e.getAttribute("data-digits").split("{d}").join(s.split("").join(" ")); }
    if (e.textContent !== t) { e.textContent = t; }
  }

  function showTyped() {
    var o = $("[data-out=pin]");
    if (o) { o.textContent = group(masked(pin)); }
    say("pin", pin);
    o = $("[data-out=staff-pin]");
    if (o) { o.textContent = masked(staffPin); }
    say("staff-pin", staffPin);
    $$("[data-act=reveal]").forEach(function (b) { b.setAttribute("aria-pressed", reveal ? "true" : "false"); });
    ["d", "m", "y"].forEach(function (f) {
      var v = $("[data-val=" + f + "]");
      if (v) { v.textContent = birth[f]; }
      var b = $("[data-field=" + f + "]");
      if (b) {
        if (f === field) { b.setAttribute("aria-current", "true"); } else { b.removeAttribute("aria-current"); }
      }
    });
  }

  function clearErrors() { $$(".err").forEach(function (e) { e.hidden = true; }); }
  function showError(name, n) {
    clearErrors();
    var sec = document.getElementById(shown);
    var e = sec && $("[data-err=" + name + "]", sec);
    if (!e) { return; }
    if (e.hasAttribute("data-tpl")) { e.textContent = e.getAttribute("data-tpl").split("{n}").join(String(n)); }
    e.hidden = false;
  }

  var FIELD_LEN = { d: 2, m: 2, y: 4 };
  var NEXT_FIELD = { d: "m", m: "y", y: "y" };
  var PREV_FIELD = { d: "d", m: "d", y: "m" };

  function press(pad, k) {
    activity();
    clearErrors();
    if (pad === "pin") {
      if (k === "ok") { submitPIN(); } else if (k === "del") { pin = pin.slice(0, -1); } else if (pin.length < 12) { pin += k; }
    } else if (pad === "staff-pin") {
      if (k === "ok") { submitStaffPIN(); } else if (k === "del") { staffPin = staffPin.slice(0, -1); } else if (staffPin.length < 12) { staffPin += k; }
    } else if (pad === "birth") {
      if (k === "ok") { submitBirth(); } else if (k === "del") {
        if (birth[field] === "" && field !== "d") { field = PREV_FIELD[field]; }
        birth[field] = birth[field].slice(0, -1);
      } else {
        if (birth[field].length >= FIELD_LEN[field] && field !== "y") { field = NEXT_FIELD[field]; }
        if (birth[field].length < FIELD_LEN[field]) { birth[field] += k; }
        if (birth[field].length === FIELD_LEN[field]) { field = NEXT_FIELD[field]; }
      }
    } else if (pad === "load" || pad === "retrieve") {
      var input = $("#doc-" + pad);
      if (k === "ok") { submitDoc(pad); } else if (k === "del") { input.value = input.value.slice(0, -1); } else { input.value += k; }
    }
    showTyped();
  }

  function birthDate() {
    var d = parseInt(birth.d, 10), m = parseInt(birth.m, 10), y = parseInt(birth.y, 10);
    if (birth.y.length !== 4 || !d || !m || !y || m > 12 || y < 1900) { return ""; }
    var t = new Date(Date.UTC(y, m - 1, d));
    if (t.getUTCDate() !== d || t.getTime() > Date.now()) { return ""; }
    return birth.y + "-" + ("0" + m).slice(-2) + "-" + ("0" + d).slice(-2);
  }

  function submitPIN() {
    if (pin.length < 4) { showError("short"); return; }
    var req = { pin: pin, lang: lang };
    var bd = birthDate();
    if (bd) { req.birth_date = bd; }
    post("/kiosk/v1/pickup", req).catch(function () { showError("input"); });
  }

  function submitBirth() {
    var bd = birthDate();
    if (!bd) { showError("invalid"); return; }
    if (pin.length < 4) { view = "pin"; dismissed = cur.seq; render(); return; }
    post("/kiosk/v1/pickup", { pin: pin, birth_date: bd, lang: lang }).catch(function () { showError("input"); });
  }

  function submitStaffPIN() {
    if (staffPin.length < 4) { showError("short"); return; }
    var p = staffPin;
    staffPin = "";
    showTyped();
    post("/kiosk/v1/staff/login", { pin: p, lang: lang }).catch(function () { showError("input"); });
  }

  function submitDoc(op) {
    var input = $("#doc-" + op);
    var nr = input.value.trim();
    if (!nr) { input.focus(); return; }
    lastOp = op;
    post("/kiosk/v1/staff/" + op, { document_number: nr, lang: lang }).then(function () {
      input.value = "";
    }, function () { showError("input"); });
  }

  function scanned(code) {
    activity();
    if (shown === "v-staff-login") {
      post("/kiosk/v1/staff/login", { badge: code, lang: lang }).catch(function () { showError("input"); });
      return;
    }
    if (shown === "v-staff-load" || shown === "v-staff-retrieve") {
      var op = shown.slice(8);
      $("#doc-" + op).value = code;
      submitDoc(op);
      return;
    }
    if (cur.staff || STAFF_VIEWS[view]) { return; }
    forget();
    post("/kiosk/v1/pickup", { qr: code, lang: lang }).catch(function () { showError("input"); });
  }

  // ---- the technician ------------------------------------------------------

  function loadTech() {
    var box = $("[data-tech-body]");
    fetch("/screen/tech?lang=" + encodeURIComponent(lang), { cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.text();
    }).then(function (html) { box.innerHTML = html; techMore(); }, function () { showError("input"); });
  }

  // "More below" under the diagnostics while its region (which scrolls
  // on a small panel) has more below what shows.
  function techMore() {
    var box = $("[data-tech-body]"), more = $("[data-tech-more]");
    if (!box || !more) { return; }
    more.hidden = box.scrollHeight - box.clientHeight - box.scrollTop <= 2;
  }

  function testOpen(n) {
    post("/kiosk/v1/tech/test-open", { compartment: n, lang: lang }).catch(function (e) {
      if (e.status === 409) { showError("notfree", n); } else { showError("input"); }
    });
  }

  // ---- buttons -------------------------------------------------------------

  var ACTIONS = {
    restart: function () { forget(); goView(cur.staff ? "staff-menu" : "start"); },
    // Try again the way the refused code was given: the PIN keypad after
    // a PIN, the start screen (scan the QR code) otherwise.
    again: function () { forget(); goView(cur.method === "pin" ? "pin" : "start"); },
    pin: function () { forget(); goView("pin"); },
    large: function () { go("/?lang=" + encodeURIComponent(lang) + (large ? "" : "&large=1")); },
    "staff-login": function () { forget(); goView("staff-login"); },
    "staff-menu": function () { goView("staff-menu"); },
    "staff-next": function () { goView(cur.staff ? "staff-" + lastOp : "staff-login"); },
    load: function () { lastOp = "load"; goView("staff-load"); },
    retrieve: function () { lastOp = "retrieve"; goView("staff-retrieve"); },
    tech: function () { goView("tech"); },
    unlock: function () { post("/kiosk/v1/staff/clear-lockout", { lang: lang }).catch(function () { showError("input"); }); },
    "tech-refresh": function () { loadTech(); },
    reveal: function () { reveal = !reveal; showTyped(); },
    // "I am still here": the touch itself (activity) keeps the screen,
    // and kluisd hears of it at once.
    stay: function () { tell(true); },
    logout: function () { post("/kiosk/v1/staff/logout", {}).catch(function () { showError("input"); }); }
  };

  var techBody = $("[data-tech-body]");
  if (techBody) { techBody.addEventListener("scroll", techMore, { passive: true }); }
  window.addEventListener("resize", techMore);

  document.addEventListener("click", function (e) {
    touched();
    var k = e.target.closest("[data-key]");
    if (k) {
      var pad = k.closest("[data-pad]");
      if (pad) { press(pad.getAttribute("data-pad"), k.getAttribute("data-key")); }
      return;
    }
    var f = e.target.closest("[data-field]");
    if (f) { field = f.getAttribute("data-field"); showTyped(); return; }
    var ln = e.target.closest("a[data-lang]");
    if (ln && shown === "v-pin") {
      e.preventDefault();
      if (!ln.hasAttribute("aria-current")) { go(ln.getAttribute("href") + "#pin"); }
      return;
    }
    var a = e.target.closest("[data-act]");
    if (!a) { return; }
    var act = a.getAttribute("data-act");
    if (act === "test-open") { testOpen(parseInt(a.getAttribute("data-comp"), 10)); return; }
    if (ACTIONS[act]) { ACTIONS[act](); }
  });

  document.addEventListener("submit", function (e) {
    var f = e.target.closest("[data-form]");
    if (!f) { return; }
    e.preventDefault();
    submitDoc(f.getAttribute("data-form"));
  });

  // ---- the keyboard and keyboard-wedge scanners ------------------------------

  // A wedge scanner types a whole code fast and ends with Enter, into
  // whatever has focus: here usually nothing. A burst is a scan when it has
  // a character that is not a digit (a QR code, a badge) or is longer than
  // any PIN; digits typed on a keypad screen are that keypad's.
  // The gap between keys is measured by each key event's own time stamp
  // (when the key was pressed), not by when this handler runs: a busy
  // machine may hand a fast burst over late and with pauses between keys,
  // yet it is still one scan.
  var burst = "";
  var lastKey = 0;
  var BURST_GAP = 1500; // a pause this long between key presses starts over

  function padOf(id) {
    return { "v-pin": "pin", "v-birth": "birth", "v-staff-login": "staff-pin" }[id] || "";
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.altKey || e.metaKey) { return; }
    touched();
    var now = e.timeStamp;
    if (now - lastKey > BURST_GAP) { burst = ""; }
    lastKey = now;
    var t = e.target;
    var inField = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA");
    var onControl = t && t.closest && t.closest("button, a");
    var pad = padOf(shown);
    if (e.key === "Enter") {
      var code = burst;
      burst = "";
      if (!inField && code.length >= 4 && (/\D/.test(code) || code.length > 12)) {
        e.preventDefault();
        scanned(code);
        return;
      }
      if (pad && !inField && !onControl) { e.preventDefault(); press(pad, "ok"); }
      return;
    }
    if (inField) { return; }
    if (e.key === "Backspace" && pad) { e.preventDefault(); press(pad, "del"); return; }
    if (e.key.length !== 1 || e.key === " ") { return; }
    var onlyDigits = !/\D/.test(burst);
    if (burst.length < 1100) { burst += e.key; }
    if (pad && /\d/.test(e.key) && onlyDigits) { e.preventDefault(); press(pad, e.key); }
  });

  ["pointerdown", "touchstart"].forEach(function (ev) {
    document.addEventListener(ev, touched, { passive: true });
  });

  // Past freshUntil on the start screen with nobody at it (the idle
  // return already came): load the page again now.
  if (freshUntil > 0) {
    setTimeout(function () {
      if (!idleTimer && shown === "v-start" && !cur.staff && cur.state === "idle") { go("/"); }
    }, Math.max(0, freshUntil - Date.now()) + 1000);
  }
  setInterval(retryText, 15000);
  setInterval(idleWarn, 500);
  watchDoor();
  showTyped();
  render(keepPad ? undefined : false);
  activity();
  connect();
}());
