-- 0190 audit_pending's guard checks once per statement, not once per row
-- (issue 14, docs/performance.md "Eighth pass"). The chainer deletes every
-- record it chains: a row trigger ran its PL/pgSQL function once for each
-- of them: 13 to 20% of the chainer's PostgreSQL CPU per record. The
-- function is 0160's (a statement trigger's OLD is NULL, and what it
-- returns is ignored). The rule is unchanged, and applied earlier: any
-- UPDATE, and any DELETE but the chainer's (kluis.audit_chainer set in its
-- transaction), is refused as a whole before it touches a row, even one
-- that would match none.
DROP TRIGGER audit_pending_guard ON audit_pending;
CREATE TRIGGER audit_pending_guard
    BEFORE UPDATE OR DELETE ON audit_pending
    FOR EACH STATEMENT EXECUTE FUNCTION audit_pending_guard();
