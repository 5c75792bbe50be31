-- 0131 staff console sessions (issue 13, backend/auth websession.go): a
-- login at /staff/ gets a session cookie whose SHA-256 digest is stored
-- here (never the cookie itself), with the session's CSRF token. Sessions
-- live in the database so that a backend restart or a second replica keeps
-- them. A session ends at logout (ended_at), after the idle timeout
-- (last_seen_at) or at expires_at (absolute), and when its user is
-- disabled.
CREATE TABLE auth_web_sessions (
    id           bigserial PRIMARY KEY,
    token_hash   bytea NOT NULL UNIQUE,
    user_id      bigint NOT NULL REFERENCES auth_users(id) ON DELETE CASCADE,
    csrf_token   text NOT NULL,
    source       text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz
);
CREATE INDEX auth_web_sessions_user_idx ON auth_web_sessions (user_id);
CREATE INDEX auth_web_sessions_expires_idx ON auth_web_sessions (expires_at);
