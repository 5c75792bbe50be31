package wire

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"kluis/controller/jsonkeys"
)

// Errors Decode and Encode wrap (besides ErrTopic).
var (
	// ErrVersion: "v" is missing or not Version.
	ErrVersion = errors.New("wire: unknown payload version")
	// ErrTooLarge: the payload exceeds MaxSize of its kind.
	ErrTooLarge = errors.New("wire: payload too large")
	// ErrInvalid: malformed JSON, unknown or missing field, wrong type or a
	// value out of range.
	ErrInvalid = errors.New("wire: invalid payload")
)

// MaxPayload is the largest payload of any kind (a code sync command);
// brokers are configured to refuse larger packets.
const MaxPayload = 1 << 20

// MaxSize is the largest payload of kind: 1 MiB for commands (code sync),
// 256 KiB for heartbeats (every door of 32 boards), 16 KiB otherwise.
func MaxSize(k Kind) int {
	switch k {
	case KindCommand:
		return MaxPayload
	case KindHeartbeat:
		return 256 << 10
	}
	return 16 << 10
}

// Limits of lists in payloads.
const (
	MaxCodeEntries = 4096
	MaxSettings    = 64
	MaxHeartbeat   = 32 * 48
)

// required lists the keys each kind's payload must carry (present and not
// null), besides those the typed validation checks.
var required = map[Kind][]string{
	KindPresence:  {"v", "state"},
	KindHeartbeat: {"v", "at", "uptime_s", "backlog", "offline_cache"},
	KindEvent:     {"v", "id", "kind", "at"},
	KindAck:       {"v", "ids"},
	KindCommand:   {"v", "id", "kind", "issued", "expires"},
	KindCmdResult: {"v", "id", "status", "at"},
	KindVerifyReq: {"v", "id", "at", "method"},
	KindVerifyRes: {"v", "id", "result"},
	KindStaffReq:  {"v", "id", "op", "at"},
	KindStaffRes:  {"v", "id", "op", "result"},
}

// nestedRequired lists the keys an object found under a given key must
// carry, at any depth (nestedKeys finds them).
var nestedRequired = map[string][]string{
	"addr":  {"board", "channel"},
	"codes": {"version", "full"},
}

// nestedKeys gives the keys an object under key must carry
// (nestedRequired). key is matched as encoding/json matches a field's
// name, case-insensitively with Unicode's simple folding: the typed
// decoding stores "Addr" or "ADDR" in the addr field as it does "addr",
// so such an object must carry board and channel too (else a door event
// with "Addr":{"board":1} was b1/c0's).
func nestedKeys(key string) ([]string, bool) {
	return foldLookup(nestedRequired, key)
}

// elementRequired lists the keys each element of an array found under a
// given key must carry, at any depth, each element an object: a code
// entry's addr and a heartbeat door's are values (board 0, channel 0
// when missing or null), so an entry or door without one is refused.
var elementRequired = map[string][]string{
	"entries": {"addr"},
	"doors":   {"addr"},
}

// elementKeys gives the keys each element of an array under key must
// carry (elementRequired), key matched as nestedKeys matches it.
func elementKeys(key string) ([]string, bool) {
	return foldLookup(elementRequired, key)
}

// foldLookup finds key in m as encoding/json matches a field's name.
func foldLookup(m map[string][]string, key string) ([]string, bool) {
	if keys, ok := m[key]; ok {
		return keys, true
	}
	for name, keys := range m {
		if strings.EqualFold(key, name) {
			return keys, true
		}
	}
	return nil, false
}

// Decode parses and validates a payload received on topic. It returns the
// parsed topic and the message (a pointer type, see Message). It never
// panics; every failure wraps ErrTopic, ErrVersion, ErrTooLarge or
// ErrInvalid.
func Decode(topic string, payload []byte) (Topic, Message, error) {
	t, err := ParseTopic(topic)
	if err != nil {
		return Topic{}, nil, err
	}
	m, err := DecodeKind(t.Kind, payload)
	if err != nil {
		return t, nil, err
	}
	return t, m, nil
}

