package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// ChromiumPath is where Debian's chromium package puts the browser.
const ChromiumPath = "/usr/bin/chromium"

// Browser is a fresh browser profile (a browser context of its own:
// cookies, storage and cache apart from every other Browser) in the test
// binary's one headless Chromium, closed when the test that made it ends.
type Browser struct {
	ctx  context.Context
	step time.Duration
	axe  time.Duration
}

// Options tune [New]. The zero value is what most tests want.
type Options struct {
	// ExecPath is the browser binary; default: chromium on PATH, else
	// [ChromiumPath].
	ExecPath string
	// Timeout bounds the Browser's life (its tabs). Default: until
	// deadlineMargin before the test binary's deadline (go test -timeout),
	// or 5 minutes without one. How long a whole test takes says how
	// loaded the machine is, not whether it hangs: a step that hangs is
	// caught by StepTimeout (Do, Text) or its own wait (WaitFor,
	// WaitText), with its name.
	Timeout time.Duration
	// Step bounds one Do or Text call (a navigation, a click waiting for
	// its element, a script); default StepTimeout.
	Step time.Duration
	// Axe bounds one axe-core check (Tab.Axe, Tab.CheckAxe: loading
	// axe-core into the page and running it); default AxeTimeout.
	Axe time.Duration
}

// StepTimeout is the default of Options.Step.
const StepTimeout = 2 * time.Minute

// AxeTimeout is the default of Options.Axe: a full axe-core run on the
// largest page takes seconds on a loaded machine; a check that takes
// minutes hangs (a page whose scripts never yield, a promise that never
// settles) and fails with its page's name instead of holding the tab
// until the browser's end.
const AxeTimeout = 2 * time.Minute

// deadlineMargin is left between the browser's end and the test binary's
// deadline, for the failure to be reported and the cleanups to run.
const deadlineMargin = 30 * time.Second

// lifetime is the default of Options.Timeout for t.
func lifetime(t testing.TB) time.Duration {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if at, ok := d.Deadline(); ok {
			return max(time.Until(at)-deadlineMargin, time.Minute)
		}
	}
	return 5 * time.Minute
}

// Linger is how long the shared Chromium stays up once no Browser uses it,
// for the next test to find it running.
const Linger = 3 * time.Second

// process is a running Chromium that Browsers share: every test of a
// binary runs in one, each Browser in a browser context of its own, instead
// of each test starting (and a loaded machine waiting for) a Chromium.
type process struct {
	ctx   context.Context // the browser's chromedp context
	stop  func()          // ends the browser and removes its profile
	users int
	idle  *time.Timer
}

var (
	processMu sync.Mutex
	processes = map[string]*process{} // by ExecPath
)

// acquire returns the running Chromium at execPath, started if there is
// none (or it died), counted as used until release.
func acquire(execPath string) (*process, error) {
	processMu.Lock()
	defer processMu.Unlock()
	p := processes[execPath]
	if p != nil && p.ctx.Err() != nil {
		p.stop()
		p = nil
	}
	if p == nil {
		allocOpts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(execPath),
			chromedp.NoSandbox,
			chromedp.Flag("disable-gpu", true),
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("no-first-run", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-background-networking", true),
			// Layouts are checked at exact CSS sizes.
			chromedp.Flag("force-device-scale-factor", "1"),
			chromedp.Flag("hide-scrollbars", true),
			chromedp.Flag("lang", "en-US"),
		)
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), allocOpts...)
		bctx, cancelBrowser := chromedp.NewContext(actx)
		// Start the browser now, so a failure shows in New and not in a step.
		if err := chromedp.Do(bctx); err != nil {
			cancelBrowser()
			cancelAlloc()
			return nil, err
		}
		p = &process{ctx: bctx, stop: func() { cancelBrowser(); cancelAlloc() }}
		processes[execPath] = p
	}
	if p.idle != nil {
		p.idle.Stop()
		p.idle = nil
	}
	p.users++
	return p, nil
}

// release ends one use of p; the last one stops it after Linger unless a
// new one comes.
func release(execPath string, p *process) {
	processMu.Lock()
	defer processMu.Unlock()
	p.users--
	if p.users > 0 {
		return
	}
	p.idle = time.AfterFunc(Linger, func() {
		processMu.Lock()
		defer processMu.Unlock()
		if p.users > 0 || processes[execPath] != p {
			return
		}
		delete(processes, execPath)
		p.stop()
	})
}

// Close stops the shared Chromium now; a test binary's TestMain calls it
// after m.Run so that no browser (nor its profile directory) outlives it.
// A later New starts a new one.
func Close() {
	processMu.Lock()
	defer processMu.Unlock()
	for path, p := range processes {
		if p.idle != nil {
			p.idle.Stop()
		}
		delete(processes, path)
		p.stop()
	}
}

