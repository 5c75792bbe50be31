-- 0183 kiosk staff logins get a daily cap per device (backend/deviceops
-- kiosklimit.go). Before, a successful login deleted the device's failures
-- and rows lived 15 minutes, so a guesser at a kiosk had 5 staff PINs
-- every 15 minutes, 480 a day, without end. Now a success only marks the
-- failures cleared (they stop counting towards the 15-minute burst lock
-- but still count towards the daily cap), and rows live 24 hours.
ALTER TABLE kiosk_login_failures ADD COLUMN cleared boolean NOT NULL DEFAULT false;
