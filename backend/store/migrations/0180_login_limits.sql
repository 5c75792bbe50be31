-- 0180 staff login limits shared by every backend replica and kept over a
-- restart (backend/auth/loginlimits.go, docs/security.md "Staff accounts:
-- logins and tokens"). They lived in each process's memory: a restart
-- forgot them and N replicas gave a guesser N times the attempts.
--
-- auth_login_failures holds one row per login attempt that has not
-- succeeded (an attempt is counted when it is let through and forgotten
-- when it succeeds), per username (lower case) and client address. Rows
-- older than the 15-minute window are deleted on every write (a few at a
-- time, oldest first) so the table holds at most the attempts of the last
-- 15 minutes, each of which cost an argon2id verification.
CREATE TABLE auth_login_failures (
    id       bigserial PRIMARY KEY,
    username text NOT NULL,
    source   text NOT NULL,
    at       timestamptz NOT NULL
);
CREATE INDEX auth_login_failures_user_idx ON auth_login_failures (username, at);
CREATE INDEX auth_login_failures_source_idx ON auth_login_failures (username, source, at);
CREATE INDEX auth_login_failures_at_idx ON auth_login_failures (at);

-- auth_login_sources remembers the addresses a user logged in from (at
-- most 8 per user, 30 days): they are exempt from the per-username
-- back-off.
CREATE TABLE auth_login_sources (
    username      text NOT NULL,
    source        text NOT NULL,
    last_login_at timestamptz NOT NULL,
    PRIMARY KEY (username, source)
);
CREATE INDEX auth_login_sources_at_idx ON auth_login_sources (last_login_at);
