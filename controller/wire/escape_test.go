package wire

import (
	"errors"
	"strings"
	"testing"
)

// escapeEdges are payloads with escapes PostgreSQL's jsonb refuses, or
// nearly: each must get decodeChecked's answer on every path.
var escapeEdges = []string{
	`{"v":1,"id":"e1","kind":"alarm","alarm":"forced_door","at":"2026-12-07T16:00:00Z","addr":{"board":0,"channel":1},"detail":"\ud800"}`,
	`{"v":1,"id":"e1","kind":"alarm","alarm":"forced_door","at":"2026-12-07T16:00:00Z","addr":{"board":0,"channel":1},"detail":"\udfff x"}`,
	`{"v":1,"id":"e1","kind":"alarm","alarm":"forced_door","at":"2026-12-07T16:00:00Z","addr":{"board":0,"channel":1},"detail":"\uD800\u0041"}`,
	`{"v":1,"id":"e1","kind":"alarm","alarm":"forced_door","at":"2026-12-07T16:00:00Z","addr":{"board":0,"channel":1},"detail":"\udbff\udc00 \ud83d\ude00 \u00e9 \\ud800 \\u0000"}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"software":"kluisd \ud800"}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"boards":[{"address":0,"online":true,"firmware":"\udc00","errors":0,"reboots":0,"watchdog_relocks":0}]}`,
	`{"v":1,"state":"online","software":"\ud800\ud800"}`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y\u0000"}`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}\ud800`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y\`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y\ud8`,
}

// A string escape PostgreSQL's jsonb refuses (a UTF-16 surrogate half
// alone, \u0000) makes a payload invalid on every path: encoding/json
// read "\ud800" as U+FFFD, so an event or heartbeat holding one decoded
// and validated, then failed its INSERT at the backend every time it was
// sent (backend/devicelink's TestEscapedSurrogateHalfIsMalformed). A
// whole pair, other escapes and an escaped backslash before "u" pass.
func TestEscapesPostgreSQLRefuses(t *testing.T) {
	allSameAsChecked(t, escapeEdges)
	for i, p := range escapeEdges[:8] {
		k := []Kind{KindEvent, KindEvent, KindEvent, KindEvent, KindHeartbeat, KindHeartbeat, KindPresence, KindVerifyReq}[i]
		_, err := DecodeKind(k, []byte(p))
		if i == 3 {
			if err != nil {
				t.Errorf("%s: %v", p, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "PostgreSQL refuses") {
			t.Errorf("%s: %v, want the escape refused", p, err)
		}
	}
}
