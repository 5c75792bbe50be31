package codes

import (
	"context"
	"encoding/base64"
	"fmt"
	"time"

	"kluis/controller/pickupcode"
)

// OfflineBundle returns the offline verification material of every open,
// unexpired, unlocked code on a device (a re-armed code until the end of its
// grace period), for the device to verify PINs while
// the backend is out of reach.
func (s *Service) OfflineBundle(ctx context.Context, deviceID string) ([]pickupcode.OfflineEntry, error) {
	if !deviceIDPattern.MatchString(deviceID) {
		return nil, fmt.Errorf("codes: offline bundle: device id %q: %w", deviceID, pickupcode.ErrInvalid)
	}
	rows, err := s.pool.Query(ctx, `SELECT c.id, c.document_id::text, LEAST(c.expires_at, coalesce(c.grace_until, c.expires_at)), c.compartment_id,
		c.compartment_number, c.board, c.channel, c.needs_dob, d.offline_salt, c.offline_params, c.offline_verifier
		FROM codes c JOIN code_devices d ON d.device_id = c.device_id
		WHERE c.device_id = $1 AND c.used_at IS NULL AND c.revoked_at IS NULL AND c.locked_at IS NULL
		AND c.expires_at > $2 AND (c.grace_until IS NULL OR c.grace_until > $2) ORDER BY c.created_at LIMIT $3`, deviceID, s.clock(), pickupcode.MaxActiveCodesPerDevice)
	if err != nil {
		return nil, fmt.Errorf("codes: offline bundle: %w", err)
	}
	defer rows.Close()
	var out []pickupcode.OfflineEntry
	for rows.Next() {
		var (
			e                  pickupcode.OfflineEntry
			id, salt, verifier []byte
			params             string
			exp                time.Time
		)
		if err := rows.Scan(&id, &e.DocumentID, &exp, &e.CompartmentID, &e.CompartmentNumber, &e.Board,
			&e.Channel, &e.NeedsDOB, &salt, &params, &verifier); err != nil {
			return nil, fmt.Errorf("codes: offline bundle: %w", err)
		}
		p, err := pickupcode.ParseArgonParams(params)
		if err != nil {
			return nil, err
		}
		e.CodeID, e.ExpiresAt, e.Params = pickupcode.FormatCodeID(id), exp.UTC(), p
		e.Salt, e.Verifier = base64.RawURLEncoding.EncodeToString(salt), base64.RawURLEncoding.EncodeToString(verifier)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("codes: offline bundle: %w", err)
	}
	return out, nil
}
