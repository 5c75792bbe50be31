// Package jsonkeys finds a key repeated within one JSON object, compared
// as encoding/json matches names to struct fields (Unicode simple case
// folding: "role", "ROLE" and "rol\u212a"... are one name to it).
//
// encoding/json keeps the last of repeated keys, while other readers of
// the same body (a proxy, a log, a person reviewing a request, another
// parser) may keep the first: {"role":"staff","ROLE":"admin"} reads as
// staff to one and creates an admin for the other. The REST API and the
// kiosk API refuse such bodies (400) before acting on them.
package jsonkeys

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode"
)

// maxDepth is encoding/json's own bound on nesting: deeper input is
// malformed to it, so Repeated need not look further.
const maxDepth = 10000

// Repeated returns the first key found a second time within one object
// of data (at any depth), and true; "" and false when there is none or
// data is not valid JSON or nested deeper than encoding/json takes (the
// decoder says why). Run it after encoding/json decoded data without an
// error: then data is valid, and its cost is bounded by what the decoder
// already took.
func Repeated(data []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	// One set of seen names per open object; nil for an open array.
	var stack []map[string]bool
	// expectKey is true when the next string token of the innermost
	// object is a key.
	var expectKey []bool
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return "", false
		}
		if err != nil {
			return "", false
		}
		top := len(stack) - 1
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if top >= 0 && stack[top] != nil {
					expectKey[top] = true // the value of a key
				}
				var seen map[string]bool
				if d == '{' {
					seen = map[string]bool{}
				}
				if len(stack) >= maxDepth {
					return "", false
				}
				stack = append(stack, seen)
				expectKey = append(expectKey, d == '{')
			case '}', ']':
				stack, expectKey = stack[:top], expectKey[:top]
				if top-1 >= 0 && stack[top-1] != nil {
					expectKey[top-1] = true
				}
			}
			continue
		}
		if top < 0 || stack[top] == nil {
			continue // a value in an array, or a bare value
		}
		if !expectKey[top] {
			expectKey[top] = true // a scalar value; a key comes next
			continue
		}
		key, _ := tok.(string)
		f := fold(key)
		if stack[top][f] {
			return key, true
		}
		stack[top][f] = true
		expectKey[top] = false
	}
}

// fold maps s to one representative of its case-folding class: every
// rune to the smallest rune of its unicode.SimpleFold orbit, so that
// fold(a) == fold(b) exactly when strings.EqualFold(a, b) (as
// encoding/json compares names).
func fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}
