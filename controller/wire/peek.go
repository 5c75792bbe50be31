package wire

import (
	"bytes"
	"encoding/json"
)

// PeekEventKind reads the top-level "kind" of an event payload without
// decoding the rest: the first "kind" key's value, when it is a string,
// is found within MaxSize(KindEvent) bytes of a JSON object. It is cheap
// enough for a budget check made before a message is decoded (kluisd
// writes "kind" third, after "v" and "id"), and proves nothing: the
// payload may still be invalid, or name another kind later (a repeated
// key, which Decode reads last-wins). A receiver that chose a budget by
// it checks the decoded event's kind against the peeked one.
func PeekEventKind(payload []byte) (EventKind, bool) {
	if len(payload) > MaxSize(KindEvent) {
		return "", false
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
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
