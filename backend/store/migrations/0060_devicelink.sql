-- 0060 device link (H7): MQTT credentials for the embedded broker, events
-- received from devices (idempotent by event id), commands sent to devices
-- and their results, and device presence.

CREATE TABLE mqtt_credentials (
    username      text PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    role          text NOT NULL CHECK (role IN ('device', 'backend')),
    -- argon2id PHC string: $argon2id$v=19$m=..,t=..,p=..$salt$hash
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE device_events (
    event_id    text PRIMARY KEY,
    device_id   text NOT NULL,
    kind        text NOT NULL,
    at          timestamptz NOT NULL, -- the device's clock
    received_at timestamptz NOT NULL, -- the backend's clock
    -- applied: the EventHandler accepted it; rejected: it refused it for good
    outcome     text NOT NULL CHECK (outcome IN ('applied', 'rejected')),
    detail      text NOT NULL DEFAULT '',
    payload     jsonb NOT NULL
);
CREATE INDEX device_events_device_idx ON device_events (device_id, at);

CREATE TABLE device_commands (
    command_id    text PRIMARY KEY,
    device_id     text NOT NULL,
    kind          text NOT NULL,
    issued_at     timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    issued_by     text NOT NULL DEFAULT '',
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'sent', 'done', 'failed', 'expired', 'duplicate', 'rejected')),
    result_at     timestamptz,
    result_detail text NOT NULL DEFAULT '',
    payload       jsonb NOT NULL
);
CREATE INDEX device_commands_device_idx ON device_commands (device_id, issued_at);

CREATE TABLE device_presence (
    device_id         text PRIMARY KEY,
    state             text NOT NULL CHECK (state IN ('online', 'offline')),
    changed_at        timestamptz NOT NULL,
    software          text NOT NULL DEFAULT '',
    last_heartbeat_at timestamptz,
    heartbeat         jsonb
);