// DecodeKind is Decode for a payload whose kind is known.
//
// A flat payload (an object of strings, numbers, booleans and nulls, every
// key plain and once: a verify request, a verify or staff answer) is read
// once, into its message; one with objects or arrays (a heartbeat) is
// looked at without allocating (decodeScanned: the version, the required
// and nested keys) and read once. Every payload neither path accepts goes
// through decodeChecked, which reads it twice (as generic JSON for the
// version, the required and nested keys, then into its message) and says
// what is wrong. All three accept the same payloads with the same
// message, and every error comes from decodeChecked (FuzzDecodeFlat checks
// it).
func DecodeKind(k Kind, payload []byte) (Message, error) {
	if _, bad := badEscape(payload); bad {
		return decodeChecked(k, payload) // says what is wrong
	}
	if m := decodeFlat(k, payload); m != nil {
		return m, nil
	}
	if m := decodeScanned(k, payload); m != nil {
		return m, nil
	}
	return decodeChecked(k, payload)
}

// decodeChecked is DecodeKind's full path, the one that explains what is
// wrong with a payload.
func decodeChecked(k Kind, payload []byte) (Message, error) {
	m, err := newMessage(k)
	if err != nil {
		return nil, err
	}
	if len(payload) > MaxSize(k) {
		return nil, fmt.Errorf("%s payload of %d bytes, limit %d: %w", k, len(payload), MaxSize(k), ErrTooLarge)
	}
	var raw map[string]any
	if err := json.Unmarshal(payload, &raw); err != nil {
		return nil, fmt.Errorf("%s: %v: %w", k, err, ErrInvalid)
	}
	if raw == nil {
		return nil, fmt.Errorf("%s: not a JSON object: %w", k, ErrInvalid)
	}
	if key, ok := jsonkeys.Repeated(payload); ok {
		// encoding/json keeps the last of "addr" and "Addr": ambiguous.
		return nil, fmt.Errorf("%s: key %q twice in one object (keys match ignoring case): %w", k, key, ErrInvalid)
	}
	if esc, bad := badEscape(payload); bad {
		// Read as U+FFFD or NUL here, refused by PostgreSQL's jsonb
		// where the backend keeps the payload (events, heartbeats).
		return nil, fmt.Errorf("%s: escape %q that PostgreSQL refuses (a UTF-16 surrogate half alone, or NUL): %w", k, esc, ErrInvalid)
	}
	v, ok := raw["v"].(float64)
	if !ok || v != Version {
		return nil, fmt.Errorf("%s: v=%v: %w", k, raw["v"], ErrVersion)
	}
	for _, key := range required[k] {
		if raw[key] == nil {
			return nil, fmt.Errorf("%s: missing %q: %w", k, key, ErrInvalid)
		}
	}
	if err := checkNested(raw, 0); err != nil {
		return nil, fmt.Errorf("%s: %w", k, err)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(m); err != nil {
		return nil, fmt.Errorf("%s: %v: %w", k, err, ErrInvalid)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// badEscape returns the first \u escape in payload's strings that
// encoding/json reads and PostgreSQL's jsonb refuses, and true: a UTF-16
// surrogate half not in a pair (encoding/json reads U+FFFD) and \u0000.
// kluisd and the backend never write one (encoding/json does not); the
// backend stores events and heartbeats as jsonb, where such a payload
// failed its statement each time it came. payload need not be valid JSON
// (decodeChecked asks after json.Unmarshal did); its backslashes are
// taken as escapes, which in valid JSON they are.
func badEscape(payload []byte) (string, bool) {
	for i := bytes.IndexByte(payload, '\\'); i >= 0 && i+1 < len(payload); {
		n := 2 // the escape's length
		if payload[i+1] == 'u' {
			r, ok := hex4(payload, i+2)
			switch {
			case !ok:
			case r == 0, r >= 0xdc00 && r <= 0xdfff:
				return string(payload[i : i+6]), true
			case r >= 0xd800 && r <= 0xdbff:
				if lo, ok := hex4(payload, i+8); !ok || payload[i+6] != '\\' || payload[i+7] != 'u' || lo < 0xdc00 || lo > 0xdfff {
					return string(payload[i : i+6]), true
				}
				n = 12
			default:
				n = 6
			}
		}
		j := bytes.IndexByte(payload[min(i+n, len(payload)):], '\\')
		if j < 0 {
			break
		}
		i += n + j
	}
	return "", false
}

// hex4 reads the 4 hexadecimal digits at b[i:] (ok false if there are
// not 4).
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// maxFlatKeys bounds the keys decodeFlat looks at (a message has at most
// a dozen fields).
const maxFlatKeys = 16

// flatField is one key of a flat payload and its value's JSON text.
type flatField struct{ key, val []byte }

// decodeFlat reads a flat payload once and returns its message, or nil
// when decodeChecked must decide (the payload is not flat, or it is not
// acceptable). It accepts a payload only where decodeChecked would accept
// it with the same message: the same size limit; a JSON object (the typed
// decoding checks the syntax, the rest must be white space); "v" a number
// equal to Version read as decodeChecked reads it (a float64); the
// required keys present and not null; no key decodeChecked would look
// inside (nestedRequired), no value an object or array, no key twice (in
// any case: jsonkeys.Repeated) or spelt with escapes (so that the keys are decodeChecked's map keys).
func decodeFlat(k Kind, payload []byte) Message {
	if len(payload) > MaxSize(k) {
		return nil
	}
	var buf [maxFlatKeys]flatField
	fields, ok := flatFields(payload, buf[:0])
	if !ok {
		return nil
	}
	version := false
	for i, f := range fields {
		for _, g := range fields[:i] {
			if bytes.EqualFold(f.key, g.key) {
				return nil
			}
		}
		if _, nested := nestedKeys(string(f.key)); nested && string(f.val) != "null" {
			return nil
		}
		if string(f.key) == "v" {
			v, err := strconv.ParseFloat(string(f.val), 64)
			version = err == nil && v == Version
		}
	}
	if !version {
		return nil
	}
	for _, key := range required[k] {
		present := false
		for _, f := range fields {
			if string(f.key) == key {
				present = string(f.val) != "null"
				break
			}
		}
		if !present {
			return nil
		}
	}
	return decodeKnown(k, payload, fields)
}

// fieldNames lists each kind's JSON field names, as encoding/json names
// them (a field's tag name, else its Go name); a kind whose message
// embeds a struct or skips a field ("-") is left out, and decodeKnown
// leaves it to decodeOnce.
var fieldNames = func() map[Kind][]string {
	names := map[Kind][]string{}
kinds:
	for _, k := range Kinds() {
		m, _ := newMessage(k)
		t := reflect.TypeOf(m).Elem()
		var ns []string
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous {
				continue kinds
			}
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue kinds
			}
			if name == "" {
				name = f.Name
			}
			ns = append(ns, name)
		}
		names[k] = ns
	}
	return names
}()

// decodeKnown is decodeOnce for a flat payload split into fields: when
// every key names a field of k's message as encoding/json matches names
// (ignoring case: bytes.EqualFold, as hasKeyFold), json.Unmarshal reads it as decodeOnce's Decoder
// with DisallowUnknownFields would (it refuses trailing data too), without
// the decoder and its buffer; a payload with another key, or of a kind
// without fieldNames, goes to decodeOnce.
func decodeKnown(k Kind, payload []byte, fields []flatField) Message {
	names, ok := fieldNames[k]
	if !ok {
		return decodeOnce(k, payload)
	}
	for _, f := range fields {
		if !slices.ContainsFunc(names, func(n string) bool { return bytes.EqualFold(f.key, []byte(n)) }) {
			return decodeOnce(k, payload) // refused there, as decodeChecked refuses it
		}
	}
	m, err := newMessage(k)
	if err != nil || json.Unmarshal(payload, m) != nil || m.Validate() != nil {
		return nil
	}
	return m
}

// flatFields splits a JSON object whose values are all strings, numbers,
// true, false or null into its keys and values (appended to fields); ok
// is false for anything else, for a key with an escape or a byte outside
// printable ASCII, and for more than maxFlatKeys keys. It does not
// validate the values: decodeFlat's typed decoding does.
func flatFields(p []byte, fields []flatField) (_ []flatField, ok bool) {
	i := skipSpace(p, 0)
	if i >= len(p) || p[i] != '{' {
		return nil, false
	}
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return fields, true
	}
	for {
		if i >= len(p) || p[i] != '"' || len(fields) == maxFlatKeys {
			return nil, false
		}
		start := i + 1
		for i = start; i < len(p) && p[i] != '"'; i++ {
			if p[i] == '\\' || p[i] < 0x20 || p[i] >= 0x7f {
				return nil, false
			}
		}
		if i >= len(p) {
			return nil, false
		}
		key := p[start:i]
		i = skipSpace(p, i+1)
		if i >= len(p) || p[i] != ':' {
			return nil, false
		}
		i = skipSpace(p, i+1)
		if i >= len(p) {
			return nil, false
		}
		start = i
		switch p[i] {
		case '{', '[':
			return nil, false
		case '"':
			for i++; i < len(p) && p[i] != '"'; i++ {
				if p[i] == '\\' {
					i++
				}
			}
			if i >= len(p) {
				return nil, false
			}
			i++
		default:
			for i < len(p) && p[i] != ',' && p[i] != '}' && !isSpace(p[i]) {
				i++
			}
		}
		fields = append(fields, flatField{key: key, val: p[start:i]})
		i = skipSpace(p, i)
		if i >= len(p) {
			return nil, false
		}
		switch p[i] {
		case ',':
			i = skipSpace(p, i+1)
		case '}':
			return fields, true
		default:
			return nil, false
		}
	}
}

