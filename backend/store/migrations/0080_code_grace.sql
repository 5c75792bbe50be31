-- 0080 (R2): a used code can be given back when the device reports that the
-- document is still in its compartment (door not opened, or opened and
-- closed with the item present: pickup_not_collected). grace_until bounds
-- how long such a re-armed code stays valid (NULL: until expires_at).
ALTER TABLE codes ADD COLUMN grace_until timestamptz;
