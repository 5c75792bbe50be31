package wire

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
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
// carry, at any depth.
var nestedRequired = map[string][]string{
	"addr":  {"board", "channel"},
	"codes": {"version", "full"},
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
func DecodeKind(k Kind, payload []byte) (Message, error) {
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

// checkNested walks the decoded JSON and checks nestedRequired.
func checkNested(v any, depth int) error {
	if depth > 16 {
		return fmt.Errorf("nested too deep: %w", ErrInvalid)
	}
	switch x := v.(type) {
	case map[string]any:
		for key, val := range x {
			if keys, ok := nestedRequired[key]; ok && val != nil {
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
