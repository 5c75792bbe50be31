// Package service holds the backend's use cases on documents, sites and
// devices: the Go API that the REST handlers (backend/api) and the device
// link (backend/devicelink) call.
//
// Every document transition runs in one database transaction that locks the
// document row, checks the move against the state machine
// (backend/lifecycle), updates the compartment, writes the document, adds a
// document_transitions row naming who or what made the move ("user:<id>",
// "device:<id>" or "system") and appends a hash-chained audit record
// (backend/audit). Hooks for codes and notifications are called inside
// (CodeIssuer, Outbox) or after (Notifier) that transaction. With an
// Outbox (backend/notify's, in kluis-backend) the notification is a row
// written in the transition's own transaction: it cannot be lost between
// the commit and the message, and its sender retries a failing gateway.
//
// # Compartment choice
//
// Reserve picks a free compartment of the document's site (or of one
// device) whose size is at least the kind's minimum (Options.MinSize:
// cards S, passports M by default), honouring the holder's wish for a low
// compartment (height_cm at most Options.LowMaxHeightCM, 120 by default;
// the wish is strict: a wheelchair user cannot reach a high door). It
// prefers the smallest fitting size and, for holders without the wish,
// compartments above the low threshold, keeping low ones free for those who
// need them. Rows are taken with SELECT ... FOR UPDATE SKIP LOCKED and a
// unique partial index forbids two documents in one compartment, so
// concurrent reservations never share one; when nothing fits the caller
// gets ErrNoCompartment (which is also ErrConflict, HTTP 409). Under heavy
// contention a compartment held by a transaction that later rolls back is
// skipped, so a refused reservation may succeed when retried.
//
// With Options.PickOnlineOnly (kluis-backend sets it) the automatic choice
// (no device named) considers only devices fit to serve now (Health.Fit)
// and not out of service: online (device_presence, written by the device
// link), their last heartbeat not older than LateAfter, and no open alarm
// that makes a pickup unsafe or impossible (BlocksPickup: forced_door,
// door_left_open, board_unreachable, board_rebooting, journal_full,
// mechanism_fault; backend/alarms says which are open). A device that
// never connected, is offline or late, or has such an alarm is never
// chosen, so staff never send a holder to a machine that cannot open.
// Devices with only other open alarms (sensor_disagreement,
// pulse_uncertain, journal_damaged, offline_cache_untrusted,
// brute_force_lockout) are chosen only when no device without an alarm
// has room. Then the order above decides, then device id and compartment
// number, so the choice is deterministic.
// When no fit device has a fitting free compartment Reserve refuses with
// ErrNoOnlineDevice (also ErrNoCompartment and ErrConflict) rather than
// pick a device that cannot serve. Staff naming a device
// (ReserveOptions.DeviceID) still get that device, fit or not;
// DeviceHealth tells the caller what is wrong with it (Health.Warnings).
//
// # Deadlines
//
// The pickup deadline is set on load: the end of the N-th calendar day
// after loading in the site's time zone (Options.PickupDays per kind, 10 by
// default), stored in UTC; a kind with an exact period
// (Options.PickupPeriods) gets the load time plus that period. ExpireDue, run periodically, moves loaded and
// notified documents past their deadline to expired.
//
// # Retention
//
// Purge erases the holder's personal data (names, birth date, e-mail,
// mobile, document number) of collected, retrieved and cancelled documents
// closed longer ago than the retention period. A keyed pseudonym of the
// number (Options.PseudonymKey) stays, and the audit trail, which only
// refers to document ids, stays intact. PurgeUnclaimed does the same for
// documents that are never closed (registered and never loaded, expired
// and never taken back) once their pickup deadline, or their registration
// when they were never loaded, is older than Options.UnclaimedRetention:
// their state and compartment stay (the item may still be behind its
// door), only the holder's data goes. Housekeep runs both.
package service
