-- 0003 (H4): the same physical document (kind + number) cannot be in the
-- process twice at once. Final and purged rows do not count.
CREATE UNIQUE INDEX documents_active_number ON documents (kind, number)
    WHERE number IS NOT NULL AND state NOT IN ('collected', 'retrieved', 'cancelled');
