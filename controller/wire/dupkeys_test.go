package wire

import (
	"errors"
	"strings"
	"testing"
)

// A key repeated in one object, in the same or another case (encoding/json
// matches names case-insensitively, the last one winning), is refused on
// every path with an error naming it: before, an event with
// "addr":{...},"Addr":null decoded with no compartment.
func TestRepeatedKeysRefused(t *testing.T) {
	for _, c := range repeatedKeys {
		payload := expandRepeated(c.payload)
		m, err := DecodeKind(c.k, []byte(payload))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s %s: got %+v, %v; want ErrInvalid saying %s", c.k, payload, m, err, c.says)
		}
		sameAsChecked(t, c.k, []byte(payload))
	}
}

// expandRepeated spells out repeatedKeys' abbreviations.
func expandRepeated(p string) string {
	const ev = `{"v":1,"id":"e1","kind":"door_opened","at":"2026-12-07T16:00:00Z",`
	const hb = `{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,`
	const cmd = `{"v":1,"id":"c1","kind":"code_sync","issued":"2026-12-07T16:00:00Z","expires":"2026-12-07T16:05:00Z",`
	const req = `{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y",`
	return strings.NewReplacer("EV,", ev, "HB,", hb, "CMD,", cmd, "REQ,", req).Replace(p)
}

// strictEdges are this file's payloads, for the paths' agreement
// (TestDecodeScannedMatchesChecked, FuzzDecodeFlat's seeds).
func strictEdges() []string {
	var edges []string
	for _, c := range repeatedKeys {
		edges = append(edges, expandRepeated(c.payload))
	}
	for _, c := range missingAddr {
		edges = append(edges, c.payload)
	}
	return append(edges,
		`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[null]}`,
		`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"Doors":[{"addr":{"board":0,"channel":1}},1]}`,
		`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":{"addr":{"board":0,"channel":1}}}`,
		`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":null}`,
		`{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":{"board":0,"channel":1},"locked":true,"door_open":false,"item_present":true}],"boards":[{"address":0,"ADDRESS":1}]}`,
		`{"v":1,"id":"c1","kind":"config","issued":"2026-12-07T16:00:00Z","expires":"2026-12-07T16:05:00Z","settings":{"a":"1","A":"2"}}`,
		`{"v":1,"id":"c1","kind":"config","issued":"2026-12-07T16:00:00Z","expires":"2026-12-07T16:05:00Z","settings":{"k":"1","\u212a":"2"}}`,
	)
}

var repeatedKeys = []struct {
	k             Kind
	payload, says string
}{
	{KindEvent, `EV,"addr":{"board":1,"channel":3},"Addr":null}`, `"Addr"`},
	{KindEvent, `EV,"Addr":null,"addr":{"board":1,"channel":3}}`, `"addr"`},
	{KindEvent, `EV,"addr":{"board":1,"channel":3},"ADDR":{"board":2,"channel":4}}`, `"ADDR"`},
	{KindEvent, `EV,"addr":{"board":1,"channel":3,"Channel":4}}`, `"Channel"`},
	{KindEvent, `EV,"addr":{"board":1,"channel":3},"document_id":"d1","Document_ID":"d2"}`, `"Document_ID"`},
	{KindEvent, `EV,"addr":{"board":1,"channel":3},"detail":"a","detail":"b"}`, `"detail"`},
	{KindEvent, `EV,"addr":{"board":1,"channel":3},"ſtaff_id":"a","staff_id":"b"}`, `"staff_id"`},
	{KindEvent, `{"V":1,"v":1,"id":"e1","kind":"door_opened","at":"2026-12-07T16:00:00Z","addr":{"board":1,"channel":3}}`, `"v"`},
	{KindHeartbeat, `HB,"doors":[{"addr":{"board":0,"channel":3},"locked":true,"Locked":false}]}`, `"Locked"`},
	{KindHeartbeat, `HB,"Doors":[],"doors":[{"addr":{"board":0,"channel":3}}]}`, `"doors"`},
	{KindCommand, `CMD,"codes":{"version":3,"full":true,"Full":false,"entries":[]}}`, `"Full"`},
	{KindCommand, `CMD,"codes":{"version":3,"full":true,"entries":[{"document_id":"d1","addr":{"board":1,"channel":2},"Addr":{"board":0,"channel":0},"expires":"2026-12-08T00:00:00Z","pin_hash":"x"}]}}`, `"Addr"`},
	{KindCommand, `{"v":1,"id":"c1","kind":"config","issued":"2026-12-07T16:00:00Z","expires":"2026-12-07T16:05:00Z","settings":{"a":"1","a":"2"}}`, `"a"`},
	{KindVerifyReq, `REQ,"Token":"K1.a.b"}`, `"Token"`},
	{KindVerifyReq, `REQ,"token":"K1.a.b"}`, `"token"`},
}

