package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"kluis/backend/auth"
)

// Error is an API failure with an HTTP status, a stable code and a human
// message. Handlers return it (wrapped or not) to choose the response.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Code is the stable machine-readable code, e.g. "forbidden_transition".
	Code string
	// Message is for people.
	Message string
	// Details are extra machine-readable facts (e.g. the refused fields).
	Details any
	// Err is the underlying cause, logged but not shown.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// errorf builds an *Error.
func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

// ErrorMapper turns domain errors from other packages into API errors; it
// returns nil for errors it does not know.
type ErrorMapper func(err error) *Error

// toAPIError maps err to an *Error: an *Error in the chain wins, then the
// mappers, then the auth sentinels; anything else is a 500.
func (s *Server) toAPIError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	mappers := append(append([]ErrorMapper(nil), s.mappers...), domainError)
	for _, m := range mappers {
		if ae := m(err); ae != nil {
			if ae.Err == nil {
				ae.Err = err
			}
			return ae
		}
	}
	switch {
	case errors.Is(err, auth.ErrUserExists):
		return &Error{Status: http.StatusConflict, Code: "user_exists", Message: "a user with this username already exists", Err: err}
	case errors.Is(err, auth.ErrInvalidUsername):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_username", Message: "username must be lower-case letters, digits, '.', '_' or '-', at most 64 characters", Err: err}
	case errors.Is(err, auth.ErrWeakPassword):
		return &Error{Status: http.StatusBadRequest, Code: "weak_password", Message: "password must be 10 to 256 characters", Err: err}
	case errors.Is(err, auth.ErrInvalidRole):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_role", Message: "role must be staff, technician or admin", Err: err}
	case errors.Is(err, auth.ErrInvalidKioskPIN):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_kiosk_pin", Message: fmt.Sprintf("a staff PIN must be %d to %d digits", auth.MinKioskPINDigits, auth.MaxKioskPINDigits), Err: err}
	case errors.Is(err, auth.ErrInvalidBadge):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_badge", Message: "a badge id must be 4 to 128 printable characters", Err: err}
	case errors.Is(err, auth.ErrKioskCredentialTaken):
		return &Error{Status: http.StatusConflict, Code: "kiosk_credential_taken", Message: "this staff PIN or badge is already in use; choose another", Err: err}
	case errors.Is(err, auth.ErrKioskDisabled):
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "kiosk logins are not configured on this server", Err: err}
	case errors.Is(err, auth.ErrInvalidName):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_name", Message: "the name must be 1 to 100 characters without control, bidirectional-control or invisible format characters: " + strings.TrimPrefix(err.Error(), auth.ErrInvalidName.Error()+": "), Err: err}
	case errors.Is(err, auth.ErrInvalidExpiry):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_expiry", Message: "the token lifetime is above the server's maximum", Err: err}
	case errors.Is(err, auth.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such user or token", Err: err}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error; the incident was logged", Err: err}
}

// writeJSON writes v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"error":{"code":"internal","message":"cannot encode response"}}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeAPIError writes e as the JSON error body. No cache keeps an error
// (the /api/ answers say so anyway; this covers the unmatched ones
// outside it, such as /api itself).
func writeAPIError(w http.ResponseWriter, e *Error) {
	w.Header().Set("Cache-Control", "no-store")
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="kluis"`)
	}
	writeJSON(w, e.Status, errorBody{Error: errorDetail{Code: e.Code, Message: e.Message, Details: e.Details}})
}
