package jsonkeys

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRepeated(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		ok   bool
	}{
		{`{"a":1,"b":2}`, "", false},
		{`{"a":1,"a":2}`, "a", true},
		{`{"role":"staff","ROLE":"admin"}`, "ROLE", true},
		{`{"rol\u0065":1,"role":2}`, "role", true},
		{`{"pa\u017fsword":1,"password":2}`, "password", true}, // long s folds to s
		{`{"\u212a":1,"k":2}`, "k", true},                      // Kelvin sign folds to k
		{`{"x":{"a":1},"y":{"a":1}}`, "", false},
		{`{"x":{"a":1,"b":{"c":[{"d":1},{"d":2}]},"A":3}}`, "A", true},
		{`[{"a":1},{"a":2}]`, "", false},
		{`[{"a":1,"a":2}]`, "a", true},
		{`{"a":[1,2,{"b":1}],"b":{"a":1},"c":"a"}`, "", false},
		{`{"a":"b","b":"a"}`, "", false},
		{`{"a":{},"a":[]}`, "a", true},
		{`{"a":1,`, "", false}, // malformed: the decoder says why
		{`"a"`, "", false},
		{``, "", false},
	} {
		got, ok := Repeated([]byte(c.in))
		if got != c.want || ok != c.ok {
			t.Errorf("Repeated(%s) = %q, %t; want %q, %t", c.in, got, ok, c.want, c.ok)
		}
	}
}

// Nesting deeper than encoding/json takes is not followed (the decoder
// refuses it), so a deep body costs no more than the decoder's own walk.
func TestRepeatedStopsAtEncodingJSONsDepth(t *testing.T) {
	deep := strings.Repeat(`{"a":`, maxDepth+1) + `{"b":1,"b":2}` + strings.Repeat("}", maxDepth+2)
	if k, ok := Repeated([]byte(deep)); ok {
		t.Errorf("followed past depth %d: %q", maxDepth, k)
	}
	var v any
	if err := json.Unmarshal([]byte(deep), &v); err == nil {
		t.Error("encoding/json took the deep body: maxDepth is not its bound")
	}
	ok := strings.Repeat(`{"a":`, 100) + `{"b":1,"b":2}` + strings.Repeat("}", 101)
	if k, found := Repeated([]byte(ok)); !found || k != "b" {
		t.Errorf("Repeated at depth 101 = %q, %t", k, found)
	}
}

// fold agrees with encoding/json's matching: a field's name is matched by
// a key exactly when the two fold alike.
func TestFoldMatchesEncodingJSON(t *testing.T) {
	var v struct {
		Password string `json:"password"`
	}
	for _, k := range []string{"password", "PASSWORD", "pa\u017fsword", "Pa\u017fSword", "passworD", "pasword", "password_", "p\u0430ssword"} {
		v.Password = ""
		_ = json.Unmarshal([]byte(`{"`+k+`":"x"}`), &v)
		matched := v.Password == "x"
		if got := fold(k) == fold("password"); got != matched {
			t.Errorf("%q: fold says %t, encoding/json matched %t", k, got, matched)
		}
	}
}
