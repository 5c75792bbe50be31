-- 0202 an alarm's acknowledgement also covers the same alarm raised again
-- before any clearing (backend/alarms: kluisd raises board_unreachable
-- again when it restarts with the board still down): the dashboard's
-- reads look up a device's acknowledgements, by device.
CREATE INDEX alarm_acks_device_idx ON alarm_acks (device_id);
