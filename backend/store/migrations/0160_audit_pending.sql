-- 0160 audit records wait for the chain (issue 14, backend/audit). A
-- business transaction no longer takes the chain's lock: it inserts its
-- record here, numbered by a sequence, and commits. The chainer (one
-- transaction at a time under the chain's advisory lock, on any replica)
-- moves committed records into audit_log, oldest first, giving each the
-- next seq and its hash, and deletes them from here in the same
-- transaction: every committed record ends up chained exactly once, and
-- audit_log's seq stays dense (gaps there are still tampering).
-- details is json (not jsonb): the stored text is what gets hashed.

CREATE TABLE audit_pending (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL,
    actor     text NOT NULL,
    action    text NOT NULL,
    subject   text NOT NULL DEFAULT '',
    details   json NOT NULL,
    -- When it was queued (the transaction's start): the chain's lag.
    queued_at timestamptz NOT NULL DEFAULT now()
);

-- Only the chainer removes pending records (it says so in its
-- transaction); nobody changes them.
CREATE FUNCTION audit_pending_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('kluis.audit_chainer', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_pending: % refused (only the audit chainer moves records into the chain)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_pending_guard
    BEFORE UPDATE OR DELETE ON audit_pending
    FOR EACH ROW EXECUTE FUNCTION audit_pending_guard();

CREATE TRIGGER audit_pending_no_truncate
    BEFORE TRUNCATE ON audit_pending
    FOR EACH STATEMENT EXECUTE FUNCTION audit_pending_guard();
