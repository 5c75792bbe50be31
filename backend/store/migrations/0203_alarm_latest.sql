-- 0203 the latest alarm or alarm_cleared of each device, alarm kind and
-- place (compartment address, board), kept by a trigger on device_events:
-- backend/alarms reads the open alarms from here (the dashboard, the API,
-- kluis_device_alarms_open at every scrape) instead of sorting 30 days of
-- alarm events each time (19,000 devices: 1.3 million rows, about 7 s and
-- 430 MB of temporary files per read; docs/performance.md, "Open alarms").
CREATE TABLE alarm_latest (
    device_id   text NOT NULL,
    alarm       text NOT NULL,               -- payload->>'alarm' ('' without)
    addr        jsonb NOT NULL,              -- payload->'addr' ('null' without)
    board       jsonb NOT NULL,              -- payload->'board' ('null' without)
    event_id    text NOT NULL REFERENCES device_events (event_id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('alarm', 'alarm_cleared')),
    at          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (device_id, alarm, addr, board)
);
-- The open ones (the latest is the alarm itself), by time.
CREATE INDEX alarm_latest_open_idx ON alarm_latest (at) WHERE kind = 'alarm';

-- An event replaces the latest of its key when it is later by (at,
-- received_at), the order backend/alarms has always read (a tie keeps the
-- first stored).
CREATE FUNCTION alarm_latest_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alarm_latest AS l (device_id, alarm, addr, board, event_id, kind, at, received_at)
    VALUES (NEW.device_id, coalesce(NEW.payload->>'alarm', ''), coalesce(NEW.payload->'addr', 'null'::jsonb),
            coalesce(NEW.payload->'board', 'null'::jsonb), NEW.event_id, NEW.kind, NEW.at, NEW.received_at)
    ON CONFLICT (device_id, alarm, addr, board) DO UPDATE
        SET event_id = EXCLUDED.event_id, kind = EXCLUDED.kind, at = EXCLUDED.at, received_at = EXCLUDED.received_at
        WHERE (EXCLUDED.at, EXCLUDED.received_at) > (l.at, l.received_at);
    RETURN NULL;
END
$$;

-- The trigger first: creating it waits for the inserts under way to
-- commit and holds back new ones until this migration commits, so the
-- fill below sees every event stored without it.
CREATE TRIGGER device_events_alarm_latest AFTER INSERT ON device_events
    FOR EACH ROW WHEN (NEW.kind IN ('alarm', 'alarm_cleared')) EXECUTE FUNCTION alarm_latest_track();

INSERT INTO alarm_latest (device_id, alarm, addr, board, event_id, kind, at, received_at)
SELECT DISTINCT ON (device_id, coalesce(payload->>'alarm', ''), coalesce(payload->'addr', 'null'::jsonb), coalesce(payload->'board', 'null'::jsonb))
       device_id, coalesce(payload->>'alarm', ''), coalesce(payload->'addr', 'null'::jsonb), coalesce(payload->'board', 'null'::jsonb),
       event_id, kind, at, received_at
FROM device_events
WHERE kind IN ('alarm', 'alarm_cleared')
ORDER BY device_id, coalesce(payload->>'alarm', ''), coalesce(payload->'addr', 'null'::jsonb), coalesce(payload->'board', 'null'::jsonb),
         at DESC, received_at DESC;
