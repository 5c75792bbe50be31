-- 0121 a reconnect storm: every MQTT CONNECT to the embedded broker used
-- to verify an argon2id hash (about 80 ms of CPU at production cost), so a
-- whole fleet reconnecting after a restart took many minutes. A successful
-- check is remembered here as an HMAC-SHA256 of the user name and password
-- under a key the database does not hold (derived from the backend's keys):
-- the next CONNECT with the same password costs one HMAC. An entry counts
-- only while the credential's password_hash is the one it was checked
-- against and the credential is not disabled, so setting a new password or
-- disabling the user invalidates it at once, on every replica; it also
-- expires (devicelink.CredentialsOptions.CheckTTL).
CREATE TABLE mqtt_credential_checks (
    username      text PRIMARY KEY REFERENCES mqtt_credentials (username) ON DELETE CASCADE,
    password_hash text NOT NULL,  -- the mqtt_credentials.password_hash checked against
    mac           bytea NOT NULL, -- HMAC-SHA256(key, username || 0x00 || password)
    checked_at    timestamptz NOT NULL
);
