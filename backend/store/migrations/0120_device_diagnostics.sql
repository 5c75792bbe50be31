-- 0120 fleet scale: a heartbeat (about 1.4 KB of jsonb every 30 s per
-- device) moves out of device_presence into device_diagnostics, so that
-- the presence row stays narrow. Both tables leave free space in every
-- page (fillfactor) and index no column a heartbeat changes, so that the
-- update of a heartbeat is a HOT update: the old version is pruned within
-- its page, without index entries or waiting for vacuum. A partial index
-- on the online devices answers the online count without reading every
-- row.
CREATE TABLE device_diagnostics (
    device_id text PRIMARY KEY,
    at        timestamptz NOT NULL, -- the backend's clock when received
    heartbeat jsonb NOT NULL
) WITH (fillfactor = 50);

INSERT INTO device_diagnostics (device_id, at, heartbeat)
    SELECT device_id, last_heartbeat_at, heartbeat FROM device_presence
    WHERE heartbeat IS NOT NULL AND last_heartbeat_at IS NOT NULL;

ALTER TABLE device_presence DROP COLUMN heartbeat;
ALTER TABLE device_presence SET (fillfactor = 70);
CREATE INDEX device_presence_online_idx ON device_presence (device_id) WHERE state = 'online';
