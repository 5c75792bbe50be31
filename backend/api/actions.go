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
	"kluis/backend/auth"
	"kluis/backend/store"
	"kluis/controller/wire"
)

// The actions below are shared by the REST handlers and the staff console
// (backend/web), so that both do the same thing, audited the same way.

// CheckReason checks a reason people give for an action: one line of at
// most 200 characters under the rule for text people read; required ones
// must not be blank. The error is a 400 *Error.
func CheckReason(reason string, required bool) error { return checkReason(reason, required) }

// ErrDeviceRefused is the cause of an Opener's error when the device
// answered that it did not open (failed, rejected, expired): the console
// tells it from ErrNoAnswer.
var ErrDeviceRefused = errors.New("the device did not open")

// OpenFailed is the error of RemoteOpen when the device did not open (the
// attempt is audited as failed); Err says why.
type OpenFailed struct{ Err error }

// Error implements error.
func (e *OpenFailed) Error() string { return "remote open failed: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *OpenFailed) Unwrap() error { return e.Err }

// DeviceOnline reports whether deviceID's recorded presence is online now
// (device_presence, written by the device link). A device that never
// connected is not online.
func DeviceOnline(ctx context.Context, db store.DB, deviceID string) (bool, error) {
	var online bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM device_presence WHERE device_id = $1 AND state = $2)`,
		deviceID, string(wire.Online)).Scan(&online); err != nil {
		return false, fmt.Errorf("api: presence of %s: %w", deviceID, err)
	}
	return online, nil
}

// ErrNoAnswer is the cause of an Opener's error when the device gave no
// result in time: the door may or may not have opened (audited as
// "no_answer", not "failed").
var ErrNoAnswer = errors.New("no answer from the device in time")

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

// ErrOccupied is the cause of the 403 *Error (code compartment_occupied)
// of RemoteOpen: a technician asked to open a compartment holding a
// document.
var ErrOccupied = errors.New("the compartment holds a document")

// RemoteOpen opens compartment number of a device through opener (the
// device link's signed-command path) for actor, of role, with a reason,
// and audits compartment.remote_open with the reason and the result
// (opened, failed, or no_answer when the device gave no result in time:
// the door may or may not have opened). The reason is required (CheckReason). A compartment
// holding a document (loaded, notified or expired: a citizen's identity
// document or licence is behind the door) is opened for an admin only,
// and its audit record names the document (occupied, document); a
// technician is refused with a 403 *Error compartment_occupied (wrapping
// ErrOccupied), audited compartment.open_refused with the document
// and the reason: a technician opens empty compartments, as at the kiosk
// (test_open), and a document goes back through staff (retrieve). Other
// requests refused before anything is sent are not audited: errors are a
// 400 *Error for the reason, store.ErrNotFound for an unknown compartment,
// a 503 *Error without a device link, a 409 *Error (RefuseNeverConnected)
// for a device that never connected; then *OpenFailed (audited as failed)
// when the device did not confirm.
func RemoteOpen(ctx context.Context, pool *pgxpool.Pool, opener Opener, actor string, role auth.Role, deviceID string, number int, reason string, now time.Time) error {
	if err := checkReason(reason, true); err != nil {
		return err
	}
	reason = strings.TrimSpace(reason)
	comp, err := store.CompartmentByNumber(ctx, pool, deviceID, number)
	if err != nil {
		return err
	}
	if opener == nil {
		return errorf(http.StatusServiceUnavailable, "device_link_unavailable", "remote opening needs the device link, which is not running on this server")
	}
	if err := RefuseNeverConnected(ctx, pool, deviceID); err != nil {
		return err
	}
	details := map[string]any{"compartment": number, "reason": reason}
	doc, err := Occupant(ctx, pool, comp.ID)
	if err != nil {
		return err
	}
	if doc != "" {
		details["occupied"], details["document"] = true, doc
		if role != auth.RoleAdmin {
			details["role"] = string(role)
			if err := appendAudit(context.WithoutCancel(ctx), pool, audit.Entry{At: now, Actor: actor, Action: "compartment.open_refused",
				Subject: "device:" + deviceID, Details: details}); err != nil {
				return errors.Join(errors.New("audit refused remote open"), err)
			}
			return &Error{Status: http.StatusForbidden, Code: "compartment_occupied",
				Message: fmt.Sprintf("compartment %d holds a document: only an admin may open it remotely; staff take a document back at the kiosk (retrieve)", number),
				Err:     ErrOccupied}
		}
	}
	openErr := opener.OpenCompartment(ctx, deviceID, number, reason, actor)
	details["result"] = "opened"
	switch {
	case errors.Is(openErr, ErrNoAnswer):
		details["result"] = "no_answer"
	case openErr != nil:
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

// Occupant returns the id of the document behind a compartment's door
// (loaded, notified or expired), "" when there is none (a reserved
// document is not loaded yet).
func Occupant(ctx context.Context, db store.DB, compartmentID int64) (string, error) {
	d, err := store.OccupantOf(ctx, db, compartmentID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", nil
	case err != nil:
		return "", err
	}
	if d.State.InCompartment() {
		return d.ID, nil
	}
	return "", nil
}

// ViewSlip returns a document's pickup slip through slip and audits
// document.slip_viewed (the slip shows the PIN). A nil slip is a 503
// *Error, a document whose holder's data was erased a 409
// (holder_data_erased).
func ViewSlip(ctx context.Context, pool *pgxpool.Pool, slip SlipFunc, actor string, doc store.Document, now time.Time) ([]byte, error) {
	if slip == nil {
		return nil, errorf(http.StatusServiceUnavailable, "unavailable", "pickup slips are not configured on this server")
	}
	if doc.PurgedAt != nil {
		// No slip without a name, nor one with the name erased since.
		return nil, errorf(http.StatusConflict, "holder_data_erased",
			"the holder's personal data of this document was erased: no pickup slip is shown; take the document back")
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
