package pagetmpl

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type item struct {
	N    int
	Name string
}

type data struct {
	Items []item
	Empty []item
	Flag  bool
	Title string
	hid   string
}

var errBoom = errors.New("boom")

func methods(recv any, name string, args []any) (any, bool, error) {
	if _, ok := recv.(*data); ok {
		switch name {
		case "Hello":
			return "hello " + args[0].(string), true, nil
		case "Fail":
			return nil, true, errBoom
		case "Safe":
			return HTML("<b>safe</b>"), true, nil
		}
	}
	return nil, false, nil
}

func run(t *testing.T, text string, d any) (string, error) {
	t.Helper()
	s, err := Parse(`{{define "t"}}`+text+`{{end}}`, Funcs{"twice": func(a []any) (any, error) { return a[0].(int) * 2, nil }}, methods)
	require.NoError(t, err)
	var b strings.Builder
	err = s.Execute(&b, "t", d)
	return b.String(), err
}

// What the screen's templates use behaves as in text/template, with the
// escapers html/template inserted.
func TestExecute(t *testing.T) {
	d := &data{Items: []item{{1, "<a>"}, {2, "b&c"}}, Flag: true, Title: `"q" + 'x'`}
	for _, tc := range []struct{ tmpl, want string }{
		{`{{range .Items}}[{{.N}} {{.Name | _html_template_htmlescaper}} {{$.Title | _html_template_attrescaper}}]{{end}}`,
			`[1 &lt;a&gt; &#34;q&#34; &#43; &#39;x&#39;][2 b&amp;c &#34;q&#34; &#43; &#39;x&#39;]`},
		{`{{range .Empty}}x{{else}}none{{end}}`, `none`},
		{`{{range $x := .Items}}{{$x.N}}{{end}}`, `12`},
		{`{{if and .Flag (eq .Title "no")}}a{{else if not .Flag}}b{{else}}c{{end}}`, `c`},
		{`{{if and .Empty .Fail}}a{{else}}short-circuit{{end}}`, `short-circuit`},
		{`{{$.Hello "x" | _html_template_htmlescaper}} {{.Safe | _html_template_htmlescaper}}`, `hello x <b>safe</b>`},
		{`{{printf "%s-%d" "a" 3}} {{twice 4}}`, `a-3 8`},
		{`<a href="{{"javascript:alert(1)" | _html_template_urlfilter | _html_template_urlnormalizer | _html_template_attrescaper}}">`, `<a href="#ZgotmplZ">`},
		{`{{"a b&c" | _html_template_urlescaper}}`, `a%20b%26c`},
	} {
		got, err := run(t, tc.tmpl, d)
		require.NoError(t, err, tc.tmpl)
		require.Equal(t, tc.want, got, tc.tmpl)
	}
}

// A method's error, an unknown field, an unexported field and HTML in an
// attribute stop the execution with an error; an unknown function does
// not parse.
func TestExecuteErrors(t *testing.T) {
	d := &data{hid: "secret"}
	_, err := run(t, `{{.Fail}}`, d)
	require.ErrorIs(t, err, errBoom)
	_, err = run(t, `{{.Nope}}`, d)
	require.ErrorContains(t, err, "can't evaluate field Nope")
	_, err = run(t, `{{.hid}}`, d)
	require.Error(t, err)
	_, err = run(t, `<p title="{{.Safe | _html_template_attrescaper}}">`, d)
	require.ErrorContains(t, err, "HTML in an attribute")
	_, err = Parse(`{{define "t"}}{{nosuch 1}}{{end}}`, nil, methods)
	require.Error(t, err)
	s, err := Parse(`{{define "t"}}x{{end}}`, nil, methods)
	require.NoError(t, err)
	require.Error(t, s.Execute(&strings.Builder{}, "other", d))
}
