package pagetmpl

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/template/parse"
)

// Methods calls the method name of recv with args (the pipeline's
// arguments, evaluated), or reports ok false when recv has no such
// method; a method's error stops the execution, as in text/template.
type Methods func(recv any, name string, args []any) (result any, ok bool, err error)

// Funcs are functions the templates call by name besides the builtins
// (and, not, eq, ne, printf) and the escapers.
type Funcs map[string]func(args []any) (any, error)

// Set is a set of parsed, already escaped templates.
type Set struct {
	trees   map[string]*parse.Tree
	funcs   Funcs
	methods Methods
}

var builtins = []string{"and", "not", "eq", "ne", "printf"}

// Parse parses escaped, the text of templates escaped by html/template
// (internal/escapegen), with funcs and methods for their execution.
func Parse(escaped string, funcs Funcs, methods Methods) (*Set, error) {
	known := map[string]any{}
	for _, n := range builtins {
		known[n] = true
	}
	for n := range escapers {
		known[n] = true
	}
	for n := range funcs {
		known[n] = true
	}
	trees, err := parse.Parse("escaped", escaped, "", "", known)
	if err != nil {
		return nil, fmt.Errorf("pagetmpl: %w", err)
	}
	return &Set{trees: trees, funcs: funcs, methods: methods}, nil
}

// Execute writes the template name applied to data to w.
func (s *Set) Execute(w io.Writer, name string, data any) error {
	t := s.trees[name]
	if t == nil || t.Root == nil {
		return fmt.Errorf("pagetmpl: no template %q", name)
	}
	st := &state{set: s, w: w, vars: []variable{{"$", reflect.ValueOf(data)}}}
	return st.walk(reflect.ValueOf(data), t.Root)
}

type variable struct {
	name  string
	value reflect.Value
}

type state struct {
	set  *Set
	w    io.Writer
	vars []variable
}

func (s *state) mark() int { return len(s.vars) }
func (s *state) pop(m int) { s.vars = s.vars[:m] }
func (s *state) push(n string, v reflect.Value) {
	s.vars = append(s.vars, variable{n, v})
}

func (s *state) varValue(name string) (reflect.Value, error) {
	for i := len(s.vars) - 1; i >= 0; i-- {
		if s.vars[i].name == name {
			return s.vars[i].value, nil
		}
	}
	return reflect.Value{}, fmt.Errorf("pagetmpl: undefined variable %s", name)
}

func (s *state) setVar(name string, v reflect.Value) error {
	for i := len(s.vars) - 1; i >= 0; i-- {
		if s.vars[i].name == name {
			s.vars[i].value = v
			return nil
		}
	}
	return fmt.Errorf("pagetmpl: undefined variable %s", name)
}

func (s *state) walk(dot reflect.Value, node parse.Node) error {
	switch n := node.(type) {
	case *parse.ListNode:
		for _, c := range n.Nodes {
			if err := s.walk(dot, c); err != nil {
				return err
			}
		}
		return nil
	case *parse.TextNode:
		_, err := s.w.Write(n.Text)
		return err
	case *parse.CommentNode:
		return nil
	case *parse.ActionNode:
		v, err := s.evalPipeline(dot, n.Pipe)
		if err != nil {
			return err
		}
		if len(n.Pipe.Decl) == 0 {
			return s.print(v)
		}
		return nil
	case *parse.IfNode:
		m := s.mark()
		defer s.pop(m)
		v, err := s.evalPipeline(dot, n.Pipe)
		if err != nil {
			return err
		}
		if truth(v) {
			return s.walk(dot, n.List)
		}
		if n.ElseList != nil {
			return s.walk(dot, n.ElseList)
		}
		return nil
	case *parse.RangeNode:
		return s.walkRange(dot, n)
	case *parse.TemplateNode:
		t := s.set.trees[n.Name]
		if t == nil {
			return fmt.Errorf("pagetmpl: no template %q", n.Name)
		}
		v := dot
		if n.Pipe != nil {
			var err error
			if v, err = s.evalPipeline(dot, n.Pipe); err != nil {
				return err
			}
		}
		inner := &state{set: s.set, w: s.w, vars: []variable{{"$", v}}}
		return inner.walk(v, t.Root)
	}
	return fmt.Errorf("pagetmpl: %s not supported", node)
}

