-- 0181 kiosk staff login limits shared by every backend replica and kept
-- over a restart (backend/deviceops kiosklimit.go). A device's staff/req
-- login requests reach any replica (MQTT shared subscriptions), and each
-- replica counted failures per device in its own memory: N replicas gave a
-- guesser at a kiosk N times the attempts, and a restart forgot them.
--
-- One row per kiosk staff login attempt that has not succeeded (counted
-- when it is let through, forgotten when a login on the device succeeds).
-- Rows older than the 15-minute window are deleted on every write (a few
-- at a time, oldest first).
CREATE TABLE kiosk_login_failures (
    id        bigserial PRIMARY KEY,
    device_id text NOT NULL,
    at        timestamptz NOT NULL
);
CREATE INDEX kiosk_login_failures_device_idx ON kiosk_login_failures (device_id, at);
CREATE INDEX kiosk_login_failures_at_idx ON kiosk_login_failures (at);