// New gives t a fresh browser profile in the test binary's headless
// Chromium (started by the first New). It fails t (it does not skip) when
// the browser is missing.
func New(t testing.TB, opts Options) *Browser {
	t.Helper()
	if opts.ExecPath == "" {
		if p, err := exec.LookPath("chromium"); err == nil {
			opts.ExecPath = p
		} else {
			opts.ExecPath = ChromiumPath
		}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = lifetime(t)
	}
	if opts.Step <= 0 {
		opts.Step = StepTimeout
	}
	if opts.Axe <= 0 {
		opts.Axe = AxeTimeout
	}
	if _, err := os.Stat(opts.ExecPath); err != nil {
		t.Fatalf("browsertest: no browser at %s (run `make services`, which installs Debian's chromium): %v", opts.ExecPath, err)
	}
	p, err := acquire(opts.ExecPath)
	if err != nil {
		t.Fatalf("browsertest: start %s: %v", opts.ExecPath, err)
	}
	browser := chromedp.FromContext(p.ctx).Browser
	created, err := cdp.Call(p.ctx, browser, target.CreateBrowserContext, target.CreateBrowserContextParams{})
	if err != nil {
		release(opts.ExecPath, p)
		t.Fatalf("browsertest: new browser context: %v", err)
	}
	ctx, cancelTimeout := context.WithTimeout(p.ctx, opts.Timeout)
	bctx, cancelBrowser := chromedp.NewContext(ctx, chromedp.WithExistingBrowserContext(created.BrowserContextID))
	t.Cleanup(func() {
		cancelBrowser()
		cancelTimeout()
		// Closes what tabs are left and forgets the profile.
		dctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
		defer cancel()
		if _, err := cdp.Call(dctx, browser, target.DisposeBrowserContext,
			target.DisposeBrowserContextParams{BrowserContextID: created.BrowserContextID}); err != nil && p.ctx.Err() == nil {
			t.Errorf("browsertest: dispose of the browser context: %v", err)
		}
		release(opts.ExecPath, p)
	})
	return &Browser{ctx: bctx, step: opts.Step, axe: opts.Axe}
}

// Tab is one browser tab. Ctx runs chromedp actions in it.
type Tab struct {
	// Ctx is the chromedp context of the tab.
	Ctx context.Context

	step         time.Duration
	axe          time.Duration // bounds one axe-core check
	mu           sync.Mutex
	exceptions   []string
	axeMu        sync.Mutex
	axePreloaded bool // axe-core is evaluated in every new document (Axe)
}

// NewTab opens a tab of width×height CSS pixels, closed when t ends. Uncaught
// JavaScript exceptions in the tab fail t when it ends.
func (b *Browser) NewTab(t testing.TB, width, height int64) *Tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	tab := &Tab{Ctx: ctx, step: b.step, axe: b.axe}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height)); err != nil {
		cancel()
		t.Fatalf("browsertest: new tab: %v", err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			tab.mu.Lock()
			tab.exceptions = append(tab.exceptions, exceptionText(e))
			tab.mu.Unlock()
		}
	}); err != nil {
		cancel()
		t.Fatalf("browsertest: listen: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		tab.mu.Lock()
		defer tab.mu.Unlock()
		for _, e := range tab.exceptions {
			t.Errorf("browsertest: uncaught JavaScript exception: %s", e)
		}
	})
	return tab
}

// Exceptions returns the uncaught JavaScript exceptions seen so far.
func (tab *Tab) Exceptions() []string {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return append([]string(nil), tab.exceptions...)
}

func exceptionText(e *runtime.EventExceptionThrown) string {
	d := e.ExceptionDetails
	if d == nil {
		return "unknown exception"
	}
	s := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		s += ": " + d.Exception.Description
	}
	return fmt.Sprintf("%s (%s:%d:%d)", s, d.URL, d.LineNumber, d.ColumnNumber)
}

// Do runs actions in the tab, failing t on error or when they take longer
// than Options.Step.
func (tab *Tab) Do(t testing.TB, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, tab.step)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browsertest: %v", err)
	}
}

// Text returns the visible text (innerText) of the first element matching
// the CSS selector, failing t when there is none (or after Options.Step).
func (tab *Tab) Text(t testing.TB, css string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, tab.step)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		fmt.Sprintf(`(function(){var e=document.querySelector(%s);return e?e.innerText:null})()`, jsString(css))))
	if err != nil {
		t.Fatalf("browsertest: text of %s: %v", css, err)
	}
	return s
}