func (s *state) walkRange(dot reflect.Value, n *parse.RangeNode) error {
	m := s.mark()
	defer s.pop(m)
	v, err := s.evalPipeline(dot, n.Pipe)
	if err != nil {
		return err
	}
	// evalPipeline declared the range's variable; it is set per element.
	m2 := s.mark()
	v = indirect1(v)
	if len(n.Pipe.Decl) > 1 {
		return errors.New("pagetmpl: range with two variables not supported")
	}
	switch v.Kind() {
	case reflect.Slice, reflect.Array:
		if v.Len() == 0 {
			break
		}
		for i := 0; i < v.Len(); i++ {
			e := v.Index(i)
			if len(n.Pipe.Decl) == 1 {
				if n.Pipe.IsAssign {
					if err := s.setVar(n.Pipe.Decl[0].Ident[0], e); err != nil {
						return err
					}
				} else {
					s.vars[m2-1].value = e
				}
			}
			if err := s.walk(e, n.List); err != nil {
				return err
			}
			s.pop(m2)
		}
		return nil
	case reflect.Invalid:
	default:
		return fmt.Errorf("pagetmpl: range over %s", v.Type())
	}
	if n.ElseList != nil {
		return s.walk(dot, n.ElseList)
	}
	return nil
}

func (s *state) evalPipeline(dot reflect.Value, pipe *parse.PipeNode) (reflect.Value, error) {
	var v reflect.Value
	for _, c := range pipe.Cmds {
		var err error
		if v, err = s.evalCommand(dot, c, v); err != nil {
			return reflect.Value{}, err
		}
		if v.Kind() == reflect.Interface && v.Type().NumMethod() == 0 {
			v = reflect.ValueOf(v.Interface())
		}
	}
	for _, d := range pipe.Decl {
		if pipe.IsAssign {
			if err := s.setVar(d.Ident[0], v); err != nil {
				return reflect.Value{}, err
			}
		} else {
			s.push(d.Ident[0], v)
		}
	}
	return v, nil
}

func (s *state) evalCommand(dot reflect.Value, c *parse.CommandNode, final reflect.Value) (reflect.Value, error) {
	switch n := c.Args[0].(type) {
	case *parse.FieldNode:
		return s.evalFieldChain(dot, dot, n.Ident, c.Args, final)
	case *parse.VariableNode:
		v, err := s.varValue(n.Ident[0])
		if err != nil || len(n.Ident) == 1 {
			return v, err
		}
		return s.evalFieldChain(dot, v, n.Ident[1:], c.Args, final)
	case *parse.IdentifierNode:
		return s.evalFunction(dot, n.Ident, c.Args, final)
	case *parse.PipeNode:
		if len(c.Args) > 1 || final.IsValid() {
			return reflect.Value{}, fmt.Errorf("pagetmpl: can't give argument to non-function %s", n)
		}
		return s.evalPipeline(dot, n)
	}
	if len(c.Args) > 1 || final.IsValid() {
		return reflect.Value{}, fmt.Errorf("pagetmpl: can't give argument to non-function %s", c.Args[0])
	}
	return s.evalArg(dot, c.Args[0])
}

