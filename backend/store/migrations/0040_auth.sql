-- 0040 users and tokens (H6, backend/auth). Passwords are argon2id PHC
-- strings; tokens are stored as SHA-256 digests only, never in clear.

CREATE TABLE auth_users (
    id            bigserial PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    role          text NOT NULL CHECK (role IN ('staff', 'technician', 'admin')),
    password_hash text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL
);

CREATE TABLE auth_tokens (
    id           bigserial PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES auth_users(id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('session', 'api')),
    name         text NOT NULL DEFAULT '',
    token_hash   bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX auth_tokens_user_idx ON auth_tokens (user_id, id);
