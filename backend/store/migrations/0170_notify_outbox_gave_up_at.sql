-- 0170 given-up notifications get a retention. A notify_outbox row whose
-- attempts were all used up (state gave_up) already left the sender's due
-- index (notify_outbox_due_idx is partial on pending rows); it stays for
-- staff (the console's undelivered lists) and was only deleted with its
-- document's retention purge, so a document that never reached a purged
-- state kept it for ever. gave_up_at records when it was given up; the
-- reminder pass (one replica at a time, under its advisory lock) deletes
-- the rows given up longer than the outbox retention ago whose document is
-- no longer in its compartment (notify.PruneGivenUp, docs/operations.md).

ALTER TABLE notify_outbox ADD COLUMN gave_up_at timestamptz;
-- Rows given up before this migration: their last next_at is the closest
-- time known (the attempt that was scheduled last).
UPDATE notify_outbox SET gave_up_at = next_at WHERE state = 'gave_up';
ALTER TABLE notify_outbox ADD CONSTRAINT notify_outbox_gave_up_at_check
    CHECK ((state = 'gave_up') = (gave_up_at IS NOT NULL));
CREATE INDEX notify_outbox_gave_up_idx ON notify_outbox (gave_up_at) WHERE state = 'gave_up';