func (s *state) evalArg(dot reflect.Value, n parse.Node) (reflect.Value, error) {
	switch n := n.(type) {
	case *parse.DotNode:
		return dot, nil
	case *parse.StringNode:
		return reflect.ValueOf(n.Text), nil
	case *parse.BoolNode:
		return reflect.ValueOf(n.True), nil
	case *parse.NumberNode:
		if n.IsInt && int64(int(n.Int64)) == n.Int64 {
			return reflect.ValueOf(int(n.Int64)), nil
		}
		return reflect.Value{}, fmt.Errorf("pagetmpl: number %s not supported", n)
	case *parse.FieldNode:
		return s.evalFieldChain(dot, dot, n.Ident, []parse.Node{n}, reflect.Value{})
	case *parse.VariableNode:
		v, err := s.varValue(n.Ident[0])
		if err != nil || len(n.Ident) == 1 {
			return v, err
		}
		return s.evalFieldChain(dot, v, n.Ident[1:], []parse.Node{n}, reflect.Value{})
	case *parse.PipeNode:
		return s.evalPipeline(dot, n)
	case *parse.IdentifierNode:
		return s.evalFunction(dot, n.Ident, []parse.Node{n}, reflect.Value{})
	}
	return reflect.Value{}, fmt.Errorf("pagetmpl: argument %s not supported", n)
}

// evalArgs evaluates a command's arguments after its first word, and
// final (the previous command's value in a pipeline) last.
func (s *state) evalArgs(dot reflect.Value, args []parse.Node, final reflect.Value) ([]reflect.Value, error) {
	var out []reflect.Value
	for _, a := range args[1:] {
		v, err := s.evalArg(dot, a)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if final.IsValid() {
		out = append(out, final)
	}
	return out, nil
}

func (s *state) evalFieldChain(dot, recv reflect.Value, idents []string, args []parse.Node, final reflect.Value) (reflect.Value, error) {
	for i := 0; i < len(idents)-1; i++ {
		var err error
		if recv, err = s.evalField(dot, idents[i], nil, reflect.Value{}, recv); err != nil {
			return reflect.Value{}, err
		}
	}
	return s.evalField(dot, idents[len(idents)-1], args, final, recv)
}

func (s *state) evalField(dot reflect.Value, name string, args []parse.Node, final, recv reflect.Value) (reflect.Value, error) {
	if !recv.IsValid() {
		return reflect.Value{}, fmt.Errorf("pagetmpl: nil data; no entry for key %q", name)
	}
	if recv.Kind() == reflect.Interface && !recv.IsNil() {
		recv = recv.Elem()
	}
	var argv []reflect.Value
	if len(args) > 1 || final.IsValid() {
		var err error
		if argv, err = s.evalArgs(dot, args, final); err != nil {
			return reflect.Value{}, err
		}
	}
	if s.set.methods != nil && recv.CanInterface() {
		in := make([]any, len(argv))
		for i, a := range argv {
			in[i] = valueInterface(a)
		}
		r, ok, err := s.set.methods(recv.Interface(), name, in)
		if err != nil {
			return reflect.Value{}, err
		}
		if ok {
			return reflect.ValueOf(r), nil
		}
	}
	v := recv
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return reflect.Value{}, fmt.Errorf("pagetmpl: nil pointer evaluating %s.%s", recv.Type(), name)
		}
		v = v.Elem()
	}
	if v.Kind() == reflect.Struct {
		if f, ok := v.Type().FieldByName(name); ok && f.IsExported() {
			if len(argv) > 0 {
				return reflect.Value{}, fmt.Errorf("pagetmpl: %s has arguments but cannot be invoked as function", name)
			}
			return v.FieldByIndex(f.Index), nil
		}
	}
	return reflect.Value{}, fmt.Errorf("pagetmpl: can't evaluate field %s in type %s", name, recv.Type())
}

