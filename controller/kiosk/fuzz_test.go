package kiosk

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Whatever a kiosk page or scanner sends, the API answers with a JSON
// status, never panics and never opens a door (no valid code exists).
func FuzzPickupBody(f *testing.F) {
	f.Add(`{"qr":"K1.abc.def"}`)
	f.Add(`{"pin":"123 456 789","birth_date":"1990-02-03","lang":"de"}`)
	f.Add(`{"qr":"\u0000"}`)
	f.Add(`{"pin":1}`)
	r := newRig(f) // one daemon for every input (cleaned up with f)
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/kiosk/v1/pickup", strings.NewReader(body))
		req.RemoteAddr = "127.0.0.1:40000"
		req.Host = "127.0.0.1:8088"
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		Handler(r.e, slog.New(slog.NewTextHandler(io.Discard, nil))).ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body.String())
		}
		if !strings.HasPrefix(w.Body.String(), "{") {
			t.Fatalf("not JSON: %q", w.Body.String())
		}
		if n := len(r.f.Pulses()); n != 0 {
			t.Fatalf("%d pulses from fuzzed input", n)
		}
	})
}
