-- 0221 (docs/security.md "Personal data and its retention"): the
-- retention purge of a document also erases what its dead codes derived
-- from the holder's date of birth (dob_digest, and offline_verifier, which
-- covers PIN and date of birth), and marks them purged_at; a code that
-- needs the date of birth must keep its digest until then.
ALTER TABLE codes ADD COLUMN purged_at timestamptz;
ALTER TABLE codes DROP CONSTRAINT codes_check;
ALTER TABLE codes ADD CONSTRAINT codes_dob_digest_until_purged
    CHECK (NOT needs_dob OR dob_digest IS NOT NULL OR purged_at IS NOT NULL);
