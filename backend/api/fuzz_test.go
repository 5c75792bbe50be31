package api

import (
	"errors"
	"net/http"
	"testing"
)

// FuzzDecodeBody: any request body either decodes or yields a 4xx *Error
// with a code; it never panics.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{
		`{"kind":"eid","number":"591-1234567-89","holder_first_name":"Jan","holder_last_name":"Peeters","holder_birth_date":"1980-04-12","language":"nl","email":"jan@example.be","site_id":"kortrijk"}`,
		`{"wants_low":"yes"}`, `{"x":1}`, `[]`, `null`, ``, `{`, `{"kind":1e999}`, `{} {}`, "\x00\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req registerRequest
		err := decodeBytes(body, &req)
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("decode error %v is not an *Error", err)
		}
		if e.Status < 400 || e.Status >= 500 || e.Code == "" || e.Message == "" {
			t.Fatalf("decode error %+v: want a 4xx with code and message", e)
		}
		if e.Status != http.StatusBadRequest {
			t.Fatalf("decode error %+v: want 400", e)
		}
	})
}
