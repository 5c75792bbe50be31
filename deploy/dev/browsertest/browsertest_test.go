package browsertest

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/chromedp"
)

const cleanPage = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Clean</title></head>
<body><main><h1>Hello</h1><p id="out"></p>
<button id="b" type="button">Press</button></main>
<script>
var typed = "", stamps = [];
document.addEventListener("keydown", function (e) {
  stamps.push(e.timeStamp);
  if (e.key.length === 1) { typed += e.key; }
  if (e.key === "Enter") { document.getElementById("out").textContent = "scanned " + typed; typed = ""; }
});
document.getElementById("b").addEventListener("click", function () {
  document.getElementById("out").textContent = "clicked";
});
</script></body></html>`

// Two violations: an image without alternative text and no lang on <html>.
const brokenPage = `<!doctype html><html><head><meta charset="utf-8"><title>Broken</title></head>
<body><main><h1>Broken</h1><img src="/x.png"></main></body></html>`

// slowScript is how long /slow's deferred script takes to come.
const slowScript = 1500 * time.Millisecond

func serve(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /clean", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(cleanPage))
	})
	mux.HandleFunc("GET /broken", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(brokenPage))
	})
	mux.HandleFunc("GET /throws", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!doctype html><html lang="en"><title>t</title><script>null.x()</script></html>`))
	})
	// A page parsed long before its DOMContentLoaded: its deferred
	// script comes after slowScript.
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Slow</title>
<script defer src="/slow.js"></script></head><body><main><h1>Slow</h1><button id="b" type="button">Press</button></main></body></html>`))
	})
	mux.HandleFunc("GET /slow.js", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(slowScript):
		case <-r.Context().Done():
		}
		w.Header().Set("Content-Type", "text/javascript")
		w.Write([]byte(`document.title = "Slow, loaded"`))
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

func TestAxeFindsViolationsAndPassesACleanPage(t *testing.T) {
	base := serve(t)
	b := New(t, Options{})
	tab := b.NewTab(t, 800, 480)

	tab.Do(t, chromedp.Navigate(base+"/broken"))
	vs, passed, err := tab.Axe("broken page")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, v := range vs {
		ids[v.ID] = true
	}
	if !ids["image-alt"] || !ids["html-has-lang"] || passed == 0 {
		t.Fatalf("axe on the broken page: violations %v, %d passed; want image-alt and html-has-lang", vs, passed)
	}

	tab.Do(t, chromedp.Navigate(base+"/clean"))
	tab.CheckAxe(t, "clean page")
}

// errT records Errorf and Fatalf messages instead of failing the test.
type errT struct {
	testing.TB
	msgs []string
}

func (f *errT) Helper()                        {}
func (f *errT) Errorf(format string, a ...any) { f.msgs = append(f.msgs, fmt.Sprintf(format, a...)) }
func (f *errT) Fatalf(format string, a ...any) {
	f.msgs = append(f.msgs, "fatal: "+fmt.Sprintf(format, a...))
}

// checkFails runs CheckAxe on the tab's page and wants it to fail the test
// with each of the rules in want, and with nothing else.
func checkFails(t *testing.T, tab *Tab, name string, want ...string) {
	t.Helper()
	ft := &errT{TB: t}
	tab.CheckAxe(ft, name)
	if len(ft.msgs) != len(want) {
		t.Fatalf("%s: CheckAxe reported %q; want exactly the rules %v", name, ft.msgs, want)
	}
	for _, id := range want {
		found := false
		for _, m := range ft.msgs {
			found = found || strings.HasPrefix(m, name+": axe: "+id+" ")
		}
		if !found {
			t.Errorf("%s: CheckAxe reported %q; want a failure for %s", name, ft.msgs, id)
		}
	}
}

// axe-core is loaded into each page of a tab once, before the page's
// scripts, after the tab's first check; every check still runs the whole
// of axe on the page as it is then, and a violation fails the test: on a
// page that came with axe-core, on one whose DOM changed after a clean
// check, and on one that lost it (loaded again).
func TestCheckAxeFailsOnAViolationInEveryPageOfATab(t *testing.T) {
	base := serve(t)
	b := New(t, Options{})
	tab := b.NewTab(t, 800, 480)
	hasAxe := func() bool {
		t.Helper()
		v, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[bool](`typeof axe === "object" && axe.version === "`+AxeVersion+`"`))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	tab.Do(t, chromedp.Navigate(base+"/clean"))
	if hasAxe() {
		t.Fatal("axe-core in the tab's page before its first check")
	}
	tab.CheckAxe(t, "clean page")

	tab.Do(t, chromedp.Navigate(base+"/broken"))
	if !hasAxe() {
		t.Fatal("a page opened after the tab's first check came without axe-core")
	}
	checkFails(t, tab, "broken page", "html-has-lang", "image-alt")

	// The same page, clean, then an image without alternative text added.
	tab.Do(t, chromedp.Navigate(base+"/clean"))
	tab.CheckAxe(t, "clean page again")
	tab.Do(t, chromedp.Evaluate[chromedp.Void](`document.querySelector("main").appendChild(document.createElement("img")).src = "/x.png"`))
	checkFails(t, tab, "clean page with an image added", "image-alt")

	// A page that lost axe-core gets it again.
	tab.Do(t, chromedp.Navigate(base+"/broken"))
	tab.Do(t, chromedp.Evaluate[chromedp.Void](`delete window.axe`))
	if hasAxe() {
		t.Fatal("axe-core still there after delete")
	}
	checkFails(t, tab, "broken page without axe-core", "html-has-lang", "image-alt")

	// Another tab of the same browser starts without it.
	other := b.NewTab(t, 800, 480)
	other.Do(t, chromedp.Navigate(base+"/broken"))
	checkFails(t, other, "broken page in a new tab", "html-has-lang", "image-alt")
}

// A page reached by a link, a form or a reload is parsed (readyState
// "interactive") before its deferred scripts have run and DOMContentLoaded
// is dispatched, after which the browser numbers its nodes anew: a node
// looked up as soon as the page was parsed was gone when it was clicked
// ("Could not find node with given id"). WaitFor waits for that, so the
// nodes looked up after it stay the page's.
func TestWaitForWaitsUntilThePageKeepsItsNodes(t *testing.T) {
	base := serve(t)
	tab := New(t, Options{}).NewTab(t, 800, 480)
	tab.Do(t, chromedp.Navigate(base+"/clean"))
	tab.Do(t, chromedp.Evaluate[chromedp.Void](`location.href = "/slow"`))
	tab.WaitFor(t, `location.pathname === "/slow" && !!document.getElementById("b")`, 20*time.Second)
	ids, err := chromedp.Run(tab.Ctx, chromedp.QueryNodeIDs(chromedp.CSS("#b")))
	if err != nil || len(ids) != 1 {
		t.Fatalf("the button's node: %v (%v)", ids, err)
	}
	tab.WaitFor(t, `document.readyState === "complete" && document.title === "Slow, loaded"`, 20*time.Second)
	if _, err := chromedp.Call(tab.Ctx, dom.DescribeNode, dom.DescribeNodeParams{NodeID: ids[0]}); err != nil {
		t.Fatalf("the button's node looked up after WaitFor is gone once the page is loaded: %v", err)
	}
	tab.Do(t, chromedp.Click(chromedp.CSS("#b")))
	tab.WaitText(t, "main", "Slow", 5*time.Second)
}

// An axe-core check that does not finish (here a run whose promise never
// settles) fails after its own bound (Options.Axe), naming the page, and
// not only when the browser's life ends; the tab works on, and the next
// page is checked in full.
func TestAHangingAxeCheckFailsAfterItsBound(t *testing.T) {
	base := serve(t)
	b := New(t, Options{Axe: time.Second})
	tab := b.NewTab(t, 800, 480)
	bound := tab.axe // Options.Axe, 1 s
	// The checks that must pass get the default bound: at load 45 loading
	// and running axe-core on the clean page took more than 1 s.
	tab.axe = AxeTimeout
	tab.Do(t, chromedp.Navigate(base+"/clean"))
	tab.CheckAxe(t, "clean page")
	tab.axe = bound
	tab.Do(t, chromedp.Evaluate[chromedp.Void](`axe.run = function () { return new Promise(function () {}) }`))
	ft := &errT{TB: t}
	began := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tab.CheckAxe(ft, "the hanging page")
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("an axe-core check that never finishes still runs after a minute; want a failure after its bound of 1s")
	}
	// errT's Fatalf does not end CheckAxe: the first message is the one.
	if len(ft.msgs) == 0 || !strings.HasPrefix(ft.msgs[0], "fatal: ") || !strings.Contains(ft.msgs[0], "axe-core on the hanging page did not finish within 1s") {
		t.Fatalf("a hanging axe-core check reported %q after %v; want a failure naming the page and the bound first", ft.msgs, time.Since(began))
	}
	tab.axe = AxeTimeout
	tab.Do(t, chromedp.Navigate(base+"/broken"))
	checkFails(t, tab, "broken page after the hanging check", "html-has-lang", "image-alt")
}

func TestKeysReachThePageWithoutFocusAndClicksWork(t *testing.T) {
	base := serve(t)
	b := New(t, Options{})
	tab := b.NewTab(t, 800, 480)
	tab.Do(t, chromedp.Navigate(base+"/clean"))
	// A keyboard-wedge scanner types into whatever has focus: here nothing.
	tab.Do(t, chromedp.KeyEvent("K1-42\r"))
	tab.WaitText(t, "#out", "scanned K1-42", 5*time.Second)
	tab.Do(t, chromedp.Click(chromedp.CSS("#b")))
	if got := tab.Text(t, "#out"); got != "clicked" {
		t.Fatalf("after the click #out says %q", got)
	}
	path := tab.Screenshot(t, "browsertest/clean")
	png, err := os.ReadFile(path)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot %s: %v (%d bytes)", path, err, len(png))
	}
}

func TestScanStampsKeysAsAScannerTypesThem(t *testing.T) {
	base := serve(t)
	b := New(t, Options{})
	tab := b.NewTab(t, 800, 480)
	tab.Do(t, chromedp.Navigate(base+"/clean"))
	tab.Do(t, Scan("K1.Scanned-Token_9\r"))
	tab.WaitText(t, "#out", "scanned K1.Scanned-Token_9", 5*time.Second)
	// Every key down ScanGap after the one before by its own time stamp,
	// whenever the page got it.
	stamps, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[[]float64](`stamps`))
	if err != nil || len(stamps) != 19 {
		t.Fatalf("key down stamps %v (%v), want 19", stamps, err)
	}
	gap := float64(ScanGap) / float64(time.Millisecond)
	for i := 1; i < len(stamps); i++ {
		if d := stamps[i] - stamps[i-1]; math.Abs(d-gap) > 0.5 {
			t.Fatalf("key %d down %.2f ms after the one before, want %.0f ms: %v", i, d, gap, stamps)
		}
	}
}

// fakeT records failures instead of failing the real test.
type fakeT struct {
	testing.TB
	errs     []string
	cleanups []func()
}

func (f *fakeT) Helper()                        {}
func (f *fakeT) Errorf(format string, a ...any) { f.errs = append(f.errs, format) }
func (f *fakeT) Cleanup(fn func())              { f.cleanups = append(f.cleanups, fn) }

// fatalT records Fatalf instead of ending the test.
type fatalT struct {
	testing.TB
	fatals []string
}

func (f *fatalT) Helper() {}
func (f *fatalT) Fatalf(format string, a ...any) {
	f.fatals = append(f.fatals, fmt.Sprintf(format, a...))
}

// A step that never ends (a click on an element that never comes) fails
// its test after Options.Step, and the tab works on; the browser itself
// lives until shortly before the test binary's deadline (go test
// -timeout), not a fixed time: a whole test's length under load says
// nothing about a hang.
func TestAHangingStepFailsAfterItsBound(t *testing.T) {
	if at, ok := t.Deadline(); ok {
		want := time.Until(at) - deadlineMargin
		if got := lifetime(t); got > want || got < want-time.Minute {
			t.Fatalf("browser lifetime %v, want about %v (the test binary's deadline less %v)", lifetime(t), want, deadlineMargin)
		}
	}
	base := serve(t)
	b := New(t, Options{Step: 500 * time.Millisecond})
	tab := b.NewTab(t, 800, 480)
	// The navigation gets the default bound: on a loaded machine (load 60)
	// loading the page took longer than the 500 ms under test.
	bound := tab.step
	if bound != 500*time.Millisecond {
		t.Fatalf("the tab's step bound is %v, want Options.Step's 500ms", bound)
	}
	tab.step = StepTimeout
	tab.Do(t, chromedp.Navigate(base+"/clean"))
	tab.step = bound
	ft := &fatalT{TB: t}
	began := time.Now()
	tab.Do(ft, chromedp.Click(chromedp.CSS("#never")))
	tab.step = StepTimeout
	if took := time.Since(began); len(ft.fatals) != 1 || !strings.Contains(ft.fatals[0], "deadline exceeded") || took > 30*time.Second {
		t.Fatalf("a click on a missing element: %q after %v; want one deadline failure after about 500ms", ft.fatals, took)
	}
	tab.Do(t, chromedp.Click(chromedp.CSS("#b")))
	tab.WaitText(t, "#out", "clicked", 10*time.Second)
}

func TestUncaughtExceptionsFailTheTest(t *testing.T) {
	base := serve(t)
	b := New(t, Options{})
	ft := &fakeT{TB: t}
	tab := b.NewTab(ft, 800, 480)
	tab.Do(t, chromedp.Navigate(base+"/throws"))
	tab.WaitFor(t, "true", time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for len(tab.Exceptions()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range ft.cleanups {
		c()
	}
	if len(ft.errs) != 1 || !strings.Contains(ft.errs[0], "uncaught JavaScript exception") {
		t.Fatalf("the tab's cleanup reported %q; want one uncaught exception", ft.errs)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	Close()
	os.Exit(code)
}

// Browsers share the binary's one Chromium but not their cookies or
// storage: a test signed in in one is not signed in in another. Tabs of one
// Browser share them.
func TestBrowsersKeepTheirCookiesApart(t *testing.T) {
	base := serve(t)
	one, other := New(t, Options{}), New(t, Options{})
	a, b, a2 := one.NewTab(t, 800, 480), other.NewTab(t, 800, 480), one.NewTab(t, 800, 480)
	for _, tab := range []*Tab{a, b, a2} {
		tab.Do(t, chromedp.Navigate(base+"/clean"))
	}
	a.Do(t, chromedp.Evaluate[chromedp.Void](`document.cookie = "session=one; path=/"; localStorage.setItem("k", "one")`))
	get := func(tab *Tab) string {
		s, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[string](`document.cookie + " " + localStorage.getItem("k")`))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if got := get(a2); got != "session=one one" {
		t.Errorf("another tab of the same Browser sees %q, want its cookie and storage", got)
	}
	if got := get(b); got != " null" {
		t.Errorf("another Browser sees %q, want no cookie and no storage", got)
	}
	if chromedp.FromContext(a.Ctx).Browser != chromedp.FromContext(b.Ctx).Browser {
		t.Errorf("two Browsers in two Chromiums, want the one shared")
	}
}
