package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Limits of decodeScanned's look at a payload: past them it leaves the
// payload to decodeChecked.
const (
	// maxScanKeys bounds the keys of one object (a message has at most a
	// dozen fields, a command's settings at most MaxSettings).
	maxScanKeys = MaxSettings
	// maxScanDepth is checkNested's depth: a value deeper than this is
	// refused there.
	maxScanDepth = 16
	// maxScanNumber bounds a number's text: a number without an exponent
	// and at most this long is a finite float64, as decodeChecked's
	// generic reading needs every number to be.
	maxScanNumber = 300
)

// decodeScanned is DecodeKind's path for a payload with objects or arrays
// in it (a heartbeat: boards and doors, each door with its addr; an event
// with its compartment): it reads the payload once into its message, after
// a look that allocates nothing (scanChecks) instead of decodeChecked's
// generic reading. It returns nil when decodeChecked must decide (the look
// cannot tell, or the payload is not acceptable), so that it accepts a
// payload only where decodeChecked would accept it with the same message,
// and every error still comes from decodeChecked.
func decodeScanned(k Kind, payload []byte) Message {
	if len(payload) > MaxSize(k) || !scanChecks(k, payload) {
		return nil
	}
	return decodeOnce(k, payload)
}

// decodeOnce is the typed decoding of decodeChecked, for a payload its
// checks before would pass: payload read into a message of kind k,
// unknown keys refused, nothing but white space after it, valid; nil for
// anything else.
func decodeOnce(k Kind, payload []byte) Message {
	m, err := newMessage(k)
	if err != nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(m); err != nil {
		return nil
	}
	if !jsonSpace(payload[dec.InputOffset():]) || m.Validate() != nil {
		return nil
	}
	return m
}

// scanChecks reports whether decodeChecked's checks before its typed
// decoding would pass for payload, read as valid JSON (the typed decoding
// checks the syntax; on anything else the answer does not matter, only
// that the look ends): a JSON object; "v" a number equal to Version; the
// required keys of k present and not null; every object under a
// nestedRequired key carrying its keys, not null, at any depth; each
// element of an array under an elementRequired key an object carrying its
// keys; no value
// deeper than checkNested allows. It answers false, leaving the payload
// to decodeChecked, wherever its reading could differ from a map's: a key
// twice in one object (in any case: jsonkeys.Repeated), a key with an escape or a byte outside printable
// ASCII, a number with an exponent or longer than maxScanNumber (which
// might not be a finite float64), more than maxScanKeys keys in an
// object.
func scanChecks(k Kind, p []byte) bool {
	var s scanner
	s.p, s.kind = p, k
	i := skipSpace(p, 0)
	if i >= len(p) || p[i] != '{' {
		return false
	}
	_, ok := s.object(i, 0, nil, false)
	return ok
}

// scanner walks a payload for scanChecks.
type scanner struct {
	p    []byte
	kind Kind
	// keys[:n] are the keys and values of the objects being read, the
	// innermost last.
	keys [2 * maxScanKeys]flatField
	n    int
}

// hasKey reports whether fields has key with a value other than null.
func hasKey(fields []flatField, key string) bool {
	for _, f := range fields {
		if string(f.key) == key {
			return string(f.val) != "null"
		}
	}
	return false
}

// hasKeyFold is hasKey with the key matched as encoding/json matches a
// field's name (the keys are plain ASCII, none repeated in another case).
func hasKeyFold(fields []flatField, key string) bool {
	for _, f := range fields {
		if bytes.EqualFold(f.key, []byte(key)) {
			return string(f.val) != "null"
		}
	}
	return false
}

