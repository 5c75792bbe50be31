package api

import (
	"errors"
	"net/http"

	"kluis/backend/lifecycle"
	"kluis/backend/service"
	"kluis/backend/store"
)

// domainError maps the service's sentinel errors to API errors.
func domainError(err error) *Error {
	var te *lifecycle.TransitionError
	var ve *store.ValidationError
	switch {
	case errors.As(err, &te):
		return &Error{Status: http.StatusConflict, Code: "forbidden_transition", Message: te.Error()}
	case errors.Is(err, lifecycle.ErrForbiddenTransition):
		return &Error{Status: http.StatusConflict, Code: "forbidden_transition", Message: "this action is not allowed in the document's current state"}
	case errors.Is(err, service.ErrNoOnlineDevice):
		return &Error{Status: http.StatusConflict, Code: "no_online_device", Message: "no device fit to serve now has a free compartment that fits the document (devices never connected, offline, with a late heartbeat or an open alarm that stops pickups are not chosen; name a device to reserve there): " + err.Error()}
	case errors.Is(err, service.ErrNoCompartment):
		return &Error{Status: http.StatusConflict, Code: "no_compartment", Message: "no free compartment fits the document: " + err.Error()}
	case errors.Is(err, service.ErrPurged):
		return &Error{Status: http.StatusConflict, Code: "holder_data_erased", Message: err.Error()}
	case errors.As(err, &ve):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_input", Message: ve.Error(), Details: map[string]any{"fields": ve.Fields}}
	case errors.Is(err, store.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_input", Message: err.Error()}
	case errors.Is(err, store.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: err.Error()}
	case errors.Is(err, store.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: "conflict", Message: err.Error()}
	}
	return nil
}
