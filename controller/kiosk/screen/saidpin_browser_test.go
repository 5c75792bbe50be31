package screen_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"

	"kluis/controller/kiosk/screen"
	"kluis/deploy/dev/browsertest"
)

// A screen reader read the masked PIN as "bullet bullet bullet": the dots
// were the output's text. Now the dots are hidden from assistive
// technology and a polite status beside them says how many digits are
// typed ("3 digits entered"), in the page's language, and which only
// while the "Show digits" toggle (aria-pressed) shows them. Checked in
// Chromium's accessibility tree, in every language, for the citizen's
// and the staff PIN; axe-core stays clean; screenshots under
// var/screenshots/kiosk/800x480/<lang>/pin-said*.png.
func TestTypedPINIsSaidNotBulleted(t *testing.T) {
	if testing.Short() {
		t.Skip("browser")
	}
	t.Parallel() // its own kiosks and browser: beside the package's other browser tests, which it may wait for
	r := newRig(t, rigOptions{})
	b := browsertest.New(t, browsertest.Options{}) // until the test binary's deadline
	m := newMatrix(t)
	for i, l := range screen.Langs() {
		m.tabs = append(m.tabs, &mtab{tab: b.NewTab(t, small.w, small.h), lay: small, lang: l, folder: small.name, host: i})
	}
	m.open(r)
	m.click(`[data-act=pin]`)
	m.said("nothing typed", "pin", "pin.said.none", 0, "")
	m.keys("482")
	m.typed("the PIN masked", "pin", "•••", "false", "482")
	m.said("three digits masked", "pin", "pin.said.many", 3, "")
	m.check("pin-said", "v-pin", expect{h1: "pin.title", citizen: true})
	m.click(`#v-pin [data-act=reveal]`)
	m.typed("the PIN shown", "pin", "482", "true")
	m.said("three digits shown", "pin", "pin.said.many", 3, "4 8 2")
	m.check("pin-said-shown", "v-pin", expect{h1: "pin.title", citizen: true})
	m.click(`#v-pin [data-act=reveal]`)
	m.click(`#v-pin [data-key=del]`)
	m.click(`#v-pin [data-key=del]`)
	m.said("one digit masked again", "pin", "pin.said.one", 1, "")

	m.click(`footer [data-act=restart]`)
	m.click(`footer [data-act=staff-login]`)
	m.keys("4321")
	m.said("the staff PIN masked", "staff-pin", "pin.said.many", 4, "")
	m.check("staff-login-said", "v-staff-login", expect{h1: "staff.login.title"})
	m.click(`#v-staff-login [data-act=reveal]`)
	m.typed("the staff PIN shown", "staff-pin", "4321", "true")
	m.said("the staff PIN shown", "staff-pin", "pin.said.many", 4, "4 3 2 1")
}

// said checks in every tab what a screen reader is given of the PIN typed
// on pad: in the accessibility tree, the text of a polite live status is
// the catalogue's key with n digits (and the digits spaced, when shown),
// and no text anywhere is a masking dot.
func (m *matrix) said(what, pad, key string, n int, shown string) {
	m.t.Helper()
	m.each(what, func(mt *mtab) error {
		want, err := m.cat.Text(key, mt.lang)
		if err != nil {
			return err
		}
		want = strings.ReplaceAll(want, "{n}", fmt.Sprint(n))
		if shown != "" {
			d, err := m.cat.Text("pin.said.digits", mt.lang)
			if err != nil {
				return err
			}
			want += ". " + strings.ReplaceAll(d, "{d}", shown)
		}
		sel := jsString(`[data-say="` + pad + `"]`)
		if err := waitJS(mt, `document.querySelector(`+sel+`).textContent === `+jsString(want)); err != nil {
			got, _ := eval[string](mt, `document.querySelector(`+sel+`).textContent`)
			return fmt.Errorf("the status says %q, want %q", got, want)
		}
		nodes, err := axTree(mt)
		if err != nil {
			return err
		}
		byID := map[accessibility.NodeID]*accessibility.Node{}
		for _, nd := range nodes {
			byID[nd.NodeID] = nd
		}
		found := false
		for _, nd := range nodes {
			name := axString(nd.Name)
			if nd.Ignored || name == "" {
				continue
			}
			if strings.Contains(name, "•") {
				return fmt.Errorf("a %s in the accessibility tree reads %q", axString(nd.Role), name)
			}
			if axString(nd.Role) != "StaticText" || name != want {
				continue
			}
			for p := byID[nd.ParentID]; p != nil; p = byID[p.ParentID] {
				if axString(p.Role) == "status" && axProp(p, "live") == "polite" {
					found = true
					break
				}
			}
		}
		if !found {
			return fmt.Errorf("no polite status in the accessibility tree says %q", want)
		}
		return nil
	})
}

// axTree is the tab's whole accessibility tree.
func axTree(mt *mtab) ([]*accessibility.Node, error) {
	ctx, cancel := context.WithTimeout(mt.tab.Ctx, 30*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Action[[]*accessibility.Node](func(ctx context.Context, t *chromedp.Target) ([]*accessibility.Node, error) {
		res, err := cdp.Call(ctx, t, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
		if err != nil {
			return nil, err
		}
		return res.Nodes, nil
	}))
}

// axString is an accessibility value as a string ("" when none).
func axString(v *accessibility.Value) string {
	if v == nil || len(v.Value) == 0 {
		return ""
	}
	var s string
	if err := json.Unmarshal([]byte(v.Value), &s); err != nil {
		return string(v.Value)
	}
	return s
}

// axProp is the node's property name as a string ("" when it has none).
func axProp(nd *accessibility.Node, name string) string {
	for _, p := range nd.Properties {
		if string(p.Name) == name {
			return axString(p.Value)
		}
	}
	return ""
}
