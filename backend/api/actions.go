package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"kluis/backend/audit"
	"kluis/backend/store"
)

// The actions below are shared by the REST handlers and the staff console
// (backend/web), so that both do the same thing, audited the same way.

// CheckReason checks a reason people give for an action: one line of at
// most 200 characters under the rule for text people read; required ones
// must not be blank. The error is a 400 *Error.
func CheckReason(reason string, required bool) error { return checkReason(reason, required) }

// OpenFailed is the error of RemoteOpen when the device did not open (the
// attempt is audited as failed); Err says why.
type OpenFailed struct{ Err error }

// Error implements error.
func (e *OpenFailed) Error() string { return "remote open failed: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *OpenFailed) Unwrap() error { return e.Err }

// ErrNeverConnected is the cause of the 409 *Error (code never_connected)
// of RefuseNeverConnected and RemoteOpen.
var ErrNeverConnected = errors.New("the device has never connected")

// RefuseNeverConnected returns a 409 *Error (code never_connected,
// wrapping ErrNeverConnected) when device never connected: it has no
// device_presence row (the device link writes one at the device's first
// presence or heartbeat and never deletes it). A command to such a device
// would never reach it and could only expire. It is the one test of
// "never connected" before a remote open: RemoteOpen (REST API and staff
// console) calls it, and the console asks it before offering the open
// form.
func RefuseNeverConnected(ctx context.Context, db store.DB, deviceID string) error {
	var known bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM device_presence WHERE device_id = $1)`, deviceID).Scan(&known); err != nil {
		return fmt.Errorf("api: presence of %s: %w", deviceID, err)
	}
	if !known {
		return &Error{Status: http.StatusConflict, Code: "never_connected",
			Message: "the device has never connected: a remote open would never reach it and could only expire", Err: ErrNeverConnected}
	}
	return nil
}

// RemoteOpen opens compartment number of a device through opener (the
// device link's signed-command path) for actor with a reason, and audits
// compartment.remote_open with the reason and the result (opened or
// failed). The reason is required (CheckReason). A request refused before
// anything is sent is not audited: errors are a 400 *Error for the reason,
// store.ErrNotFound for an unknown compartment, a 503 *Error without a
// device link, a 409 *Error (RefuseNeverConnected) for a device that never
// connected; then *OpenFailed (audited as failed) when the device did not
// confirm.
func RemoteOpen(ctx context.Context, pool *pgxpool.Pool, opener Opener, actor, deviceID string, number int, reason string, now time.Time) error {
	if err := checkReason(reason, true); err != nil {
		return err
	}
	reason = strings.TrimSpace(reason)
	if _, err := store.CompartmentByNumber(ctx, pool, deviceID, number); err != nil {
		return err
	}
	if opener == nil {
		return errorf(http.StatusServiceUnavailable, "device_link_unavailable", "remote opening needs the device link, which is not running on this server")
	}
	if err := RefuseNeverConnected(ctx, pool, deviceID); err != nil {
		return err
	}
	details := map[string]any{"compartment": number, "reason": reason}
	openErr := opener.OpenCompartment(ctx, deviceID, number, reason, actor)
	details["result"] = "opened"
	if openErr != nil {
		details["result"] = "failed"
	}
	if err := appendAudit(context.WithoutCancel(ctx), pool, audit.Entry{At: now, Actor: actor, Action: "compartment.remote_open",
		Subject: "device:" + deviceID, Details: details}); err != nil {
		return errors.Join(errors.New("audit remote open"), err)
	}
	if openErr != nil {
		return &OpenFailed{Err: openErr}
	}
	return nil
}

// ViewSlip returns a document's pickup slip through slip and audits
// document.slip_viewed (the slip shows the PIN). A nil slip is a 503
// *Error.
func ViewSlip(ctx context.Context, pool *pgxpool.Pool, slip SlipFunc, actor string, doc store.Document, now time.Time) ([]byte, error) {
	if slip == nil {
		return nil, errorf(http.StatusServiceUnavailable, "unavailable", "pickup slips are not configured on this server")
	}
	html, err := slip(ctx, doc)
	if err != nil {
		return nil, err
	}
	if err := appendAudit(ctx, pool, audit.Entry{At: now, Actor: actor, Action: "document.slip_viewed",
		Subject: "document:" + doc.ID}); err != nil {
		return nil, errors.Join(errors.New("audit slip view"), err)
	}
	return html, nil
}

func appendAudit(ctx context.Context, pool *pgxpool.Pool, e audit.Entry) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := audit.Append(ctx, tx, e)
		return err
	})
}
