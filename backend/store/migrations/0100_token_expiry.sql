-- 0100 every token expires (issue 10, backend/auth). API tokens used to be
-- issued without an expiry. Those still valid get one 90 days after this
-- upgrade (auth.DefaultAPITokenTTL; the migration cannot know a configured
-- -api-token-ttl), long enough to give automation new tokens; revoked ones
-- get their revocation time. From now on an expiry is required.
UPDATE auth_tokens SET expires_at = now() + interval '90 days'
    WHERE expires_at IS NULL AND revoked_at IS NULL;
UPDATE auth_tokens SET expires_at = revoked_at WHERE expires_at IS NULL;
ALTER TABLE auth_tokens ALTER COLUMN expires_at SET NOT NULL;
