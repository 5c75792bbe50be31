package codes

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"kluis/controller/pickupcode"
)

// offlineCode finds the code of documentID at deviceID that a device used
// offline: the one whose QR hash (pickupcode.QRHash of its id, the offline
// cache's qr_hash) is codeRef, or without codeRef the newest code matching
// where. The row is locked for update. Lock order: code_devices row first.
func (s *Service) offlineCode(ctx context.Context, tx pgx.Tx, deviceID, documentID, codeRef, where string) ([]byte, bool, error) {
	if !uuidPattern.MatchString(documentID) || !deviceIDPattern.MatchString(deviceID) {
		return nil, false, fmt.Errorf("codes: document %q device %q: %w", documentID, deviceID, pickupcode.ErrInvalid)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM code_devices WHERE device_id = $1 FOR NO KEY UPDATE`, deviceID); err != nil {
		return nil, false, fmt.Errorf("codes: lock device: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT id FROM codes WHERE device_id = $1 AND document_id = $2::uuid AND `+where+`
		ORDER BY created_at DESC FOR UPDATE`, deviceID, documentID)
	if err != nil {
		return nil, false, fmt.Errorf("codes: find offline code: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, false, fmt.Errorf("codes: find offline code: %w", err)
	}
	for _, id := range ids {
		if codeRef == "" || pickupcode.QRHash(pickupcode.FormatCodeID(id)) == codeRef {
			return id, true, nil
		}
	}
	return nil, false, nil
}

// LockOffline locks the code a device locked offline after too many wrong
// dates of birth typed with its PIN (device event code_locked), inside the
// caller's transaction: the open code of the document at the device whose
// QR hash is codeRef (the newest open one without codeRef). The code then
// answers code_locked (the kiosk shows wrong_code), QR included, and leaves
// the offline bundle until the counter re-issues it. Audited code.locked;
// reports whether a code was locked (not when it is already locked, used,
// revoked or re-issued).
func (s *Service) LockOffline(ctx context.Context, tx pgx.Tx, deviceID, documentID, codeRef string) (bool, error) {
	id, ok, err := s.offlineCode(ctx, tx, deviceID, documentID, codeRef,
		`used_at IS NULL AND revoked_at IS NULL AND locked_at IS NULL`)
	if err != nil || !ok {
		return false, err
	}
	now := s.clock()
	if _, err := tx.Exec(ctx, `UPDATE codes SET locked_at = $2, failed_attempts = GREATEST(failed_attempts, $3) WHERE id = $1`,
		id, now, s.cfg.CodeMaxFailures); err != nil {
		return false, fmt.Errorf("codes: lock offline: %w", err)
	}
	if err := s.appendAudit(ctx, tx, AuditEvent{Actor: "device:" + deviceID, Action: "code.locked", Subject: "document:" + documentID,
		Details: map[string]any{"device": deviceID, "code_id": pickupcode.FormatCodeID(id), "reason": "offline_wrong_birth_dates"}}); err != nil {
		return false, err
	}
	s.log.Warn("code locked by its device offline (wrong dates of birth)", "device", deviceID, "document", documentID,
		"code_id", pickupcode.FormatCodeID(id))
	return true, nil
}

// MarkOfflineUsed records that a device spent a code offline (device event
// pickup_completed with offline true), inside the caller's transaction,
// after the collection (which revoked the document's open codes): the code
// whose QR hash is codeRef (without codeRef the newest code of the document
// at the device not yet used) gets used_at = at (not later than now). A
// replay of it then answers already_collected, not counted, as a code used
// online does, instead of wrong_code. Audited code.used with offline true;
// reports whether a code was marked (not when it already was).
func (s *Service) MarkOfflineUsed(ctx context.Context, tx pgx.Tx, deviceID, documentID, codeRef string, at time.Time) (bool, error) {
	id, ok, err := s.offlineCode(ctx, tx, deviceID, documentID, codeRef, `used_at IS NULL`)
	if err != nil || !ok {
		return false, err
	}
	if now := s.clock(); at.IsZero() || at.After(now) {
		at = now
	}
	if _, err := tx.Exec(ctx, `UPDATE codes SET used_at = $2 WHERE id = $1`, id, at); err != nil {
		return false, fmt.Errorf("codes: mark offline use: %w", err)
	}
	if err := s.appendAudit(ctx, tx, AuditEvent{Actor: "device:" + deviceID, Action: "code.used", Subject: "document:" + documentID,
		Details: map[string]any{"device": deviceID, "code_id": pickupcode.FormatCodeID(id), "offline": true}}); err != nil {
		return false, err
	}
	return true, nil
}
