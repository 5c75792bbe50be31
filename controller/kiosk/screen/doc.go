// Package screen is what a citizen sees and touches at a Kluis device at
// night, and what staff and technicians use there: one HTML page served by
// kluisd on its loopback kiosk listener and shown full screen on the
// device's touchscreen.
//
// The page is rendered from templates embedded in the binary (no network,
// no CDN, so it works with the device offline): assets/*.html, escaped by
// html/template at build time (go generate writes escaped.tmpl; a test
// fails when it is stale) and executed by pagetmpl, which renders every
// page byte for byte as html/template does (a test compares them) without
// linking text/template's executor and its method lookup by name (about
// 2 MB of kluisd's resident memory; pagetmpl's doc). It holds every screen (the start screen, the PIN and
// date-of-birth keypads, one section per engine state, staff and
// technician screens) in the chosen language; a little plain JavaScript
// (assets/screen.js) shows the one that matches the engine's state, which
// it follows live over server-sent events (/kiosk/v1/events, long polling
// as the fallback), captures keyboard-wedge QR scanners without a focused
// field (a burst of keys ending in Enter, told from typing by the gaps
// between the key events' own time stamps, so a busy kiosk that hands the
// keys over late does not split a scan), drives the keypads and returns to the start screen and the
// default language when idle. The script holds no text: every string a
// person reads comes from the Catalog (nl, fr, en, de), which takes the
// engine's state messages from controller/engine.
//
// The drawing of the device is SVG generated from the configured layout
// (config.Layout) for lockers, a cabinet with its hatch for automatons; the
// page marks the compartment that opened on it.
//
// The page is for WCAG 2.1 AA: contrast, visible focus, labels, the whole
// flow with a keyboard, usable at 200% zoom, nothing said by colour alone,
// no motion; a large-text, high-contrast mode; layouts for a portrait
// 1080x1920 touchscreen and a small 800x480 panel. The browser tests
// (screen_browser_test.go and controller/systemtest) check every screen in
// every language with axe-core in headless Chromium.
package screen
