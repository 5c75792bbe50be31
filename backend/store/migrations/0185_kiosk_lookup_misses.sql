-- 0185 kiosk staff document lookups are bounded (backend/deviceops
-- lookuplimit.go). A staff session at a kiosk looked documents up by
-- number (reserve, retrieve) without any bound: someone with a staff login,
-- or at a kiosk left logged in, could try document numbers one after
-- another and learn which exist. Now every lookup that finds nothing (a
-- miss) is a row here: 5 in one kiosk session end the session, 12 on one
-- device within an hour pause lookups there until the oldest leaves the
-- hour. Rows older than the hour are deleted on every write (a few at a
-- time, oldest first) and at the housekeeping interval.
CREATE TABLE kiosk_lookup_misses (
    id        bigserial PRIMARY KEY,
    device_id text NOT NULL,
    token_id  bigint NOT NULL,
    at        timestamptz NOT NULL
);
CREATE INDEX kiosk_lookup_misses_device_idx ON kiosk_lookup_misses (device_id, at);
CREATE INDEX kiosk_lookup_misses_token_idx ON kiosk_lookup_misses (token_id);
CREATE INDEX kiosk_lookup_misses_at_idx ON kiosk_lookup_misses (at);
