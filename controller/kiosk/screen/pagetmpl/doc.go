// Package pagetmpl executes the kiosk screen's HTML templates without
// text/template's executor.
//
// html/template escapes a template by rewriting its parse tree: each
// action gets the escaper of its context (text, quoted attribute, URL,
// RCDATA) as the last command of its pipeline. screen's go:generate step
// (internal/escapegen) does that at build time and writes the escaped
// templates' text; Parse reads that text with text/template/parse and
// Execute walks the trees with the same semantics as text/template for
// the subset the screen uses (if, else if, range with one variable,
// template, variables, field chains, and, not, eq, ne, printf and the
// escapers), copying html/template's escapers.
//
// Why: text/template's executor looks methods up by name
// (reflect.Value.MethodByName), and a binary that can do that must keep
// every exported method of every type it could reach through an
// interface: about 2 MB of kluisd's 10.8 MB of code, read-only data and
// pclntab, nearly all of it resident (docs/performance.md, "The binary's
// pages"). Here fields are read by name (reflect.Value.FieldByName, which
// does not stop the linker's dead-code elimination) and methods are
// called by the caller's Methods function, which names each one in Go.
package pagetmpl
