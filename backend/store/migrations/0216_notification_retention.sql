-- 0216 the notifications table (one row per message sent, failed or
-- printed as a slip) is pruned with the device retention
-- (-device-retention, backend/devicelink's Pruner calling
-- notify.PruneHistory), oldest first: the rows made before the cutoff of
-- a document closed (collected, retrieved, cancelled) before it too. The
-- rows of a document still being handled stay whatever their age.
CREATE INDEX notifications_created_idx ON notifications (created_at);
