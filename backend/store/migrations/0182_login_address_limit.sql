-- 0182 the login limits' back-off per client address over all usernames
-- (password spraying: one address, one common password, many usernames;
-- backend/auth/loginlimits.go, docs/security.md "Staff accounts: logins
-- and tokens"). Begin counts a source's recent failures and reads its
-- latest: by this index, at most a few dozen rows.
CREATE INDEX auth_login_failures_addr_idx ON auth_login_failures (source, at);
