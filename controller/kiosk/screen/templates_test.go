package screen

import (
	"context"
	"html/template"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"text/template/parse"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/config"
	"kluis/controller/engine"
	"kluis/controller/kiosk/screen/internal/escapegen"
	"kluis/controller/wire"
	"kluis/hardware"
)

// The templates kluisd executes are assets/*.html as html/template
// escapes them: escaped.tmpl must be regenerated when they change.
func TestEscapedTemplatesAreUpToDate(t *testing.T) {
	want, err := escapegen.Screen(os.DirFS("."))
	require.NoError(t, err)
	require.Equal(t, want, escapedTemplates, "escaped.tmpl is stale: run go generate ./controller/kiosk/screen")
}

// refPage is a page as html/template sees it: the methods and fields
// that are HTML return html/template's HTML type.
type refPage struct {
	*page
	Drawing template.HTML
}

func (r refPage) TN(key string) (template.HTML, error) {
	h, err := r.page.TN(key)
	return template.HTML(h), err
}

func (r refPage) Reveal() (template.HTML, error) {
	h, err := r.page.Reveal()
	return template.HTML(h), err
}

func (r refPage) Typed(pad string) (template.HTML, error) {
	h, err := r.page.Typed(pad)
	return template.HTML(h), err
}

func (r refPage) Keypad(name string, dash bool) (template.HTML, error) {
	h, err := r.page.Keypad(name, dash)
	return template.HTML(h), err
}

// hostileCatalog is the real catalogue with HTML specials in every
// text, so that every escaper has something to escape.
func hostileCatalog(t *testing.T) *Catalog {
	real, err := NewCatalog()
	require.NoError(t, err)
	h := &Catalog{texts: map[string][]string{}}
	for _, k := range real.Keys() {
		for _, l := range Langs() {
			txt, _ := real.Text(k, l)
			h.texts[k] = append(h.texts[k], txt+` <i a="1">&amp; 'x' + </i>`)
		}
	}
	return h
}

// Every page the screen serves (every state of both kinds of device, in
// every language, large or not, with and without a staff member of each
// role, and the technician's diagnostics) is what html/template makes of
// the same templates and data, byte for byte.
func TestTemplatesRenderAsHTMLTemplateDoes(t *testing.T) {
	t.Parallel() // CPU alone, nothing shared: beside the browser tests' waits
	ref := template.Must(template.New("").Funcs(template.FuncMap{
		"icon": func(tone string) template.HTML { return template.HTML(icon(tone)) },
		"list": func(s ...string) []string { return s },
	}).ParseFS(assets, "assets/*.html"))
	now := time.Now()
	until := now.Add(17 * time.Minute)
	board := 1
	states := append(Views(), engine.StateIdle, engine.StateStaff, engine.StateNeedBirthDate, "no_such_state")
	diag := engine.Diagnostics{
		Caps:    hardware.Capabilities{DoorSensor: true, ItemSensor: true},
		Boards:  []wire.BoardHealth{{Address: 0, Online: true, Errors: 3}, {Address: 1}},
		Doors:   []hardware.ChannelState{{Addr: hardware.Address{Board: 0, Channel: 0}, DoorOpen: true, ItemPresent: true}, {Addr: hardware.Address{Board: 0, Channel: 1}}},
		Backlog: 4,
		Alarms: []engine.AlarmNote{{Alarm: wire.AlarmForcedDoor, Compartment: 2, At: now},
			{Alarm: wire.AlarmBoardUnreachable, Board: &board, At: now}},
	}
	pages, n := 0, 0
	for _, kind := range []string{config.KindLocker, config.KindAutomaton} {
		for ci, cat := range []*Catalog{nil, hostileCatalog(t)} {
			src := &fakeSource{d: diag}
			s := newTestScreen(t, kind, src, cat)
			check := func(name, path string, p *page) {
				t.Helper()
				var want, got strings.Builder
				require.NoError(t, ref.ExecuteTemplate(&want, name, refPage{p, template.HTML(p.Drawing)}), path)
				require.NoError(t, s.tmpl.Execute(&got, name, p), path)
				if want.String() != got.String() {
					w, g := want.String(), got.String()
					i := 0
					for i < len(w) && i < len(g) && w[i] == g[i] {
						i++
					}
					t.Fatalf("%s %s catalogue %d %+v: differs from html/template at byte %d:\nhtml/template: %q\npagetmpl:      %q",
						kind, path, ci, src.sc, i, w[max(0, i-80):min(len(w), i+80)], g[max(0, i-80):min(len(g), i+80)])
				}
				pages++
			}
			for _, st := range states {
				for _, staff := range []struct {
					name string
					role wire.StaffRole
				}{{"", ""}, {`An <b>&"'+`, wire.RoleStaff}, {"Bo", wire.RoleTechnician}, {"Cy", wire.RoleAdmin}} {
					for _, sc := range []engine.Screen{
						{State: st, Lang: "en", Seq: 7, At: now, Staff: staff.name, StaffRole: staff.role},
						{State: st, Lang: "fr", Seq: 8, At: now.Add(-time.Hour), Compartment: 2, Staff: staff.name, StaffRole: staff.role,
							RetryAfterS: 300, Until: &until, Method: wire.Method("pin")},
						{State: st, Lang: "de", Seq: 9, At: now, Compartment: 1, Method: wire.Method("qr"), RetryAfterS: 30},
					} {
						src.sc = sc
						// Each screen in one language, large or not, taking
						// turns: every language and both sizes for every state.
						n++
						q := "lang=" + Langs()[n%len(Langs())]
						if n/len(Langs())%2 == 1 {
							q += "&large=1"
						}
						r := httptest.NewRequest(http.MethodGet, "/?"+q, nil)
						check("page", r.URL.String(), s.newPage(r))
						if staff.role == wire.RoleTechnician && sc.Seq == 7 {
							check("tech", r.URL.String(), s.techPage(context.Background(), r))
						}
					}
				}
			}
		}
	}
	t.Logf("%d pages compared", pages)
}

