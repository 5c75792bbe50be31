-- 0217 (issue 14): a keyed digest of the code's QR token, HMAC-SHA256 under
-- a key derived from the signing key (codes.Keys.TokenDigest), never the
-- token itself. Online the backend compares it with the digest of the token
-- presented instead of signing the token again. NULL for codes issued
-- before it: their tokens are checked by their signature as before.
ALTER TABLE codes ADD COLUMN token_digest bytea;