// value reads the value at p[i] (i past any white space), at depth
// (checkNested's), and returns the index after it.
func (s *scanner) value(i, depth int) (int, bool) {
	p := s.p
	if depth > maxScanDepth || i >= len(p) {
		return 0, false
	}
	switch c := p[i]; {
	case c == '{':
		return s.object(i, depth, nil, false)
	case c == '[':
		return s.array(i, depth, nil)
	case c == '"':
		for i++; i < len(p) && p[i] != '"'; i++ {
			if p[i] == '\\' {
				i++
			}
		}
		if i >= len(p) {
			return 0, false
		}
		return i + 1, true
	case c == '-' || c >= '0' && c <= '9':
		start := i
		for ; i < len(p) && p[i] != ',' && p[i] != '}' && p[i] != ']' && !isSpace(p[i]); i++ {
			if p[i] == 'e' || p[i] == 'E' {
				return 0, false
			}
		}
		return i, i-start <= maxScanNumber
	}
	// true, false or null (the typed decoding checks which).
	start := i
	for i < len(p) && p[i] != ',' && p[i] != '}' && p[i] != ']' && !isSpace(p[i]) {
		i++
	}
	return i, i > start
}

// array reads the array at p[i] ('[') at depth; with need, each element
// must be an object carrying need's keys (elementRequired).
func (s *scanner) array(i, depth int, need []string) (int, bool) {
	p := s.p
	if depth > maxScanDepth {
		return 0, false
	}
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == ']' {
		return i + 1, true
	}
	for {
		var ok bool
		if need == nil {
			i, ok = s.value(i, depth+1)
		} else if i < len(p) && p[i] == '{' {
			i, ok = s.object(i, depth+1, need, true)
		}
		if !ok {
			return 0, false
		}
		i = skipSpace(p, i)
		if i >= len(p) {
			return 0, false
		}
		switch p[i] {
		case ',':
			i = skipSpace(p, i+1)
		case ']':
			return i + 1, true
		default:
			return 0, false
		}
	}
}

// object reads the object at p[i] ('{') at depth: its keys plain and
// once, the keys need not null (those of the nestedRequired key it is
// under), under a nestedRequired key an object with that key's keys (or
// null), and at depth 0 (the payload) "v" Version and the kind's required
// keys not null.
func (s *scanner) object(i, depth int, need []string, fold bool) (int, bool) {
	p := s.p
	if depth > maxScanDepth {
		return 0, false
	}
	base := s.n
	defer func() { s.n = base }()
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		i++
	} else {
		for {
			if i >= len(p) || p[i] != '"' || s.n-base == maxScanKeys || s.n == len(s.keys) {
				return 0, false
			}
			start := i + 1
			for i = start; i < len(p) && p[i] != '"'; i++ {
				if p[i] == '\\' || p[i] < 0x20 || p[i] >= 0x7f {
					return 0, false
				}
			}
			if i >= len(p) {
				return 0, false
			}
			key := p[start:i]
			for _, f := range s.keys[base:s.n] {
				if bytes.EqualFold(f.key, key) {
					return 0, false
				}
			}
			i = skipSpace(p, i+1)
			if i >= len(p) || p[i] != ':' {
				return 0, false
			}
			i = skipSpace(p, i+1)
			valStart := i
			var ok bool
			if keys, nested := nestedKeys(string(key)); nested && i < len(p) && p[i] == '{' {
				i, ok = s.object(i, depth+1, keys, false)
			} else if nested && i < len(p) && p[i] != 'n' {
				return 0, false // not an object, not null
			} else if elems, isList := elementKeys(string(key)); isList && i < len(p) && p[i] == '[' {
				i, ok = s.array(i, depth+1, elems)
			} else {
				i, ok = s.value(i, depth+1)
			}
			if !ok {
				return 0, false
			}
			s.keys[s.n] = flatField{key: key, val: p[valStart:i]}
			s.n++
			i = skipSpace(p, i)
			if i >= len(p) {
				return 0, false
			}
			if p[i] == '}' {
				i++
				break
			}
			if p[i] != ',' {
				return 0, false
			}
			i = skipSpace(p, i+1)
		}
	}
	fields := s.keys[base:s.n]
	for _, r := range need {
		if fold && !hasKeyFold(fields, r) || !fold && !hasKey(fields, r) {
			return 0, false
		}
	}
	if depth == 0 {
		version := false
		for _, f := range fields {
			if string(f.key) == "v" {
				v, err := strconv.ParseFloat(string(f.val), 64)
				version = err == nil && v == Version
			}
		}
		if !version {
			return 0, false
		}
		for _, r := range required[s.kind] {
			if !hasKey(fields, r) {
				return 0, false
			}
		}
	}
	return i, true
}
