-- 0213 the code attempts are pruned with the device retention
-- (-device-retention, backend/devicelink's Pruner calling
-- codes.PruneAttempts), oldest first by the time of the attempt: they
-- are read only within the daily window of the PIN limits and by the
-- follow-up sweep (a day); every attempt also has its audit record, which
-- is never pruned.
CREATE INDEX code_attempts_at_idx ON code_attempts (at);
