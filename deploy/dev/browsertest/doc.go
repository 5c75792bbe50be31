// Package browsertest runs the project's web pages in a real browser for
// tests: Debian's headless Chromium, driven with chromedp, with axe-core (the
// npm package pinned in deploy/dev/axe/package-lock.json) checking WCAG 2.1
// A and AA on the page as a person would see it.
//
// Both tools are installed by deploy/dev/ensure-services.sh (`make services`,
// which `make test` runs first). A test that needs them fails, it never
// skips, when they are missing: a green run means the pages were really
// checked.
//
// A test takes a [Browser] with [New]: a fresh profile (cookies, storage
// and cache apart from every other test's) in the one Chromium the test
// binary shares, started by the first New (a Chromium per test took
// seconds each on a loaded machine); a TestMain calls [Close] after m.Run.
// It opens a tab per scenario with [Browser.NewTab], drives it with
// chromedp actions (real clicks and key presses), and calls [Tab.CheckAxe]
// and [Tab.Screenshot] on every screen it
// reaches. Each check is a full axe-core run on the page as it is then;
// after a tab's first check, axe-core is loaded into each new page of the
// tab before the page's scripts, instead of being sent with every check
// (which cost more than the check). Each check has a bound of its own
// (Options.Axe, default two minutes): one that hangs fails with its page's
// name. Screenshots are test artifacts under var/screenshots/ at the top
// of the repository, where a person can look at them after the run.
//
// The browser runs with the flags this kind of machine needs: no sandbox
// (tests run as root), no GPU, and none of Chromium's background network
// traffic (the network is closed), with a fresh profile per Browser.
package browsertest