// Every name the templates look up is a field of the data they are given
// or a method pageMethods calls: pagetmpl finds no method by itself, so a
// template calling a method not named in templates.go would fail on the
// page, even in a branch the comparison above does not reach.
func TestEveryNameInTheTemplatesResolves(t *testing.T) {
	known := map[string]bool{}
	for _, v := range []any{page{}, view{}, langLink{}, techData{}, techBoard{}, techComp{}, techAlarm{}, engine.Screen{}} {
		rt := reflect.TypeOf(v)
		for i := 0; i < rt.NumField(); i++ {
			if rt.Field(i).IsExported() {
				known[rt.Field(i).Name] = true
			}
		}
	}
	trees, err := parse.Parse("escaped", escapedTemplates, "", "", map[string]any{
		"and": 1, "not": 1, "eq": 1, "ne": 1, "printf": 1, "icon": 1, "list": 1,
		"_html_template_htmlescaper": 1, "_html_template_attrescaper": 1, "_html_template_rcdataescaper": 1,
		"_html_template_urlescaper": 1, "_html_template_urlnormalizer": 1, "_html_template_urlfilter": 1,
	})
	require.NoError(t, err)
	names := map[string]bool{}
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n != nil {
				for _, c := range n.Nodes {
					walk(c)
				}
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.PipeNode:
			for _, c := range n.Cmds {
				for _, a := range c.Args {
					walk(a)
				}
			}
		case *parse.FieldNode:
			for _, id := range n.Ident {
				names[id] = true
			}
		case *parse.VariableNode:
			for _, id := range n.Ident[1:] {
				names[id] = true
			}
		case *parse.ChainNode:
			t.Errorf("chain %s: not supported by pagetmpl", n)
		}
	}
	for _, tr := range trees {
		walk(tr.Root)
	}
	require.NotEmpty(t, names)
	s := newTestScreen(t, config.KindLocker, &fakeSource{}, nil)
	p := s.newPage(httptest.NewRequest(http.MethodGet, "/", nil))
	for n := range names {
		_, isPageMethod, _ := pageMethods(p, n, nil)
		_, isTimeMethod, _ := pageMethods(time.Time{}, n, nil)
		require.True(t, known[n] || isPageMethod || isTimeMethod, "the templates use %q: neither a field nor a method in pageMethods", n)
	}
}
