// Package kiosk serves the local kiosk API (loopback only) that the kiosk
// web page, keyboard-wedge QR scanners behind it and tests use, and reads a
// serial barcode scanner.
//
//	POST /kiosk/v1/pickup          {"qr": "..."} or {"pin": "...", "birth_date": "YYYY-MM-DD", "lang": "nl"}
//	GET  /kiosk/v1/session         what the screen shows (state, message in nl/fr/en/de)
//	POST /kiosk/v1/staff/login     {"badge": "..."} or {"pin": "..."}
//	POST /kiosk/v1/staff/load      {"document_number": "..."}
//	POST /kiosk/v1/staff/retrieve  {"document_number": "..."}
//	POST /kiosk/v1/staff/logout
//	POST /kiosk/v1/staff/clear-lockout  (staff login required: lifts the PIN lockout)
//	POST /kiosk/v1/tech/test-open  {"compartment": 3}   (staff login required)
//	GET  /kiosk/v1/diagnostics
//
// Every answer is JSON. A malformed request gets 400 with {"error": ...};
// codes, PINs and badges are never logged.
package kiosk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"unicode"

	"kluis/controller/engine"
)

// MaxBody bounds a request body.
const MaxBody = 8 << 10

// Handler returns the kiosk API for e.
func Handler(e *engine.Engine, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	s := &server{e: e, log: log.With("part", "kiosk")}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /kiosk/v1/pickup", s.pickup)
	mux.HandleFunc("GET /kiosk/v1/session", s.session)
	mux.HandleFunc("POST /kiosk/v1/staff/login", s.staffLogin)
	mux.HandleFunc("POST /kiosk/v1/staff/load", s.staffDoor(e.StaffLoad))
	mux.HandleFunc("POST /kiosk/v1/staff/retrieve", s.staffDoor(e.StaffRetrieve))
	mux.HandleFunc("POST /kiosk/v1/staff/logout", s.staffLogout)
	mux.HandleFunc("POST /kiosk/v1/staff/clear-lockout", s.staffClearLockout)
	mux.HandleFunc("POST /kiosk/v1/tech/test-open", s.testOpen)
	mux.HandleFunc("GET /kiosk/v1/diagnostics", s.diagnostics)
	return loopbackOnly(mux)
}

type server struct {
	e   *engine.Engine
	log *slog.Logger
}

// loopbackOnly refuses requests from anywhere but loopback (the listener is
// on loopback too; this is the second lock on the door).
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		ip := net.ParseIP(host)
		if err != nil || ip == nil || !ip.IsLoopback() {
			writeErr(w, http.StatusForbidden, "kiosk API is for the local kiosk only")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// decode reads a strict JSON body into v.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeErr(w, http.StatusUnsupportedMediaType, "send application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeErr(w, http.StatusRequestEntityTooLarge, "request body too large")
			return false
		}
		writeErr(w, http.StatusBadRequest, "invalid JSON: "+cleanJSONErr(err))
		return false
	}
	if dec.More() {
		writeErr(w, http.StatusBadRequest, "invalid JSON: trailing data")
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeErr(w, http.StatusBadRequest, "invalid JSON: trailing data")
		return false
	}
	return true
}

// cleanJSONErr keeps JSON errors free of the submitted values (a PIN).
func cleanJSONErr(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	case errors.Is(err, io.EOF):
		return "empty body"
	}
	return "malformed"
}

func (s *server) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, engine.ErrBadRequest):
		writeErr(w, http.StatusBadRequest, strings.TrimSuffix(err.Error(), ": "+engine.ErrBadRequest.Error()))
	case errors.Is(err, engine.ErrNoStaff):
		writeErr(w, http.StatusForbidden, "staff login required")
	case errors.Is(err, engine.ErrNotFree):
		writeErr(w, http.StatusConflict, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeErr(w, http.StatusServiceUnavailable, "request cancelled")
	default:
		s.log.Error("kiosk request failed", "err", err)
		writeErr(w, http.StatusInternalServerError, "internal error")
	}
}

func (s *server) pickup(w http.ResponseWriter, r *http.Request) {
	var req engine.PickupRequest
	if !decode(w, r, &req) {
		return
	}
	scr, err := s.e.Pickup(r.Context(), req)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, scr)
}

func (s *server) session(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.e.Screen())
}

func (s *server) staffLogin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Badge string `json:"badge"`
		PIN   string `json:"pin"`
		Lang  string `json:"lang"`
	}
	if !decode(w, r, &req) {
		return
	}
	// A control character (NUL included) is never part of a badge or a
	// staff PIN: refused here as bad input, not sent to the backend (the
	// device protocol refuses it too, which left the screen in "error").
	for name, v := range map[string]string{"badge": req.Badge, "pin": req.PIN} {
		if strings.ContainsFunc(strings.TrimSpace(v), unicode.IsControl) {
			writeErr(w, http.StatusBadRequest, name+" contains a control character")
			return
		}
	}
	scr, err := s.e.StaffLogin(r.Context(), req.Badge, req.PIN, req.Lang)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, scr)
}

func (s *server) staffDoor(fn func(context.Context, string, string) (engine.Screen, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			DocumentNumber string `json:"document_number"`
			Lang           string `json:"lang"`
		}
		if !decode(w, r, &req) {
			return
		}
		scr, err := fn(r.Context(), req.DocumentNumber, req.Lang)
		if err != nil {
			s.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, scr)
	}
}

func (s *server) staffLogout(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.e.StaffLogout(r.Context()))
}

func (s *server) staffClearLockout(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Lang string `json:"lang"`
	}
	if r.ContentLength != 0 && !decode(w, r, &req) {
		return
	}
	scr, err := s.e.StaffClearLockout(r.Context(), req.Lang)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, scr)
}

func (s *server) testOpen(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Compartment int    `json:"compartment"`
		Lang        string `json:"lang"`
	}
	if !decode(w, r, &req) {
		return
	}
	scr, err := s.e.TestOpen(r.Context(), req.Compartment, req.Lang)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, scr)
}

func (s *server) diagnostics(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.e.Diagnostics(r.Context()))
}
