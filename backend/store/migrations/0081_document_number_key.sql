-- 0081 (R2): document numbers are compared without spaces and dashes, so a
-- scanned "591 1234567 89" finds "591-1234567-89". number keeps the form as
-- entered; number_key is its canonical form (NULL once purged). The same
-- document (kind + key) cannot be in the process twice, whatever the
-- separators.
ALTER TABLE documents ADD COLUMN number_key text
    GENERATED ALWAYS AS (upper(translate(number, ' -', ''))) STORED;
CREATE UNIQUE INDEX documents_active_number_key ON documents (kind, number_key)
    WHERE number_key IS NOT NULL AND state NOT IN ('collected', 'retrieved', 'cancelled');
DROP INDEX documents_active_number;
