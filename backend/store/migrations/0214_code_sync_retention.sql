-- 0214 code_sync commands (every device's whole offline bundle, sent again
-- every 30 minutes: 48 rows a day per device, each with the device's PIN
-- verifiers and signed tokens) are kept 7 days, not the device retention
-- (backend/devicelink's Pruner, devicelink.CodeSyncRetention): the prune
-- finds them, oldest first, without walking past the other commands.
CREATE INDEX device_commands_code_sync_idx ON device_commands (issued_at) WHERE kind = 'code_sync';
