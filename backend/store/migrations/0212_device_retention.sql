-- 0212 retention of device events and commands (backend/devicelink's
-- Pruner, docs/operations.md "Retention"). device_events and
-- device_commands used to grow for ever; the backend now deletes what is
-- older than its retention (-device-retention, 400 days by default) in
-- small batches, oldest first by the backend's clock, so it needs them in
-- that order. alarm_latest.event_id references device_events with ON
-- DELETE CASCADE: without an index every deleted event scanned the whole
-- of alarm_latest for rows to cascade to. (Each CREATE INDEX holds back
-- inserts into its table while it builds: at the upgrade of a large
-- installation, devices' events wait unacknowledged in their journals for
-- that long, and are sent again.)
CREATE INDEX alarm_latest_event_idx ON alarm_latest (event_id);
CREATE INDEX device_events_received_idx ON device_events (received_at, event_id);
CREATE INDEX device_commands_issued_idx ON device_commands (issued_at);
