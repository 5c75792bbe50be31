package browsertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// AxeVersion is the axe-core version pinned in deploy/dev/axe.
const AxeVersion = "4.14.1"

// WCAG21AA are the axe-core rule tags of WCAG 2.0 and 2.1, levels A and AA.
var WCAG21AA = []string{"wcag2a", "wcag2aa", "wcag21a", "wcag21aa"}

// AxeSource reads axe.min.js as ensure-services installed it under var/axe.
func AxeSource() (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "var", "axe", "node_modules", "axe-core")
	pkg, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return "", fmt.Errorf("browsertest: axe-core is not installed under var/axe (run `make services`): %w", err)
	}
	if !strings.Contains(string(pkg), `"version": "`+AxeVersion+`"`) {
		return "", fmt.Errorf("browsertest: var/axe holds another axe-core than %s (run `make services`)", AxeVersion)
	}
	src, err := os.ReadFile(filepath.Join(dir, "axe.min.js"))
	if err != nil {
		return "", fmt.Errorf("browsertest: %w", err)
	}
	return string(src), nil
}

// Violation is one axe-core rule that failed, with the elements that failed it.
type Violation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target         []any  `json:"target"`
		FailureSummary string `json:"failureSummary"`
		HTML           string `json:"html"`
	} `json:"nodes"`
}

// String is the violation as a line or a few for a test log.
func (v Violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %s", v.ID, v.Impact, v.Help)
	for _, n := range v.Nodes {
		fmt.Fprintf(&b, "\n    %v: %s\n      %s", n.Target, strings.ReplaceAll(n.FailureSummary, "\n", "; "), n.HTML)
	}
	return b.String()
}

type axeResult struct {
	Violations []Violation `json:"violations"`
	Passes     []struct {
		ID string `json:"id"`
	} `json:"passes"`
}

// axeSource is AxeSource read once per test binary.
var axeSource = sync.OnceValues(AxeSource)

// axeRun is the WCAG 2.1 A/AA run of axe-core on the whole document.
var axeRun = `axe.run(document, {runOnly: {type: "tag", values: ["` + strings.Join(WCAG21AA, `","`) +
	`"]}, resultTypes: ["violations"]})`

// Axe runs axe-core's WCAG 2.1 A and AA rules on the tab's current page and
// returns the violations, and how many rules passed (a page axe could not
// check at all passes none). page names the page in the errors.
//
// Every call is a full axe.run on the page as it is now; only loading
// axe-core is shared. The first call in a tab registers axe-core to be
// evaluated in every new document of the tab before the page's own
// scripts (Page.addScriptToEvaluateOnNewDocument), so each later page
// has it from the start: compiling the ~550 KB script is cheap there
// (the renderer's compilation cache), where sending and evaluating it
// with each check cost more than the check itself. A page without it
// (the tab's first, or one opened before) gets it loaded and run in
// one evaluation, so a page that reloads in between (a kiosk going back
// to its start screen) cannot lose it ("axe is not defined").
//
// Each call is bounded by Options.Axe (default [AxeTimeout]) of its own,
// not only by the tab's life: a check that does not finish in time is an
// error naming the page and the bound, and the tab works on.
func (tab *Tab) Axe(page string) (violations []Violation, passed int, err error) {
	src, err := axeSource()
	if err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(tab.Ctx, tab.axe)
	defer cancel()
	failed := func(what string, err error) error {
		if ctx.Err() != nil && tab.Ctx.Err() == nil {
			return fmt.Errorf("browsertest: axe-core on %s did not finish within %s (%s): %w", page, tab.axe, what, err)
		}
		return fmt.Errorf("browsertest: axe-core on %s: %s: %w", page, what, err)
	}
	if err := tab.preloadAxe(ctx, src); err != nil {
		return nil, 0, failed("preload", err)
	}
	res, err := chromedp.Run(ctx, chromedp.Evaluate[*axeResult](
		`typeof axe === "object" && axe !== null && axe.version === "`+AxeVersion+`" ? `+axeRun+` : null`,
		chromedp.EvalAwaitPromise))
	if err == nil && res == nil {
		res, err = chromedp.Run(ctx, chromedp.Evaluate[*axeResult](src+"\n;"+axeRun, chromedp.EvalAwaitPromise))
	}
	if err != nil {
		return nil, 0, failed("load and run", err)
	}
	if res == nil {
		return nil, 0, fmt.Errorf("browsertest: axe-core on %s returned nothing", page)
	}
	return res.Violations, len(res.Passes), nil
}

// preloadAxe has axe-core evaluated in every new document of the tab,
// once per tab.
func (tab *Tab) preloadAxe(ctx context.Context, src string) error {
	// Not tab.mu: the tab's event listener takes that one while the
	// command waits for its answer.
	tab.axeMu.Lock()
	defer tab.axeMu.Unlock()
	if tab.axePreloaded {
		return nil
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: src}); err != nil {
		return err
	}
	tab.axePreloaded = true
	return nil
}

// CheckAxe fails t with every WCAG 2.1 A/AA violation axe-core finds on the
// tab's current page; page names the page in the messages.
func (tab *Tab) CheckAxe(t testing.TB, page string) {
	t.Helper()
	vs, passed, err := tab.Axe(page)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if passed == 0 {
		t.Errorf("%s: axe-core passed no rule at all: the page was not checked", page)
	}
	for _, v := range vs {
		t.Errorf("%s: axe: %s", page, v)
	}
}
