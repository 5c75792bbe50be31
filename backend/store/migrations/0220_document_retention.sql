-- 0220 (retention of documents never closed, docs/security.md "Personal
-- data"): the schema now holds what the retention purge relies on.
--
-- A final document (collected, retrieved, cancelled) has closed_at, and
-- only a final one: the purge of finished documents reads closed_at, so a
-- final row without it kept its personal data for ever. The service sets
-- closed_at with the transition to a final state (and nothing leaves a
-- final state); rows written otherwise get the time of the transition
-- that closed them, else their last update.
UPDATE documents d SET closed_at = coalesce(
        (SELECT max(t.at) FROM document_transitions t WHERE t.document_id = d.id AND t.to_state = d.state),
        d.updated_at)
    WHERE d.state IN ('collected', 'retrieved', 'cancelled') AND d.closed_at IS NULL;
UPDATE documents SET closed_at = NULL
    WHERE state NOT IN ('collected', 'retrieved', 'cancelled') AND closed_at IS NOT NULL;
ALTER TABLE documents ADD CONSTRAINT documents_closed_when_final
    CHECK ((state IN ('collected', 'retrieved', 'cancelled')) = (closed_at IS NOT NULL));

-- A purged document holds no personal data any more (number_key, generated
-- from number, follows).
UPDATE documents SET number = NULL, holder_first_name = NULL, holder_last_name = NULL,
        holder_birth_date = NULL, email = NULL, mobile = NULL
    WHERE purged_at IS NOT NULL AND (number IS NOT NULL OR holder_first_name IS NOT NULL OR holder_last_name IS NOT NULL
        OR holder_birth_date IS NOT NULL OR email IS NOT NULL OR mobile IS NOT NULL);
ALTER TABLE documents ADD CONSTRAINT documents_purged_without_personal_data
    CHECK (purged_at IS NULL OR (number IS NULL AND holder_first_name IS NULL AND holder_last_name IS NULL
        AND holder_birth_date IS NULL AND email IS NULL AND mobile IS NULL));

-- The purge of documents never closed (store.PurgeUnclaimedPersonalData):
-- not purged, not final, by their pickup deadline or, never loaded, their
-- registration.
CREATE INDEX documents_unclaimed_idx ON documents ((coalesce(deadline, created_at)))
    WHERE purged_at IS NULL AND state NOT IN ('collected', 'retrieved', 'cancelled');
