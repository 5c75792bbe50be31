-- 0042 kiosk credentials of staff (H6, backend/auth): a staff PIN and/or a
-- badge id for logging in at a device's kiosk, stored as keyed HMAC-SHA256
-- digests (unique, so a login finds its user), and short-lived kiosk
-- session tokens.

ALTER TABLE auth_users ADD COLUMN kiosk_pin_digest bytea UNIQUE;
ALTER TABLE auth_users ADD COLUMN badge_digest bytea UNIQUE;

ALTER TABLE auth_tokens DROP CONSTRAINT auth_tokens_kind_check;
ALTER TABLE auth_tokens ADD CONSTRAINT auth_tokens_kind_check CHECK (kind IN ('session', 'api', 'kiosk'));
