package wire

import (
	"fmt"
	"reflect"
	"testing"
)

// sameAsChecked fails unless DecodeKind (with its flat path) gives what
// decodeChecked alone gives: the same message or the same error.
func sameAsChecked(t *testing.T, k Kind, payload []byte) {
	t.Helper()
	got, gotErr := DecodeKind(k, payload)
	want, wantErr := decodeChecked(k, payload)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("%s %q: error %v, decodeChecked's %v", k, payload, gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s %q: message %#v, decodeChecked's %#v", k, payload, got, want)
	}
}

// flatEdges are payloads near the flat path's edges: each must get
// decodeChecked's answer.
var flatEdges = []string{
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`,
	` {"v":1 , "id" : "r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"} ` + "\n",
	`{"v":1.0,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`,
	`{"v":1e0,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`,
	`{"v":2,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`,
	`{"v":"1","id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`,
	`{"v":1,"v":null,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`,
	`{"v":null,"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`,
	`{"v":1,"V":2,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`,
	`{"V":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`,
	`{"v":1,"ID":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`,
	`{"v":1,"id":"r1","ID":"r2","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`,
	`{"v":1,"id":null,"at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`,
	`{"v":1,"id":"r1","id":null,"at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`,
	`{"v":1,"\u0069d":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`,
	`{"v":1,"id":"r\u0031","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.\"y"}`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}x`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}{}`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y",}`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y","extra":1}`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","addr":"x"}`,
	`{"v":1,"id":"r1","At":"2026-12-06T10:00:00Z","METHOD":"qr","Token":"K1.x.y"}`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"pin","pin":"123456","Birth_Date":"1990-01-01"}`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"pin","pin":"123456","birth-date":"1990-01-01"}`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"pin","pin":"123456","birthdate":"1990-01-01"}`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","tokens":"K1.x.y"}`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","tokeN":"K1.x.y","toke":"K1"}`,
	`{"v":1,"Id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y","Method":"pin"}`,
	`{"v":1,"id":"r1","result":"ok","document_id":"d1","Addr":null,"sig":"KR1.a.b"}`,
	`{"v":1,"id":"r1","Result":"wrong_code","SIG":"KR1.a.b","Retry_After_S":5}`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","addr":null}`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":1e400}`,
	`{"v":1e400,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr"}`,
	`{"v":1,"id":"r1","at":"yesterday","method":"qr","token":"K1.x.y"}`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr"}`,
	`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"pin","pin":"123456","birth_date":"1990-01-01"}`,
	`{"v":1,"id":"r1","result":"ok","document_id":"d1","addr":{"board":0,"channel":3},"sig":"KR1.a.b"}`,
	`{"v":1,"id":"r1","result":"wrong_code","sig":"KR1.a.b"}`,
	`{"v":1,"id":"r1","result":"wrong_code","sig":"KR1.a.b","slot":null}`,
	`{"v":1,"id":"r1","op":"login","result":"denied","sig":"KR1.a.b"}`,
	`{"v":1,"state":"online"}`,
	`{"v":1,"state":"online","state":"offline"}`,
	`{}`, `null`, `[]`, `1`, `"x"`, ``, `{`, `{"v":1`, `{"v":1,`, `{"v"`, `{"v":}`, `{"v":1 "id":"x"}`,
	`{"v":true}`, `{"v":1,"id":"\ud800","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`,
	"{\"v\":1,\"id\":\"r1\xff\",\"at\":\"2026-12-06T10:00:00Z\",\"method\":\"qr\",\"token\":\"K1.x.y\"}",
	"{\"v\":1,\"i\xffd\":\"r1\",\"at\":\"2026-12-06T10:00:00Z\",\"method\":\"qr\",\"token\":\"K1.x.y\"}",
	`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17}`,
}

func TestDecodeFlatMatchesChecked(t *testing.T) {
	allSameAsChecked(t, flatEdges)
}

// allSameAsChecked runs sameAsChecked on every payload of edges and every
// encoded sample, as each kind.
func allSameAsChecked(t *testing.T, edges []string) {
	t.Helper()
	for _, k := range Kinds() {
		for _, p := range edges {
			sameAsChecked(t, k, []byte(p))
		}
		for _, m := range samples() {
			b, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			sameAsChecked(t, k, b)
		}
	}
}

// The flat path is taken where it matters: a kiosk's verify request and
// the backend's answers.
func TestDecodeFlatTaken(t *testing.T) {
	for _, m := range samples() {
		switch m.MessageKind() {
		case KindVerifyReq, KindVerifyRes, KindStaffReq, KindStaffRes, KindPresence:
		default:
			continue
		}
		b, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		if hasObject(b) {
			continue // an answer with a compartment (addr): the checked path
		}
		if decodeFlat(m.MessageKind(), b) == nil {
			t.Errorf("%s %s: not decoded on the flat path", m.MessageKind(), b)
		}
	}
	req := []byte(`{"v":1,"id":"r1","at":"2026-12-06T10:00:00Z","method":"qr","token":"K1.x.y"}`)
	if decodeFlat(KindVerifyReq, req) == nil {
		t.Error("a verify request is not decoded on the flat path")
	}
}

func hasObject(b []byte) bool {
	for _, c := range b[1:] {
		if c == '{' || c == '[' {
			return true
		}
	}
	return false
}

// FuzzDecodeFlat: for any payload and kind, DecodeKind (its flat and
// scanned paths) answers exactly as decodeChecked does.
func FuzzDecodeFlat(f *testing.F) {
	kinds := Kinds()
	for i, p := range append(append(append(flatEdges, scanEdges...), strictEdges()...), escapeEdges...) {
		f.Add(uint8(i), []byte(p))
	}
	f.Add(uint8(1), fleetHeartbeat(f)) // Kinds()[1]: a heartbeat
	for i, m := range samples() {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), b)
	}
	f.Fuzz(func(t *testing.T, kind uint8, payload []byte) {
		sameAsChecked(t, kinds[int(kind)%len(kinds)], payload)
	})
}

var benchVerifyReq = []byte(`{"v":1,"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","at":"2026-12-06T10:00:00.123456789Z","method":"qr",` +
	`"token":"K1.eyJ2IjoxLCJjIjoiQUFBQUFBQUFBQUFBQUFBQUFBQUFBQSIsImQiOiJreC0wMDAxIiwiZSI6MTc5NjUwMDAwMH0.` +
	`c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl"}`)

// BenchmarkDecodeVerifyRequest: the backend's decoding of one verify/req
// (the flat path), against BenchmarkDecodeVerifyRequestChecked.
func BenchmarkDecodeVerifyRequest(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeKind(KindVerifyReq, benchVerifyReq); err != nil {
			b.Fatal(err)
		}
	}
}

// A verify request, the backend's most frequent payload, is read by
// json.Unmarshal once its keys are known (decodeKnown): 8 allocations,
// where the Decoder with DisallowUnknownFields took 11.
func TestVerifyRequestDecodedWithoutADecoder(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := DecodeKind(KindVerifyReq, benchVerifyReq); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 8 {
		t.Errorf("%v allocations per verify request, want at most 8", allocs)
	}
}

// BenchmarkDecodeVerifyRequestChecked: the same on the checked path
// (DecodeKind's only path before the flat one).
func BenchmarkDecodeVerifyRequestChecked(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeChecked(KindVerifyReq, benchVerifyReq); err != nil {
			b.Fatal(err)
		}
	}
}
