-- 0184 staff PINs for kiosk logins need 8 digits or more when set from
-- now on (backend/auth/kiosk.go, docs/security.md "Staff at the kiosk").
-- PINs set before keep working; the console asks their holders (and the
-- admins) to set a new one. The PIN is stored only as a keyed digest, so
-- its length is kept beside it: recorded when a PIN is set, and for a PIN
-- set before this migration (NULL, not known) when it is next used at a
-- kiosk. NULL also when the user has no PIN.
ALTER TABLE auth_users ADD COLUMN kiosk_pin_digits smallint
    CHECK (kiosk_pin_digits BETWEEN 4 AND 12);
