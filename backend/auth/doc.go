// Package auth holds the backend's users, roles, passwords and bearer
// tokens.
//
// Users have exactly one role: staff (counter staff: documents), technician
// (devices, remote opening) or admin (everything, users, the audit chain).
// Passwords are stored as argon2id PHC strings
// ($argon2id$v=19$m=...,t=...,p=...$salt$hash) so that parameters can be
// raised later without invalidating old hashes.
//
// Bearer tokens are 32 random bytes, base64url encoded with the prefix
// "kls_". Only their SHA-256 digest is stored (a fast hash is enough for
// 256-bit random secrets); the clear token is shown once, when issued.
// Session tokens (from a password login) expire; API tokens for automation
// do not, until revoked.
//
// Staff console logins are web sessions (websession.go): a cookie whose
// digest is stored in auth_web_sessions with the session's CSRF token, ended
// by logout, an idle timeout or an absolute lifetime. Every password login,
// over the API or the console, goes through one LoginLimits
// (loginlimits.go), which refuses guessing without locking anyone out; its
// counts are in PostgreSQL, shared by every replica. The password checks
// share a few argon2id slots fairly (hashgate.go): one place per client
// source, a bounded line, a line of its own for known sources; the excess
// is refused at once with ErrLoginBusy. One sequence checks every password
// (PasswordCheck, passwordcheck.go): the login limits, the slots, argon2id;
// a login not known to come from its usual source first takes a place
// among a share of the database pool by the same fair rules, so that a
// flood cannot queue the staff out of the pool.
//
// The tables live in backend/store/migrations/0040_auth.sql,
// 0131_web_sessions.sql, 0180_login_limits.sql and
// 0182_login_address_limit.sql.
package auth
