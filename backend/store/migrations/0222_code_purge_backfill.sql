-- 0222 (docs/security.md "Personal data and its retention"): the codes of
-- documents whose personal data was erased before 0221 kept what they
-- derived from the holder's date of birth (dob_digest, and
-- offline_verifier, which covers PIN and date of birth): the purge of a
-- document erases them since 0221 (codes.Service.PurgeDocuments), but only
-- for documents it purges from then on. The same erasure for the dead
-- codes (revoked, used or expired) of every document already purged;
-- codes.purged_at marks them, so a second run changes nothing.
UPDATE codes c SET dob_digest = NULL, offline_verifier = ''::bytea, purged_at = d.purged_at
    FROM documents d
    WHERE d.id = c.document_id AND d.purged_at IS NOT NULL AND c.purged_at IS NULL
        AND (c.revoked_at IS NOT NULL OR c.used_at IS NOT NULL OR c.expires_at <= now());