// WaitText waits until the visible text of the first element matching css
// contains want, polling every 20 ms for at most timeout. It fails t with
// the last text seen.
func (tab *Tab) WaitText(t testing.TB, css, want string, timeout time.Duration) {
	t.Helper()
	expr := fmt.Sprintf(`(function(){var e=document.querySelector(%s);return e?e.innerText:""})()`, jsString(css))
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		s, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[string](expr))
		if err == nil {
			last = s
			if strings.Contains(s, want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("browsertest: %s never showed %q within %s; last text: %q (err %v)", css, want, timeout, last, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitFor polls the JavaScript boolean expression every 20 ms until it is
// true on a document whose DOMContentLoaded has been dispatched, for at
// most timeout, failing t otherwise. The browser renumbers a page's nodes
// twice: when the page comes and again once DOMContentLoaded has been
// dispatched; a node looked up in between (the page parsed, readyState
// "interactive", its deferred scripts still running) is gone by the
// time it is clicked: "Could not find node with given id" after a
// navigation by a link, a form or a reload. So the condition is only
// looked at once the page's document is complete or its navigation
// timing has DOMContentLoaded's end.
func (tab *Tab) WaitFor(t testing.TB, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	loaded := contentLoaded + " && (" + expr + "\n)"
	for {
		ok, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[bool](loaded))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("browsertest: %s not true within %s (err %v)", expr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// contentLoaded is true once the page's DOMContentLoaded has been
// dispatched (and the browser's renumbering of its nodes done, which
// follows in the same task).
const contentLoaded = `(document.readyState === "complete" || ((performance.getEntriesByType("navigation")[0] || {}).domContentLoadedEventEnd > 0))`

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Root returns the top of the repository (the directory holding go.mod),
// searched upwards from the working directory.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("browsertest: no go.mod above the working directory")
		}
		dir = parent
	}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Screenshot saves a full-page PNG of the tab as
// var/screenshots/<name>.png (name may contain slashes for folders; other
// characters are replaced) and returns its path.
func (tab *Tab) Screenshot(t testing.TB, name string) string {
	t.Helper()
	buf, err := chromedp.Run(tab.Ctx, FullPNG())
	if err != nil {
		t.Fatalf("browsertest: screenshot %s: %v", name, err)
	}
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = unsafeName.ReplaceAllString(p, "_")
	}
	path := filepath.Join(append([]string{root, "var", "screenshots"}, parts...)...) + ".png"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// FullPNG captures the whole page (beyond the viewport) as a PNG, as
// chromedp.FullScreenshot(100) does, with the browser's fast PNG encoding
// (optimizeForSpeed): the same pixels in a larger file, made in a fraction
// of the time.
func FullPNG() chromedp.Action[[]byte] {
	return func(ctx context.Context, tg *chromedp.Target) ([]byte, error) {
		yes := true
		r, err := cdp.Call(ctx, tg, page.CaptureScreenshot, page.CaptureScreenshotParams{
			CaptureBeyondViewport: &yes,
			FromSurface:           &yes,
			Format:                page.CaptureScreenshotFormatPng,
			OptimizeForSpeed:      &yes,
		})
		if err != nil {
			return nil, err
		}
		return r.Data, nil
	}
}

// ScanGap is the time between two keys of [Scan]: a keyboard-wedge
// scanner types a whole code in a few milliseconds.
const ScanGap = 5 * time.Millisecond

// Scan types keys as a keyboard-wedge scanner does, into whatever has the
// focus: each key event is stamped [ScanGap] after the one before (the
// time the key was pressed, which the page reads as the event's
// timeStamp), all of them after Scan was called and before the keys are
// sent (it waits for that span first), however long a busy machine then takes
// to hand them to the page one by one. A page that tells a scan from
// typing by the gaps between key presses sees a scan.
func Scan(keys string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		// The stamps run from now to the last key's, and the keys are sent
		// once that is past: a stamp earlier than the page's load or the
		// previous input event would be raised to it by the browser (three
		// keys stamped alike right after a navigation), one in the future
		// lowered to the moment it arrives.
		at := time.Now()
		span := time.Duration(len([]rune(keys))) * ScanGap
		select {
		case <-time.After(span):
		case <-ctx.Done():
			return ctx.Err()
		}
		at = at.Add(-ScanGap)
		for _, r := range keys {
			at = at.Add(ScanGap)
			for _, k := range kb.Encode(r) {
				k.Timestamp = input.TimeSinceEpoch(float64(at.UnixNano()) / 1e9)
				if _, err := cdp.Call(ctx, tg, input.DispatchKeyEvent, *k); err != nil {
					return fmt.Errorf("browsertest: scan: %w", err)
				}
			}
		}
		return nil
	})
}
