package codes

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"kluis/controller/pickupcode"
)

// Rearm describes a used code to give back.
type Rearm struct {
	// DocumentID and DeviceID name the document and the device that
	// reported it still in its compartment.
	DocumentID, DeviceID string
	// UsedSince: only a code used at or after this time is given back (the
	// code of the pickup the device reports on, not an older one); zero:
	// any.
	UsedSince time.Time
	// Until ends the grace period; zero: valid again as before.
	Until time.Time
	// Actor is the audit actor; default "device:<DeviceID>" (the device's
	// report). A backend sweep passes "system".
	Actor string
	// Reason, when set, is recorded in the audit details (why the code is
	// given back, e.g. "unfollowed_verification").
	Reason string
}

// Rearm gives back the used code of a document when its device reports
// that the document is still in the compartment, inside the caller's
// transaction. A code is consumed by a successful verification (exactly
// one of concurrent attempts wins); when the door then did not open
// (open_not_detected) or the citizen closed it leaving the document
// (pickup_not_collected), the citizen may try again:
//
//   - r.Until zero: the code is valid again as before (the door never
//     opened); a grace limit set earlier stays.
//   - r.Until set: the code is valid again until then (a short grace period,
//     never past the code's expiry); after it the code counts as used.
//
// Nothing happens, and Rearm returns false, unless the document is loaded
// or notified at r.DeviceID and its newest code on that device is used
// (since r.UsedSince) and not revoked (a re-issued, collected or retrieved
// document keeps its codes dead), or when the grace period already passed.
// Neither is a code whose PIN was meanwhile given to another open code of
// the device, nor one that would exceed MaxActiveCodesPerDevice (both rare;
// audited as code.rearm_refused: staff re-issue). Re-arming is audited as
// code.rearmed.
func (s *Service) Rearm(ctx context.Context, tx pgx.Tx, r Rearm) (bool, error) {
	documentID, deviceID, until := r.DocumentID, r.DeviceID, r.Until
	if !uuidPattern.MatchString(documentID) || !deviceIDPattern.MatchString(deviceID) {
		return false, fmt.Errorf("codes: rearm: document %q device %q: %w", documentID, deviceID, pickupcode.ErrInvalid)
	}
	now := s.clock()
	actor := r.Actor
	if actor == "" {
		actor = "device:" + deviceID
	}
	// Lock order as in a transition: document, code_devices row, codes.
	var state string
	err := tx.QueryRow(ctx, `SELECT state FROM documents WHERE id = $1::uuid AND device_id = $2 FOR SHARE`,
		documentID, deviceID).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("codes: rearm: document: %w", err)
	}
	if state != "loaded" && state != "notified" {
		return false, nil
	}
	var salt []byte
	err = tx.QueryRow(ctx, `SELECT offline_salt FROM code_devices WHERE device_id = $1 FOR NO KEY UPDATE`, deviceID).Scan(&salt)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("codes: rearm: device: %w", err)
	}
	c, err := scanCode(tx.QueryRow(ctx, `SELECT `+codeColumns+` FROM codes WHERE document_id = $1::uuid AND device_id = $2
		ORDER BY (used_at IS NULL AND revoked_at IS NULL) DESC, created_at DESC, id LIMIT 1 FOR UPDATE`, documentID, deviceID))
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("codes: rearm: code: %w", err)
	}
	if c.usedAt == nil || c.usedAt.Before(r.UsedSince) || c.revokedAt != nil || !now.Before(c.expiresAt) {
		return false, nil
	}
	grace := c.graceUntil
	if !until.IsZero() {
		u := until.UTC().Truncate(time.Microsecond)
		if u.After(c.expiresAt) {
			u = c.expiresAt
		}
		grace = &u
	}
	if grace != nil && !now.Before(*grace) {
		return false, nil
	}
	cid := pickupcode.FormatCodeID(c.id)
	var active int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM codes WHERE device_id = $1
		AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2`, deviceID, now).Scan(&active); err != nil {
		return false, fmt.Errorf("codes: rearm: count active codes: %w", err)
	}
	if active >= pickupcode.MaxActiveCodesPerDevice {
		// The brute-force bound (docs/security.md) assumes at most this many.
		s.log.Warn("used code not re-armed: the device has the most active codes", "document", documentID, "code_id", cid)
		return false, s.appendAudit(ctx, tx, AuditEvent{Actor: actor, Action: "code.rearm_refused",
			Subject: "document:" + documentID, Details: map[string]any{"code_id": cid, "device": deviceID, "reason": "too_many_codes"}})
	}
	err = pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error { // savepoint: a PIN clash only undoes this update
		_, err := sp.Exec(ctx, `UPDATE codes SET used_at = NULL, grace_until = $2 WHERE id = $1`, c.id, grace)
		return err
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		s.log.Warn("used code not re-armed: its PIN belongs to a newer code", "document", documentID, "code_id", cid)
		return false, s.appendAudit(ctx, tx, AuditEvent{Actor: actor, Action: "code.rearm_refused",
			Subject: "document:" + documentID, Details: map[string]any{"code_id": cid, "device": deviceID, "reason": "pin_taken"}})
	}
	if err != nil {
		return false, fmt.Errorf("codes: rearm: %w", err)
	}
	details := map[string]any{"code_id": cid, "device": deviceID}
	if grace != nil {
		details["grace_until"] = *grace
	}
	if r.Reason != "" {
		details["reason"] = r.Reason
	}
	if err := s.appendAudit(ctx, tx, AuditEvent{Actor: actor, Action: "code.rearmed",
		Subject: "document:" + documentID, Details: details}); err != nil {
		return false, err
	}
	s.log.Info("code re-armed", "document", documentID, "code_id", cid, "device", deviceID, "grace_until", grace)
	return true, nil
}
