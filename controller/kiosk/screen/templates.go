package screen

import (
	"fmt"
	"time"

	"kluis/controller/kiosk/screen/pagetmpl"
)

// parseTemplates parses the escaped templates with the functions and the
// methods they call: pagetmpl calls methods only through pageMethods, so
// a method the templates use must be named there (the tests render every
// page and compare it with html/template's).
func parseTemplates() (*pagetmpl.Set, error) {
	funcs := pagetmpl.Funcs{
		"icon": func(a []any) (any, error) {
			s, err := argString("icon", a, 0, 1)
			return icon(s), err
		},
		"list": func(a []any) (any, error) {
			out := make([]string, len(a))
			for i := range a {
				var err error
				if out[i], err = argString("list", a, i, len(a)); err != nil {
					return nil, err
				}
			}
			return out, nil
		},
	}
	return pagetmpl.Parse(escapedTemplates, funcs, pageMethods)
}

// pageMethods calls the methods the templates use.
func pageMethods(recv any, name string, a []any) (any, bool, error) {
	switch r := recv.(type) {
	case *page:
		var (
			v   any
			err error
		)
		switch name {
		case "T", "TN", "Tpl", "Msg", "Allowed", "Typed":
			var k string
			if k, err = argString(name, a, 0, 1); err != nil {
				return nil, true, err
			}
			switch name {
			case "T":
				v, err = r.T(k)
			case "TN":
				v, err = r.TN(k)
			case "Tpl":
				v, err = r.Tpl(k)
			case "Msg":
				v, err = r.Msg(k)
			case "Allowed":
				v = r.Allowed(k)
			case "Typed":
				v, err = r.Typed(k)
			}
		case "Fill":
			var k string
			if k, err = argString(name, a, 0, 2); err != nil {
				return nil, true, err
			}
			n, ok := a[1].(int)
			if !ok {
				return nil, true, fmt.Errorf("screen: %s wants an int, not %T", name, a[1])
			}
			v, err = r.Fill(k, n)
		case "Reveal":
			if len(a) != 0 {
				return nil, true, fmt.Errorf("screen: %s wants no arguments", name)
			}
			v, err = r.Reveal()
		case "Keypad":
			var k string
			if k, err = argString(name, a, 0, 2); err != nil {
				return nil, true, err
			}
			dash, ok := a[1].(bool)
			if !ok {
				return nil, true, fmt.Errorf("screen: %s wants a bool, not %T", name, a[1])
			}
			v, err = r.Keypad(k, dash)
		default:
			return nil, false, nil
		}
		return v, true, err
	case time.Time:
		if name == "UnixMilli" && len(a) == 0 {
			return r.UnixMilli(), true, nil
		}
	}
	return nil, false, nil
}

// argString is a[i] as a string, with len(a) == n.
func argString(name string, a []any, i, n int) (string, error) {
	if len(a) != n {
		return "", fmt.Errorf("screen: %s wants %d arguments, not %d", name, n, len(a))
	}
	s, ok := a[i].(string)
	if !ok {
		return "", fmt.Errorf("screen: %s wants a string, not %T", name, a[i])
	}
	return s, nil
}
