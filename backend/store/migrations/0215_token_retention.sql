-- 0215 ended auth tokens are deleted (backend/auth's PruneTokens, run by
-- the backend's retention pass, backend/devicelink's Pruner): a token
-- that expired or was revoked more than auth.EndedTokenRetention (30
-- days) ago, oldest end first. Every login used to leave its session
-- token in auth_tokens for ever, and the token list with it; the audit
-- trail keeps the story (login, token.create, token.revoke). LEAST skips
-- a NULL revoked_at: the end is the earlier of expiry and revocation.
CREATE INDEX auth_tokens_ended_idx ON auth_tokens (LEAST(expires_at, revoked_at));
