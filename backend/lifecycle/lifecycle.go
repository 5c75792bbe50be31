package lifecycle

import (
	"errors"
	"fmt"
)

// State is a document's lifecycle state, as stored in documents.state.
type State string

// The document states.
const (
	Registered State = "registered"
	Reserved   State = "reserved"
	Loaded     State = "loaded"
	Notified   State = "notified"
	Collected  State = "collected"
	Expired    State = "expired"
	Retrieved  State = "retrieved"
	Cancelled  State = "cancelled"
)

// Action is a named transition, as stored in document_transitions.action.
type Action string

// The actions.
const (
	Reserve   Action = "reserve"
	Unreserve Action = "unreserve"
	Load      Action = "load"
	Notify    Action = "notify"
	Renotify  Action = "renotify"
	Collect   Action = "collect"
	Expire    Action = "expire"
	Retrieve  Action = "retrieve"
	Cancel    Action = "cancel"
	Reissue   Action = "reissue"
)

// Sentinel errors.
var (
	// ErrForbiddenTransition means the action is not allowed from the state.
	ErrForbiddenTransition = errors.New("forbidden transition")
	// ErrUnknownState means the state is not one of the document states.
	ErrUnknownState = errors.New("unknown document state")
	// ErrUnknownAction means the action is not one of the actions.
	ErrUnknownAction = errors.New("unknown action")
)

// Transition is one allowed edge of the state machine.
type Transition struct {
	From   State
	Action Action
	To     State
}

// table is the whole state machine. Order is documentation order.
var table = [...]Transition{
	{Registered, Reserve, Reserved},
	{Reserved, Unreserve, Registered},
	{Reserved, Load, Loaded},
	{Loaded, Notify, Notified},
	{Notified, Renotify, Notified},
	{Loaded, Collect, Collected},
	{Notified, Collect, Collected},
	{Expired, Collect, Collected},
	{Loaded, Expire, Expired},
	{Notified, Expire, Expired},
	{Loaded, Retrieve, Retrieved},
	{Notified, Retrieve, Retrieved},
	{Expired, Retrieve, Retrieved},
	{Registered, Cancel, Cancelled},
	{Reserved, Cancel, Cancelled},
	{Loaded, Reissue, Loaded},
	{Notified, Reissue, Notified},
}

var states = [...]State{Registered, Reserved, Loaded, Notified, Collected, Expired, Retrieved, Cancelled}

var actions = [...]Action{Reserve, Unreserve, Load, Notify, Renotify, Collect, Expire, Retrieve, Cancel, Reissue}

// Transitions returns every allowed transition (a copy).
func Transitions() []Transition { return append([]Transition(nil), table[:]...) }

// States returns every state in lifecycle order.
func States() []State { return append([]State(nil), states[:]...) }

// Actions returns every action.
func Actions() []Action { return append([]Action(nil), actions[:]...) }

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	for _, x := range states {
		if x == s {
			return true
		}
	}
	return false
}

// Final reports whether nothing can leave s (collected, retrieved, cancelled).
func (s State) Final() bool { return s == Collected || s == Retrieved || s == Cancelled }

// Occupies reports whether a document in s holds a compartment
// (reserved, loaded, notified, expired).
func (s State) Occupies() bool {
	return s == Reserved || s == Loaded || s == Notified || s == Expired
}

// InCompartment reports whether a document in s is behind its
// compartment's door (loaded, notified, expired): what the compartment
// holds, what a retrieve takes out, what only an admin may open remotely.
// A reserved document occupies a compartment but is not in it yet.
func (s State) InCompartment() bool { return s == Loaded || s == Notified || s == Expired }

// AwaitsHolder reports whether a document in s waits in its compartment
// for its holder before its deadline (loaded, notified): it can be
// reminded of, reissued, and expire. An expired one is still in the
// compartment but no longer awaited.
func (s State) AwaitsHolder() bool { return s == Loaded || s == Notified }

// Valid reports whether a is a known action.
func (a Action) Valid() bool {
	for _, x := range actions {
		if x == a {
			return true
		}
	}
	return false
}

// TransitionError is the error for a refused (from, action) pair; it wraps
// ErrForbiddenTransition.
type TransitionError struct {
	From   State
	Action Action
}

// Error says what was tried, e.g. "cannot collect a document that is registered".
func (e *TransitionError) Error() string {
	return fmt.Sprintf("cannot %s a document that is %s", e.Action, e.From)
}

// Unwrap lets errors.Is(err, ErrForbiddenTransition) match.
func (e *TransitionError) Unwrap() error { return ErrForbiddenTransition }

// Check returns the state that action leads to from from, or an error:
// ErrUnknownState / ErrUnknownAction for values outside the machine, a
// *TransitionError (wrapping ErrForbiddenTransition) for a forbidden pair.
func Check(from State, action Action) (State, error) {
	if !from.Valid() {
		return "", fmt.Errorf("%w: %q", ErrUnknownState, string(from))
	}
	if !action.Valid() {
		return "", fmt.Errorf("%w: %q", ErrUnknownAction, string(action))
	}
	for _, t := range table {
		if t.From == from && t.Action == action {
			return t.To, nil
		}
	}
	return "", &TransitionError{From: from, Action: action}
}

// Allowed returns the actions allowed from s, in table order.
func Allowed(s State) []Action {
	var out []Action
	for _, t := range table {
		if t.From == s {
			out = append(out, t.Action)
		}
	}
	return out
}

// From returns the states from which action is allowed, in table order.
func From(action Action) []State {
	var out []State
	for _, t := range table {
		if t.Action == action {
			out = append(out, t.From)
		}
	}
	return out
}
