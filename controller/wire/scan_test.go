package wire

import (
	"errors"
	"strings"
	"testing"
	"time"

	"kluis/hardware"
)

// fleetHeartbeat is a locker's heartbeat as kluis-bench's fleet sends it:
// two boards and 16 doors, about 1.4 KB.
func fleetHeartbeat(t testing.TB) []byte {
	h := &Heartbeat{At: time.Date(2026, 12, 7, 16, 0, 0, 123456789, time.UTC), UptimeS: 86400, Backlog: 2,
		OfflineCache: 40, CacheVersion: 7, Software: "kluisd 1.0",
		Boards: []BoardHealth{{Address: 0, Online: true, Firmware: "kb-2.1"}, {Address: 1, Online: true, Firmware: "kb-2.1"}}}
	for ch := range 16 {
		h.Doors = append(h.Doors, hardware.ChannelState{Addr: hardware.Address{Board: ch / 8, Channel: ch % 8}, Locked: true, ItemPresent: ch%3 == 0})
	}
	b, err := Encode(h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// scanEdges are payloads with objects and arrays near decodeScanned's
// edges: each must get decodeChecked's answer.
var scanEdges = []string{
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"boards":[],"doors":[]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":{"board":0,"channel":3},"locked":true}]}`,
	` { "v" : 1 , "at" : "2026-12-07T16:00:00Z" , "uptime_s" : 1 , "backlog" : 0 , "offline_cache" : 0 , "doors" : [ { "addr" : { "board" : 0 , "channel" : 3 } } ] } ` + "\n",
	// addr without a key, with a null one, null itself, not an object
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":{"board":0}}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":{"board":0,"channel":null}}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":null}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":[0,3]}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":3}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":"b0/c3"}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":{"board":0,"channel":3,"board":1}}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":{"board":0,"channel":3},"addr":{"board":1}}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":{"board":0,"\u0063hannel":3}}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"Addr":{"board":0}}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":{"Board":0,"channel":3}}]}`,
	// required keys missing or null, version, case, duplicates, escapes
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"doors":[]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":null,"doors":[]}`,
	`{"v":2,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[]}`,
	`{"v":1.0,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[]}`,
	`{"v":1e0,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[]}`,
	`{"V":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[]}`,
	`{"v":1,"V":2,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"offline_cache":null,"doors":[]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_\u0063ache":0,"doors":[]}`,
	`{"v":1,"At":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[],"extra":[1]}`,
	// values: numbers the generic reading refuses, types, strings, literals
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":{"board":0,"channel":1e400}}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1e400,"backlog":0,"offline_cache":0,"doors":[]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1e2,"backlog":0,"offline_cache":0,"doors":[]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":-1,"backlog":0,"offline_cache":0,"doors":[]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1.5,"backlog":0,"offline_cache":0,"doors":[]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":{"board":0,"channel":3},"locked":tru}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":{"board":0,"channel":3},"locked":"true"}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":{"board":0,"channel":99}}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"boards":[{"address":0,"online":true,"firmware":"a\"]}{b"}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"boards":[{"address":0,"online":true,"firmware":"\ud800"}]}`,
	"{\"v\":1,\"at\":\"2026-12-07T16:00:00Z\",\"uptime_s\":1,\"backlog\":0,\"offline_cache\":0,\"boards\":[{\"address\":0,\"firmware\":\"\xff\"}]}",
	"{\"v\":1,\"at\":\"2026-12-07T16:00:00Z\",\"uptime_s\":1,\"backlog\":0,\"offline_cache\":0,\"boards\":[{\"addr\xffess\":0}]}",
	// syntax
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[]}x`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[]}[]`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[,]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{},]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":{"board":0,"channel":3}]}`,
	`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":`,
	`[{"v":1}]`, `{"doors":[[[[]]]]}`,
	// an event with its compartment, a command with codes and settings
	`{"v":1,"id":"e1","kind":"door_opened","at":"2026-12-07T16:00:00Z","addr":{"board":0,"channel":3}}`,
	`{"v":1,"id":"e1","kind":"door_opened","at":"2026-12-07T16:00:00Z","addr":{"channel":3}}`,
	`{"v":1,"id":"c1","kind":"code_sync","issued":"2026-12-07T16:00:00Z","expires":"2026-12-07T16:05:00Z","codes":{"version":3}}`,
	`{"v":1,"id":"c1","kind":"config","issued":"2026-12-07T16:00:00Z","expires":"2026-12-07T16:05:00Z","settings":{"a":"1","a":"2"}}`,
	`{"v":1,"id":"c1","kind":"config","issued":"2026-12-07T16:00:00Z","expires":"2026-12-07T16:05:00Z","settings":{"a\u00e9":"1"}}`,
}

// deep is a heartbeat whose doors nest n arrays deep.
func deep(n int) string {
	return `{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":` +
		strings.Repeat("[", n) + strings.Repeat("]", n) + `}`
}