func (s *state) evalFunction(dot reflect.Value, name string, args []parse.Node, final reflect.Value) (reflect.Value, error) {
	switch name {
	case "and":
		// Short-circuit, as text/template: the first false argument or the last.
		var v reflect.Value
		for _, a := range args[1:] {
			var err error
			if v, err = s.evalArg(dot, a); err != nil {
				return reflect.Value{}, err
			}
			if !truth(v) {
				return v, nil
			}
		}
		if final.IsValid() {
			v = final
		}
		return v, nil
	}
	argv, err := s.evalArgs(dot, args, final)
	if err != nil {
		return reflect.Value{}, err
	}
	in := make([]any, len(argv))
	for i, a := range argv {
		in[i] = valueInterface(a)
	}
	switch name {
	case "not":
		if len(argv) != 1 {
			return reflect.Value{}, errors.New("pagetmpl: not wants one argument")
		}
		return reflect.ValueOf(!truth(argv[0])), nil
	case "eq", "ne":
		if len(argv) != 2 {
			return reflect.Value{}, fmt.Errorf("pagetmpl: %s wants two arguments", name)
		}
		eq, err := equal(argv[0], argv[1])
		if err != nil {
			return reflect.Value{}, err
		}
		return reflect.ValueOf(eq == (name == "eq")), nil
	case "printf":
		if len(in) == 0 {
			return reflect.Value{}, errors.New("pagetmpl: printf wants a format")
		}
		f, ok := in[0].(string)
		if !ok {
			return reflect.Value{}, errors.New("pagetmpl: printf's format is not a string")
		}
		return reflect.ValueOf(fmt.Sprintf(f, in[1:]...)), nil
	}
	if e, ok := escapers[name]; ok {
		r, err := e(in...)
		return reflect.ValueOf(r), err
	}
	if f, ok := s.set.funcs[name]; ok {
		r, err := f(in)
		return reflect.ValueOf(r), err
	}
	return reflect.Value{}, fmt.Errorf("pagetmpl: function %q not defined", name)
}

func valueInterface(v reflect.Value) any {
	if !v.IsValid() || !v.CanInterface() {
		return nil
	}
	return v.Interface()
}

func indirect1(v reflect.Value) reflect.Value {
	for v.IsValid() && (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) {
		if v.IsNil() {
			return reflect.Value{}
		}
		v = v.Elem()
	}
	return v
}

// truth is text/template's: false, 0, "", a nil or empty slice, map,
// pointer or interface are false; a struct is true.
func truth(v reflect.Value) bool {
	if !v.IsValid() {
		return false
	}
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() > 0
	case reflect.Bool:
		return v.Bool()
	case reflect.Complex64, reflect.Complex128:
		return v.Complex() != 0
	case reflect.Chan, reflect.Func, reflect.Pointer, reflect.Interface:
		return !v.IsNil()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() != 0
	case reflect.Float32, reflect.Float64:
		return v.Float() != 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() != 0
	case reflect.Struct:
		return true
	}
	return false
}

// equal compares basic values as text/template's eq does for the kinds
// the screen compares: booleans, integers and strings.
func equal(a, b reflect.Value) (bool, error) {
	a, b = indirectInterface(a), indirectInterface(b)
	if !a.IsValid() || !b.IsValid() {
		return false, errors.New("pagetmpl: eq of a missing value")
	}
	switch {
	case isInt(a) && isInt(b):
		return a.Int() == b.Int(), nil
	case a.Kind() == reflect.String && b.Kind() == reflect.String:
		return a.String() == b.String(), nil
	case a.Kind() == reflect.Bool && b.Kind() == reflect.Bool:
		return a.Bool() == b.Bool(), nil
	}
	return false, fmt.Errorf("pagetmpl: incompatible types for comparison: %s and %s", a.Type(), b.Type())
}

func isInt(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return true
	}
	return false
}

func indirectInterface(v reflect.Value) reflect.Value {
	if v.Kind() == reflect.Interface && !v.IsNil() {
		return v.Elem()
	}
	return v
}

// print writes v as text/template does: fmt's default format, pointers
// followed.
func (s *state) print(v reflect.Value) error {
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if !v.IsValid() {
		_, err := io.WriteString(s.w, "<no value>")
		return err
	}
	if v.Kind() == reflect.String {
		_, err := io.WriteString(s.w, v.String())
		return err
	}
	var b strings.Builder
	fmt.Fprint(&b, v.Interface())
	_, err := io.WriteString(s.w, b.String())
	return err
}
