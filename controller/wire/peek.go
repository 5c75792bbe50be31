package wire

import (
	"bytes"
	"encoding/json"
)

// PeekWithin is how far into an event payload PeekEventKind looks.
// kluisd writes "kind" third, after "v" and "id" (a UUID): within the
// first 80 bytes.
const PeekWithin = 256

// PeekEventKind reads the top-level "kind" of an event payload without
// decoding the rest: the first "kind" key's value, when it is a string
// that ends within the first PeekWithin bytes of a JSON object. Its cost
// is bounded whatever the payload, cheap enough for a budget check made
// before a message is decoded (a flood pays no more for it than for the
// check), and it proves nothing: the payload may still be invalid, or name
// another kind later (a repeated key, which Decode reads last-wins). A
// receiver that chose a budget by it checks the decoded event's kind
// against the peeked one.
func PeekEventKind(payload []byte) (EventKind, bool) {
	if len(payload) > MaxSize(KindEvent) {
		return "", false
	}
	dec := json.NewDecoder(bytes.NewReader(payload[:min(len(payload), PeekWithin)]))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", false
		}
		key, ok := t.(string)
		if !ok {
			return "", false
		}
		if key == "kind" {
			t, err := dec.Token()
			s, ok := t.(string)
			if err != nil || !ok {
				return "", false
			}
			return EventKind(s), true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", false
		}
	}
	return "", false
}