// A code entry with its addr null or missing is refused (CodeEntry.Addr
// is a value: before, it was board 0, channel 0), as is a heartbeat's
// door without one, and an entry or door that is null (the zero value),
// on every path.
func TestEntryWithoutAddrRefused(t *testing.T) {
	const cmd = `{"v":1,"id":"c1","kind":"code_sync","issued":"2026-12-07T16:00:00Z","expires":"2026-12-07T16:05:00Z","codes":{"version":3,"full":true,"entries":[`
	const hb = `{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[`
	for _, c := range missingAddr {
		m, err := DecodeKind(c.k, []byte(c.payload))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `without "addr"`) {
			t.Errorf("%s %s: got %+v, %v; want ErrInvalid saying without \"addr\"", c.k, c.payload, m, err)
		}
		sameAsChecked(t, c.k, []byte(c.payload))
	}
	for _, c := range []struct {
		k       Kind
		payload string
	}{
		{KindCommand, cmd + `null]}}`},
		{KindHeartbeat, hb + `null]}`},
		{KindHeartbeat, hb + `{"addr":{"board":0,"channel":1}},null]}`},
	} {
		m, err := DecodeKind(c.k, []byte(c.payload))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `element is not an object`) {
			t.Errorf("%s %s: got %+v, %v; want ErrInvalid saying element is not an object", c.k, c.payload, m, err)
		}
		sameAsChecked(t, c.k, []byte(c.payload))
	}
	for _, c := range []struct {
		k       Kind
		payload string
	}{
		{KindCommand, cmd + `{"document_id":"d1","addr":{"board":0,"channel":0},"expires":"2026-12-08T00:00:00Z","pin_hash":"x"}]}}`},
		{KindCommand, cmd + `{"document_id":"d1","Addr":{"board":0,"channel":0},"expires":"2026-12-08T00:00:00Z","pin_hash":"x"}]}}`},
		{KindHeartbeat, hb + `{"addr":{"board":0,"channel":0},"locked":true}]}`},
	} {
		if _, err := DecodeKind(c.k, []byte(c.payload)); err != nil {
			t.Errorf("%s %s: %v", c.k, c.payload, err)
		}
		sameAsChecked(t, c.k, []byte(c.payload))
	}
}

var missingAddr = []struct {
	k       Kind
	payload string
}{
	{KindCommand, `{"v":1,"id":"c1","kind":"code_sync","issued":"2026-12-07T16:00:00Z","expires":"2026-12-07T16:05:00Z","codes":{"version":3,"full":true,"entries":[{"document_id":"d1","addr":null,"expires":"2026-12-08T00:00:00Z","pin_hash":"x"}]}}`},
	{KindCommand, `{"v":1,"id":"c1","kind":"code_sync","issued":"2026-12-07T16:00:00Z","expires":"2026-12-07T16:05:00Z","codes":{"version":3,"full":true,"entries":[{"document_id":"d1","expires":"2026-12-08T00:00:00Z","pin_hash":"x"}]}}`},
	{KindCommand, `{"v":1,"id":"c1","kind":"code_sync","issued":"2026-12-07T16:00:00Z","expires":"2026-12-07T16:05:00Z","Codes":{"version":3,"full":true,"Entries":[{"document_id":"d1","expires":"2026-12-08T00:00:00Z","pin_hash":"x"}]}}`},
	{KindCommand, `{"v":1,"id":"c1","kind":"code_sync","issued":"2026-12-07T16:00:00Z","expires":"2026-12-07T16:05:00Z","codes":{"version":3,"full":true,"entries":[{"document_id":"d1","Addr":null,"expires":"2026-12-08T00:00:00Z","pin_hash":"x"}]}}`},
	{KindHeartbeat, `{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"addr":null,"locked":true}]}`},
	{KindHeartbeat, `{"v":1,"at":"2026-12-07T16:00:00Z","uptime_s":1,"backlog":0,"offline_cache":0,"doors":[{"locked":true}]}`},
}
