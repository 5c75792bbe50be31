-- 0130 staff console and technician dashboard (issue 13): a device's
-- compartment layout, the front as people see it, so that the console draws
-- the same map as the kiosk screen (kluisd's `layout:`; see
-- store.Layout), and a device taken out of service by a technician.
--
-- layout: NULL draws the default grid (compartments column by column, at
-- most six per column); otherwise {"columns": 3, "rows": 6,
-- "screen": {"column": 2, "row": 2, "height": 2},
-- "places": [{"number": 1, "column": 1, "row": 1, "height": 2}, ...]},
-- validated by the backend against the device's compartments.
--
-- out_of_service_at: NULL while in service. A device out of service gets
-- no new reservations; documents already in it can still be collected and
-- retrieved. The reason is shown on the dashboard; who did it and why is in
-- the audit trail (device.out_of_service, device.in_service).
ALTER TABLE devices
    ADD COLUMN layout jsonb CHECK (layout IS NULL OR jsonb_typeof(layout) = 'object'),
    ADD COLUMN out_of_service_at timestamptz,
    ADD COLUMN out_of_service_reason text NOT NULL DEFAULT '';

-- The dashboard's active alarms: the latest alarm or alarm_cleared per
-- device, alarm kind and place, read every second or so while a dashboard
-- is open.
CREATE INDEX device_events_alarms_idx ON device_events (device_id, at)
    WHERE kind IN ('alarm', 'alarm_cleared');
