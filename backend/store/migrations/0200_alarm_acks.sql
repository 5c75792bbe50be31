-- 0200 alarm acknowledgements (backend/alarms). A technician or an admin
-- acknowledges an open alarm (the dashboard, POST
-- /api/v1/devices/{id}/alarms/{alarm}/ack): it stays shown until the
-- device clears it, with who acknowledged it, when and an optional note,
-- and it no longer pages (kluis_device_alarms_open{acknowledged}). An
-- alarm is the device event that raised it: one row per alarm event, so
-- acknowledging twice records once, and an alarm cleared and raised again
-- is a new event, not acknowledged. The audit trail has
-- alarm.acknowledged with the same facts.
CREATE TABLE alarm_acks (
    event_id  text PRIMARY KEY REFERENCES device_events (event_id) ON DELETE CASCADE,
    device_id text NOT NULL,
    actor     text NOT NULL,
    acked_at  timestamptz NOT NULL,
    note      text NOT NULL DEFAULT '' CHECK (char_length(note) <= 200)
);