// isSpace reports JSON's white space.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(p []byte, i int) int {
	for i < len(p) && isSpace(p[i]) {
		i++
	}
	return i
}

func jsonSpace(p []byte) bool { return skipSpace(p, 0) == len(p) }

// checkNested walks the decoded JSON and checks nestedRequired and
// elementRequired.
func checkNested(v any, depth int) error {
	if depth > 16 {
		return fmt.Errorf("nested too deep: %w", ErrInvalid)
	}
	switch x := v.(type) {
	case map[string]any:
		for key, val := range x {
			if keys, ok := nestedKeys(key); ok && val != nil {
				obj, ok := val.(map[string]any)
				if !ok {
					return fmt.Errorf("%q is not an object: %w", key, ErrInvalid)
				}
				for _, r := range keys {
					if obj[r] == nil {
						return fmt.Errorf("%q without %q: %w", key, r, ErrInvalid)
					}
				}
			}
			if err := checkNested(val, depth+1); err != nil {
				return err
			}
			if keys, ok := elementKeys(key); ok {
				if err := checkElements(key, val, keys); err != nil {
					return err
				}
			}
		}
	case []any:
		for _, val := range x {
			if err := checkNested(val, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkElements checks elementRequired's keys in each element of val, an
// array found under key (anything else is the typed decoding's to refuse).
func checkElements(key string, val any, keys []string) error {
	list, ok := val.([]any)
	if !ok {
		return nil
	}
	for _, e := range list {
		obj, ok := e.(map[string]any)
		if !ok {
			return fmt.Errorf("%q element is not an object: %w", key, ErrInvalid)
		}
		for _, r := range keys {
			if foldGet(obj, r) == nil {
				return fmt.Errorf("%q element without %q: %w", key, r, ErrInvalid)
			}
		}
	}
	return nil
}

// foldGet is obj's value under key matched as encoding/json matches a
// field's name (the typed decoding fills the field from "Addr" as from
// "addr"; jsonkeys.Repeated refused a key repeated in another case).
func foldGet(obj map[string]any, key string) any {
	if v, ok := obj[key]; ok {
		return v
	}
	for k, v := range obj {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}

// Encode sets "v" to Version, validates m and marshals it.
func Encode(m Message) ([]byte, error) {
	if m == nil {
		return nil, fmt.Errorf("nil message: %w", ErrInvalid)
	}
	m.setVersion()
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %v: %w", m.MessageKind(), err, ErrInvalid)
	}
	if len(b) > MaxSize(m.MessageKind()) {
		return nil, fmt.Errorf("%s payload of %d bytes, limit %d: %w", m.MessageKind(), len(b), MaxSize(m.MessageKind()), ErrTooLarge)
	}
	return b, nil
}

// NewID returns a fresh id for an event, command or request: a UUID
// version 7 (time-ordered, so database indexes stay compact), from now and
// crypto/rand.
func NewID(now time.Time) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	ms := uint64(now.UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	b[6] = b[6]&0x0f | 0x70
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// MaxID is the longest id (event, command, correlation, document, staff).
const MaxID = 64

// ValidID reports whether id is acceptable as an id: 1-64 characters of
// a-z, A-Z, 0-9, '-' and '_'.
func ValidID(id string) error {
	if id == "" || len(id) > MaxID {
		return fmt.Errorf("id length %d not in 1-%d: %w", len(id), MaxID, ErrInvalid)
	}
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			return fmt.Errorf("id has character %q: %w", id[i], ErrInvalid)
		}
	}
	return nil
}