func TestDecodeScannedMatchesChecked(t *testing.T) {
	hb := string(fleetHeartbeat(t))
	edges := []string{hb, deep(14), deep(15), deep(16), deep(17), deep(40),
		strings.Replace(hb, `"channel":7`, `"channel":7,"channel":6`, 1),
		strings.Replace(hb, `"uptime_s":86400`, `"uptime_s":`+strings.Repeat("9", 301), 1),
		strings.Replace(hb, `"uptime_s":86400`, `"uptime_s":`+strings.Repeat("9", 19), 1),
	}
	allSameAsChecked(t, append(append(append(edges, scanEdges...), flatEdges...), strictEdges()...))
}

// A heartbeat, and any message with objects or arrays that decodes, is
// read once (decodeScanned), not by decodeChecked.
func TestDecodeScannedTaken(t *testing.T) {
	if decodeScanned(KindHeartbeat, fleetHeartbeat(t)) == nil {
		t.Error("the fleet's heartbeat is not decoded on the scanned path")
	}
	for _, m := range samples() {
		b, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		if decodeScanned(m.MessageKind(), b) == nil {
			t.Errorf("%s %s: not decoded on the scanned path", m.MessageKind(), b)
		}
	}
}

// The errors a bad heartbeat gets are decodeChecked's, naming what is
// wrong, and wrap the package's errors.
func TestDecodeHeartbeatErrorsSayWhat(t *testing.T) {
	for _, c := range []struct{ payload, says string }{
		{`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"doors":[]}`, `missing "offline_cache"`},
		{`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":{"board":0}}]}`, `"addr" without "channel"`},
		{`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":3}]}`, `"addr" is not an object`},
		{`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[],"extra":1}`, `unknown field "extra"`},
		{deep(17), `nested too deep`},
	} {
		_, err := DecodeKind(KindHeartbeat, []byte(c.payload))
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: error %v, want ErrInvalid saying %s", c.payload, err, c.says)
		}
	}
	_, err := DecodeKind(KindHeartbeat, []byte(`{"v":2,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0}`))
	if !errors.Is(err, ErrVersion) {
		t.Errorf("v 2: error %v, want ErrVersion", err)
	}
}

// BenchmarkDecodeHeartbeat: the backend's decoding of one fleet heartbeat
// (the scanned path), against BenchmarkDecodeHeartbeatChecked.
func BenchmarkDecodeHeartbeat(b *testing.B) {
	hb := fleetHeartbeat(b)
	b.SetBytes(int64(len(hb)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeKind(KindHeartbeat, hb); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeHeartbeatChecked: the same on the checked path
// (DecodeKind's only path for a heartbeat before the scanned one).
func BenchmarkDecodeHeartbeatChecked(b *testing.B) {
	hb := fleetHeartbeat(b)
	b.SetBytes(int64(len(hb)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeChecked(KindHeartbeat, hb); err != nil {
			b.Fatal(err)
		}
	}
}

// The typed decoding stores a key in the field it names whatever its case
// (encoding/json matches names case-insensitively, with Unicode's simple
// folding): an "Addr" or "ADDR" object is a compartment as "addr" is, and
// a "Codes" one the code sync, so each must carry the nested keys too,
// on every path. Before, "Addr":{"board":1} was a door event of b1/c0.
func TestNestedKeysInAnyCase(t *testing.T) {
	const ev = `{"v":1,"id":"e1","kind":"door_opened","at":"2026-12-07T16:00:00Z",`
	const hb = `{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,`
	const cmd = `{"v":1,"id":"c1","kind":"code_sync","issued":"2026-12-07T16:00:00Z","expires":"2026-12-07T16:05:00Z",`
	for _, c := range []struct {
		k       Kind
		payload string
	}{
		{KindEvent, ev + `"Addr":{"board":1}}`},
		{KindEvent, ev + `"ADDR":{"channel":3}}`},
		{KindEvent, ev + `"addr":{"board":1,"channel":3},"aDdR":{"board":0}}`},
		{KindEvent, ev + `"Addr":[1,3]}`},
		{KindHeartbeat, hb + `"doors":[{"Addr":{"board":1},"locked":true}]}`},
		{KindCommand, cmd + `"Codes":{"version":3}}`},
		{KindCommand, cmd + `"codeſ":{"version":3}}`},
		{KindCommand, cmd + `"codes":{"version":3,"full":true,"entries":[{"document_id":"d1","ADDR":{"board":1},"expires":"2026-12-08T00:00:00Z","pin_hash":"x"}]}}`},
	} {
		if m, err := DecodeKind(c.k, []byte(c.payload)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s %s: got %+v, %v; want ErrInvalid", c.k, c.payload, m, err)
		}
		sameAsChecked(t, c.k, []byte(c.payload))
	}
	// The same payloads with the nested keys all there still decode.
	for _, c := range []struct {
		k       Kind
		payload string
	}{
		{KindEvent, ev + `"Addr":{"board":1,"channel":3}}`},
		{KindHeartbeat, hb + `"doors":[{"ADDR":{"board":1,"channel":2},"locked":true}]}`},
	} {
		if _, err := DecodeKind(c.k, []byte(c.payload)); err != nil {
			t.Errorf("%s %s: %v", c.k, c.payload, err)
		}
		sameAsChecked(t, c.k, []byte(c.payload))
	}
}
